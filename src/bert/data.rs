//! Labelled texts from CSV files, their classes, and batches.
//!
//! The layout is the tutorial's ([`super::source`]): a source directory with
//! `train.csv`, `valid.csv` and (optionally) `test.csv`, a header row, the text in one
//! column (`titletext`) and the class in another (`label`). Files may also be
//! tab-separated (GLUE's `.tsv`), and without column flags the columns are
//! found by the usual names of other data sets, or by their contents, with
//! or without a header row ([`super::columns`]). Classes may be any
//! strings (`0`/`1`, `spam`/`ham`); they are numbered in order (numerically
//! when all are integers) and kept, with any names the user gives them
//! (`--class-names 0=REAL,1=FAKE`), for reports and exports.
//!
//! A row that cannot be read (wrong number of fields, no label, bytes that are
//! not UTF-8 in a UTF-8 file) is an error naming the file and line, unless the caller chose to
//! skip such rows, in which case they are counted.
//!
//! Batches are bucketed by length like torchtext's `BucketIterator`: each
//! epoch shuffles the examples, sorts pools of 50 batches by length, cuts them
//! into batches and shuffles the batches. Each batch is then padded only to its
//! own longest text, so short texts don't pay for `--max-len` tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::columns::{self, Layout};
pub use super::columns::{Column, Columns, LABEL_COLUMNS, TEXT_COLUMNS};
use super::model::Batch;
pub use super::table::file_name;
use super::table::Table;
use super::tokenize::{TextTokenizer, SECOND_SEGMENT};
use crate::bail_usage;
use crate::device::upload;
use crate::train::rng::{derive, epoch_order, SplitMix64};

/// Batches per pool that are sorted by length together.
const POOL_BATCHES: usize = 50;
/// The most distinct labels that may include fractions (`0.5`, `2.5`) before
/// the column is taken as a score to regress on (STS-B's) and refused.
const MAX_FRACTIONAL_CLASSES: usize = 20;
/// The most rows whose contents are looked at to guess a file's columns.
const SAMPLE_ROWS: usize = 20_000;

/// What joins a multi-label row's labels in [`Split::labels`]: no label
/// holds it.
pub const SET_SEPARATOR: char = '\u{1f}';

/// The rows of one CSV file.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// `train.csv`, for messages.
    pub name: String,
    pub path: PathBuf,
    pub texts: Vec<String>,
    /// Raw label strings (empty when the file has no label column and none
    /// was needed).
    pub labels: Vec<String>,
    /// The line each row starts on (1-based, the header is line 1).
    pub lines: Vec<u64>,
    /// Each row's place among the file's records (0-based, skipped rows
    /// counted): the index pandas and GLUE give it.
    pub records: Vec<u64>,
    pub skipped: Vec<u64>,
    /// The header names of the columns read (text, and label when one was).
    pub text_column: String,
    /// The label's column; a multi-label data set's label columns joined by
    /// `,` (as `--label-column` takes them).
    pub label_column: Option<String>,
    /// Each row has a set of labels, not one class: the labels listed in
    /// its label cell (a JSON or Parquet list), or the names of its label
    /// columns that hold 1. Each row's `labels` entry is then its labels
    /// joined by [`SET_SEPARATOR`] (empty for none).
    pub multi_label: bool,
    /// A multi-label data set's label columns, one per label (its columns
    /// of 0s and 1s); empty where the labels come as lists, or one per row.
    pub label_columns: Vec<String>,
    /// The second text of each row, where the texts are pairs (GLUE's MRPC,
    /// RTE, QNLI, MNLI; SNLI): read from `pair_column`.
    pub pairs: Vec<String>,
    pub pair_column: Option<String>,
    /// How the columns were found, when not by their names (for the log).
    pub found_by: Option<String>,
    /// The names of the classes labels 0, 1, ... stand for, where the file
    /// gives them (Hugging Face's Parquet files); else empty.
    pub class_names: Vec<String>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// A file's rows and where its columns are.
fn open(path: &Path, cols: &Columns) -> Result<(Table, Layout)> {
    let table = Table::load(path)?;
    let layout = locate(&table, path, cols)?;
    Ok((table, layout))
}

fn locate(table: &Table, path: &Path, cols: &Columns) -> Result<Layout> {
    let first = table.first_row(path)?;
    let mut layout = columns::locate(path, first, table.named(), cols, || table.sample(SAMPLE_ROWS))?;
    // A label column of lists (Hugging Face's multi-label sets) lists each row's labels.
    layout.label_lists = layout.label_also.is_empty() && layout.label_at.is_some_and(|i| table.holds_lists(i));
    let read: Vec<usize> = [Some(layout.text_at), layout.pair_at, layout.label_at.filter(|_| !layout.label_lists)]
        .into_iter()
        .flatten()
        .chain(layout.text_also.iter().copied())
        .chain(layout.label_also.iter().copied())
        .collect();
    table.single_values(path, &layout.names, &read)?;
    Ok(layout)
}

/// Reads a data file ([`Table`]). With `skip_bad`, unreadable rows are
/// counted in `skipped` instead of failing.
pub fn read_split(path: &Path, cols: &Columns, skip_bad: bool) -> Result<Split> {
    let (table, layout) = open(path, cols)?;
    rows_of(&table, &layout, path, skip_bad)
}

/// Reads a test file, labelled where it has the label column of `cols`
/// (found as [`read_split`] finds it), else as texts alone; says which.
pub fn read_maybe_labelled(path: &Path, cols: &Columns, skip_bad: bool) -> Result<(Split, bool)> {
    let table = Table::load(path)?;
    match locate(&table, path, cols) {
        Ok(layout) => Ok((rows_of(&table, &layout, path, skip_bad)?, true)),
        Err(labelled) => match locate(&table, path, &Columns { label: None, ..cols.clone() }) {
            Ok(layout) => Ok((rows_of(&table, &layout, path, skip_bad)?, false)),
            Err(_) => Err(labelled),
        },
    }
}

fn rows_of(table: &Table, layout: &Layout, path: &Path, skip_bad: bool) -> Result<Split> {
    let name_of = |i: usize| layout.names[i].clone();
    let mut split = Split {
        name: table.name().to_string(),
        path: path.to_path_buf(),
        text_column: std::iter::once(layout.text_at)
            .chain(layout.text_also.iter().copied())
            .map(name_of)
            .collect::<Vec<_>>()
            .join("+"),
        label_column: layout.label_at.map(|i| {
            std::iter::once(i).chain(layout.label_also.iter().copied()).map(name_of).collect::<Vec<_>>().join(",")
        }),
        multi_label: !layout.label_also.is_empty() || layout.label_lists,
        label_columns: match layout.label_also.is_empty() {
            true => Vec::new(),
            false => layout.label_at.into_iter().chain(layout.label_also.iter().copied()).map(name_of).collect(),
        },
        pair_column: layout.pair_at.map(name_of),
        found_by: layout.found_by.clone(),
        class_names: layout.label_at.map(|i| table.class_names(&layout.names[i]).to_vec()).unwrap_or_default(),
        ..Default::default()
    };
    table.rows(path, layout.header, |row| {
        let line = row.line;
        match row.cells.and_then(|cells| check_row(cells, layout, table.stray())) {
            Ok((text, pair, label)) => {
                split.texts.push(text);
                split.pairs.extend(pair);
                if let Some(l) = label {
                    split.labels.push(l);
                }
                split.lines.push(line);
                split.records.push(row.index);
            }
            Err(_) if skip_bad => split.skipped.push(line),
            Err(why) => bail_usage!(
                "{} line {line}: {why}; fix the file or pass --skip-bad-rows to leave such rows out",
                path.display()
            ),
        }
        Ok(())
    })?;
    Ok(split)
}

/// A row's text, second text (of a pair) and label.
type Row = (String, Option<String>, Option<String>);

fn check_row(record: &csv::ByteRecord, layout: &Layout, stray: &str) -> std::result::Result<Row, String> {
    let (fields, text_at, label_at) = (layout.names.len(), layout.text_at, layout.label_at);
    if record.len() != fields {
        return Err(format!("{} field(s) where the header has {fields} ({stray}?)", record.len()));
    }
    let field = |i: usize| -> std::result::Result<String, String> {
        std::str::from_utf8(record.get(i).unwrap_or_default())
            .map(str::to_string)
            .map_err(|_| "bytes that are not UTF-8".to_string())
    };
    let mut text = field(text_at)?;
    for &i in &layout.text_also {
        // Joined as the tutorial joins title and text: "title. text".
        let more = field(i)?;
        match (text.trim().is_empty(), more.trim().is_empty()) {
            (_, true) => {}
            (true, false) => text = more,
            (false, false) => text = format!("{text}. {more}"),
        }
    }
    let label = match label_at {
        Some(i) if !layout.label_also.is_empty() => {
            // A 0 or 1 per label column: the row has the labels of its 1s.
            let mut has = Vec::new();
            for j in std::iter::once(i).chain(layout.label_also.iter().copied()) {
                let cell = field(j)?;
                match columns::indicator(cell.as_bytes()) {
                    Some(true) => has.push(layout.names[j].clone()),
                    Some(false) => {}
                    None => {
                        return Err(format!(
                            "label column '{}' holds '{}', where each label column holds 0 or 1",
                            layout.names[j],
                            cell.trim()
                        ))
                    }
                }
            }
            Some(has.join(&SET_SEPARATOR.to_string()))
        }
        Some(i) if layout.label_lists => Some(listed_labels(&field(i)?)?.join(&SET_SEPARATOR.to_string())),
        Some(i) => {
            let l = field(i)?.trim().to_string();
            if l.is_empty() {
                return Err("an empty label".to_string());
            }
            Some(l)
        }
        None => None,
    };
    let pair = layout.pair_at.map(field).transpose()?;
    Ok((text, pair, label))
}

/// The labels of a list cell (`[27, 3]`, `["sports", "politics"]`; a lone
/// value is a list of one, an empty cell none), as cells write them.
fn listed_labels(cell: &str) -> std::result::Result<Vec<String>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(Vec::new());
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(cell) else {
        // Python's repr of a list of strings, as pandas writes one to a CSV.
        if let Some(inner) = cell.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
            let unquote = |l: &str| l.trim().trim_matches(|q| q == '\'' || q == '"').trim().to_string();
            return Ok(inner.split(',').map(unquote).filter(|l| !l.is_empty()).collect());
        }
        return Ok(vec![cell.to_string()]);
    };
    items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) if !s.trim().is_empty() && !s.contains(SET_SEPARATOR) => {
                Ok(s.trim().to_string())
            }
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("a label list holds {other}, where it lists labels (strings or numbers)")),
        })
        .collect()
}

/// A multi-label row's labels (see [`Split::multi_label`]).
fn set_of(label: &str) -> impl Iterator<Item = &str> {
    label.split(SET_SEPARATOR).filter(|l| !l.is_empty())
}

/// The classes in id order: their values in the CSVs (numeric order when
/// every value is an integer) and the names reports, predictions and exports
/// show, the values themselves unless the user named them (`0=REAL,1=FAKE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    pub names: Vec<String>,
    pub values: Vec<String>,
    /// Multi-label classification (`problem_type`
    /// `multi_label_classification`): every class is a label of its own,
    /// which a text has or not (a sigmoid each, not one softmax over them).
    #[serde(default)]
    pub multi: bool,
}

impl Labels {
    /// The classes found in `split` (the training set); a multi-label
    /// set's labels are its label columns.
    pub fn from_split(split: &Split) -> Result<Labels> {
        if split.multi_label && !split.label_columns.is_empty() {
            // Every label column is a label, in the file's order, rows with it or not.
            let names = split.label_columns.clone();
            return Ok(Labels { names: names.clone(), values: names, multi: true });
        }
        let mut seen: Vec<String> = match split.multi_label {
            true => split.labels.iter().flat_map(|l| set_of(l)).map(str::to_string).collect(),
            false => split.labels.clone(),
        };
        seen.sort();
        seen.dedup();
        let column = split.label_column.as_deref().unwrap_or("label");
        let numbers: Option<Vec<f64>> = seen.iter().map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite())).collect();
        let values = match numbers {
            Some(numbers) => {
                let fractions: Vec<&String> =
                    seen.iter().zip(&numbers).filter(|(_, v)| v.fract() != 0.0).map(|(s, _)| s).collect();
                if !fractions.is_empty() && seen.len() > MAX_FRACTIONAL_CLASSES {
                    bail_usage!(
                        "{}: column '{column}' holds {} distinct numbers ({}, ...), a score to regress on rather than classes; bert-classifier classifies: name a column of classes with --label-column, or bin the scores into classes",
                        split.path.display(),
                        seen.len(),
                        fractions.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
                // In numeric order (2 before 10; pandas writes 1.0 for 1).
                let mut by_value: Vec<(f64, String)> = numbers.into_iter().zip(seen).collect();
                by_value.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                by_value.into_iter().map(|(_, s)| s).collect()
            }
            None => seen,
        };
        if values.len() < 2 {
            bail_usage!(
                "{} has {} class(es) in column '{column}' ({}); a classifier needs at least two",
                split.path.display(),
                values.len(),
                values.join(", ")
            );
        }
        Ok(Labels { names: values.clone(), values, multi: split.multi_label })
    }

    /// Classes whose names are their values.
    pub fn unnamed(values: Vec<String>) -> Labels {
        Labels { names: values.clone(), values, multi: false }
    }

    /// The names `split`'s file gives the classes (value, name), where it
    /// names every one of them by number; else none.
    pub fn names_from_file(&self, split: &Split) -> Vec<(String, String)> {
        let names = &split.class_names;
        let pairs: Option<Vec<(String, String)>> =
            self.values.iter().map(|v| Some((v.clone(), names.get(v.parse::<usize>().ok()?)?.clone()))).collect();
        pairs.unwrap_or_default()
    }

    /// The same classes under the names `pairs` gives them (value, name);
    /// every class is named once, and no two alike.
    pub fn named(mut self, pairs: &[(String, String)], source: &Path) -> Result<Labels> {
        if pairs.is_empty() {
            return Ok(self);
        }
        let mut names: Vec<Option<String>> = vec![None; self.values.len()];
        for (value, name) in pairs {
            let Some(id) = self.values.iter().position(|v| v == value) else {
                bail_usage!(
                    "--class-names: '{value}' is not a class of {} (its classes are {})",
                    source.display(),
                    self.values.join(", ")
                );
            };
            if names[id].replace(name.clone()).is_some() {
                bail_usage!("--class-names names class '{value}' twice; name each class once");
            }
        }
        let missing: Vec<&str> =
            self.values.iter().zip(&names).filter(|(_, n)| n.is_none()).map(|(v, _)| v.as_str()).collect();
        if !missing.is_empty() {
            bail_usage!(
                "--class-names leaves class(es) {} of {} unnamed; give every class a name (VALUE=NAME,...)",
                missing.join(", "),
                source.display()
            );
        }
        let names: Vec<String> = names.into_iter().flatten().collect();
        if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            bail_usage!("--class-names gives two classes the name '{dup}'; names must differ");
        }
        self.names = names;
        Ok(self)
    }

    /// Whether the user named the classes (names differ from the CSV values).
    pub fn is_named(&self) -> bool {
        self.names != self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The class id of every row of `split`, whose labels are the classes'
    /// values or their names; a label that is neither is an error naming its line.
    pub fn ids(&self, split: &Split, known_from: &str) -> Result<Vec<i64>> {
        if split.multi_label {
            bail_usage!(
                "{}: its rows have sets of labels (column '{}'), and {known_from} gives each text one class of {}; name one label column to read with --label-column",
                split.path.display(),
                split.label_column.as_deref().unwrap_or_default(),
                self.values.join(", ")
            );
        }
        let mut index: HashMap<&str, i64> = HashMap::new();
        // Values go in last: where a name is also another class's value, the value wins.
        for (i, n) in self.names.iter().enumerate() {
            index.insert(n.as_str(), i as i64);
        }
        for (i, v) in self.values.iter().enumerate() {
            index.insert(v.as_str(), i as i64);
        }
        let known = if self.is_named() {
            self.values.iter().zip(&self.names).map(|(v, n)| format!("{v}={n}")).collect::<Vec<_>>().join(", ")
        } else {
            self.values.join(", ")
        };
        let ids: Vec<Option<i64>> = split.labels.iter().map(|l| index.get(l.as_str()).copied()).collect();
        if let Some(first) = ids.iter().position(Option::is_none) {
            let unknown = ids.iter().filter(|i| i.is_none()).count();
            let (l, line) = (&split.labels[first], split.lines.get(first).copied().unwrap_or_default());
            bail_usage!(
                "{} line {line}: label '{l}' is not one of the classes of {known_from} ({known}; {unknown} row(s) here have other labels); a classifier cannot learn a class it never saw: add examples of it to the training data, or leave those rows out",
                split.path.display()
            );
        }
        Ok(ids.into_iter().flatten().collect())
    }

    /// Which of a multi-label model's labels every row of `split` has, in
    /// the model's order: from the split's label columns (in any order; a
    /// label without its column is an error) or lists (a label the model does
    /// not know is an error naming its line).
    pub fn sets(&self, split: &Split, known_from: &str) -> Result<Vec<Vec<bool>>> {
        let multi = |what: &str| {
            format!(
                "{known_from} is a multi-label classifier of {} ({what}); name the label columns (0 or 1 each) with --label-column {}, or a column of label lists",
                self.values.join(", "),
                self.values.join(",")
            )
        };
        if !split.multi_label {
            let column = split.label_column.as_deref().unwrap_or("label");
            bail_usage!(
                "{}: column '{column}' gives each row one class, and {}",
                split.path.display(),
                multi("any number a text")
            );
        }
        if let Some(v) = self.values.iter().zip(&self.names).find_map(|(v, n)| {
            (!split.label_columns.is_empty() && !split.label_columns.iter().any(|c| c == v || c == n)).then_some(v)
        }) {
            bail_usage!(
                "{}: no label column '{v}' (its label columns: {}), and {}",
                split.path.display(),
                split.label_columns.join(", "),
                multi("a column each")
            );
        }
        let mut sets = Vec::with_capacity(split.len());
        for (row, label) in split.labels.iter().enumerate() {
            let mut has = vec![false; self.len()];
            for l in set_of(label) {
                match self.values.iter().position(|v| v == l).or_else(|| self.names.iter().position(|n| n == l)) {
                    Some(i) => has[i] = true,
                    None => bail_usage!(
                        "{} line {}: label '{l}' is not one of the labels of {known_from} ({}); a classifier cannot learn a label it never saw: add examples of it to the training data, or leave those rows out",
                        split.path.display(),
                        split.lines.get(row).copied().unwrap_or_default(),
                        self.values.join(", ")
                    ),
                }
            }
            sets.push(has);
        }
        Ok(sets)
    }

    /// Where no label of `split` is a class's value or name, but every one
    /// is a class id (0 to n-1): those ids, as a data set numbers the classes
    /// that a Hub classifier names (SST-2's 0 and 1 for NEGATIVE and
    /// POSITIVE). None otherwise.
    pub fn ids_by_number(&self, split: &Split) -> Option<Vec<i64>> {
        let known = |l: &String| self.values.contains(l) || self.names.contains(l);
        if split.labels.is_empty() || split.labels.iter().any(known) {
            return None;
        }
        split.labels.iter().map(|l| l.parse::<usize>().ok().filter(|&i| i < self.len()).map(|i| i as i64)).collect()
    }
}

/// `--class-names`: `VALUE=NAME` pairs separated by commas, e.g. `0=REAL,1=FAKE`.
pub fn parse_class_names(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(|pair| {
            let (v, n) =
                pair.split_once('=').ok_or_else(|| format!("'{pair}' is not VALUE=NAME (e.g. 0=REAL,1=FAKE)"))?;
            let (v, n) = (v.trim(), n.trim());
            if v.is_empty() || n.is_empty() {
                return Err(format!("'{pair}' has an empty value or name (e.g. 0=REAL,1=FAKE)"));
            }
            Ok((v.to_string(), n.to_string()))
        })
        .collect()
}

/// Tokenised examples: ids (with `[CLS]`/`[SEP]`, truncated) and class ids,
/// or for multi-label data the labels each example has.
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<i64>,
    /// Multi-label data: per example, whether it has each label (then
    /// `labels` is empty).
    pub sets: Vec<Vec<bool>>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }

    /// The examples `rows` as a batch padded to its longest, on `device`.
    pub fn batch(&self, rows: &[usize], pad_id: i64, device: Device) -> Result<Batch> {
        collate(rows.iter().map(|&r| self.ids[r].as_slice()), pad_id, device)
    }

    /// The targets of `rows`: class ids, or for multi-label data a
    /// `[rows, labels]` float tensor of 0s and 1s.
    pub fn labels_of(&self, rows: &[usize], device: Device) -> Result<Tensor> {
        if self.sets.is_empty() {
            let v: Vec<i64> = rows.iter().map(|&r| self.labels[r]).collect();
            return upload(&Tensor::f_from_slice(&v)?, device);
        }
        let width = self.sets.first().map_or(0, Vec::len) as i64;
        let v: Vec<f32> = rows.iter().flat_map(|&r| self.sets[r].iter().map(|&b| f32::from(u8::from(b)))).collect();
        upload(&Tensor::f_from_slice(&v)?.f_view([rows.len() as i64, width])?, device)
    }

    /// `split`'s texts tokenised, with their targets as `labels` reads them
    /// (`known_from` names the model or training file in messages).
    pub fn labelled(tokenizer: &TextTokenizer, split: &Split, labels: &Labels, known_from: &str) -> Result<Encoded> {
        let ids = encode_texts(tokenizer, split)?;
        Ok(match labels.multi {
            true => Encoded { ids, labels: Vec::new(), sets: labels.sets(split, known_from)? },
            false => Encoded { ids, labels: labels.ids(split, known_from)?, sets: Vec::new() },
        })
    }

    /// Whether the examples carry label sets (multi-label data).
    pub fn is_multi_label(&self) -> bool {
        !self.sets.is_empty()
    }
}

/// Pads token id rows to the longest into `[batch, len]` ids and mask, and
/// token types where some ids carry [`SECOND_SEGMENT`] (pairs of texts).
pub fn collate<'a>(rows: impl Iterator<Item = &'a [u32]> + Clone, pad_id: i64, device: Device) -> Result<Batch> {
    let n = rows.clone().count();
    let len = rows.clone().map(<[u32]>::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad_id; n * len];
    let mut mask = vec![0u8; n * len];
    let mut types = vec![0i64; n * len];
    for (i, r) in rows.enumerate() {
        for (j, &t) in r.iter().enumerate() {
            ids[i * len + j] = i64::from(t & !SECOND_SEGMENT);
            types[i * len + j] = i64::from(t & SECOND_SEGMENT != 0);
            mask[i * len + j] = 1;
        }
    }
    let shape = [n as i64, len as i64];
    let types = match types.contains(&1) {
        true => Some(upload(&Tensor::f_from_slice(&types)?.f_view(shape)?, device)?),
        false => None,
    };
    Ok(Batch {
        ids: upload(&Tensor::f_from_slice(&ids)?.f_view(shape)?, device)?,
        mask: upload(&Tensor::f_from_slice(&mask)?.f_view(shape)?.f_to_kind(Kind::Bool)?, device)?,
        types,
    })
}

/// A split's texts as token ids: pairs where it has a second text column.
pub fn encode_texts(tokenizer: &TextTokenizer, split: &Split) -> Result<Vec<Vec<u32>>> {
    match split.pair_column {
        Some(_) => tokenizer.encode_pairs(&split.texts, &split.pairs),
        None => tokenizer.encode(&split.texts),
    }
}

/// The training batches of epoch `epoch`: a pure function of the seed, so a
/// resumed run sees the same batches. Each batch is sorted by length.
pub fn train_batches(lengths: &[usize], batch: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let batch = batch.max(1);
    let order = epoch_order(seed, epoch, lengths.len());
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(batch));
    for pool in order.chunks(batch * POOL_BATCHES) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch).map(<[usize]>::to_vec));
    }
    let mut rng = SplitMix64::new(derive(seed, "batches", epoch));
    for i in (1..batches.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        batches.swap(i, j);
    }
    batches
}

/// Evaluation batches: every example once, sorted by length (results are put
/// back in row order by the caller). A batch holds up to `batch` texts of
/// `max_len` tokens' worth: more texts when they are short, so short texts
/// don't run in tiny batches.
pub fn eval_batches(lengths: &[usize], batch: usize, max_len: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let budget = batch.max(1) * max_len.max(1);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: the newcomer is the longest, so it sets the padding.
        if !current.is_empty() && (current.len() + 1) * lengths[i].max(1) > budget {
            out.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A batch reordered so that contiguous shards (`DataParallel::shard`) deal
/// its length-sorted examples out in turn: every rank gets a share of short
/// and long texts, so no rank waits on the others.
pub fn deal(batch: &[usize], ranks: usize) -> Vec<usize> {
    let ranks = ranks.max(1);
    (0..ranks).flat_map(|r| batch.iter().skip(r).step_by(ranks).copied()).collect()
}

/// A short digest of examples (texts and labels), so a resume can tell it is
/// given the same data.
pub fn fingerprint(split: &Split) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, t) in split.texts.iter().enumerate() {
        h.update(t.as_bytes());
        h.update([0]);
        if let Some(l) = split.labels.get(i) {
            h.update(l.as_bytes());
        }
        h.update([1]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Reads a split with a context naming the file on unexpected failures.
pub fn read_labelled(path: &Path, cols: &Columns, skip_bad: bool) -> Result<Split> {
    read_split(path, cols, skip_bad).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn named(c: &str) -> Column {
        Column::Named(c.into())
    }

    fn cols() -> Columns {
        Columns::single(named("titletext"), Some(named("label")))
    }

    #[test]
    fn label_lists_and_label_columns_give_sets_of_labels() {
        assert_eq!(listed_labels("[27, 3]").unwrap(), ["27", "3"]);
        assert_eq!(listed_labels(r#"["sports", " politics "]"#).unwrap(), ["sports", "politics"]);
        assert_eq!(listed_labels("[]").unwrap(), Vec::<String>::new());
        assert_eq!(listed_labels("joy").unwrap(), ["joy"]);
        assert_eq!(listed_labels("['joy', \"love\"]").unwrap(), ["joy", "love"]);
        assert!(listed_labels("[[1]]").unwrap_err().contains("a label list holds [1]"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.jsonl");
        std::fs::write(&p, "{\"text\": \"a\", \"labels\": [2, 10]}\n{\"text\": \"b\", \"labels\": []}\n{\"text\": \"c\", \"labels\": [10]}\n").unwrap();
        let split = read_split(&p, &Columns::single(Column::Usual, Some(Column::Usual)), false).unwrap();
        assert!(split.multi_label && split.label_columns.is_empty());
        let labels = Labels::from_split(&split).unwrap();
        assert_eq!((labels.values.as_slice(), labels.multi), (&["2".to_string(), "10".to_string()][..], true));
        assert_eq!(labels.sets(&split, "m").unwrap(), [vec![true, true], vec![false, false], vec![false, true]]);
        // A CSV column of lists as pandas writes them.
        let p = dir.path().join("lists.csv");
        std::fs::write(&p, "text,labels\na,\"[2, 10]\"\nb,[]\nc,['10']\n").unwrap();
        let split = read_split(&p, &Columns::single(Column::Usual, Some(Column::Usual)), false).unwrap();
        assert!(split.multi_label);
        assert_eq!(labels.sets(&split, "m").unwrap(), [vec![true, true], vec![false, false], vec![false, true]]);
        // Columns of 0s and 1s: a cell that is neither names its line.
        let p = dir.path().join("train.csv");
        std::fs::write(&p, "text,a,b\nx,1,0\ny,0,maybe\n").unwrap();
        let cols = Columns::single(Column::Usual, Some(Column::Named("a,b".into())));
        let e = read_split(&p, &cols, false).unwrap_err().to_string();
        assert!(e.contains("train.csv line 3: label column 'b' holds 'maybe'"), "{e}");
        let split = read_split(&p, &cols, true).unwrap();
        let labels = Labels::from_split(&split).unwrap();
        assert_eq!(
            (labels.values.as_slice(), split.skipped.as_slice()),
            (&["a".to_string(), "b".to_string()][..], &[3][..])
        );
        // A model's labels need their columns; a one-class file is no label set.
        let other = Labels { names: vec!["a".into(), "c".into()], values: vec!["a".into(), "c".into()], multi: true };
        assert!(other.sets(&split, "m").unwrap_err().to_string().contains("no label column 'c'"));
        std::fs::write(&p, "text,label\nx,1\n").unwrap();
        let single = read_split(&p, &Columns::single(Column::Usual, Some(Column::Usual)), false).unwrap();
        assert!(labels.sets(&single, "m").unwrap_err().to_string().contains("gives each row one class"));
        assert!(Labels::unnamed(vec!["0".into(), "1".into()]).ids(&split, "m").is_err());
    }

    #[test]
    fn reads_the_tutorial_layout_with_quotes_and_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "train.csv",
            "\u{feff}label,title,text,titletext\n1,a,b,\"x, \"\"quoted\"\"\ny\"\n0,c,d,plain\n",
        );
        let s = read_split(&p, &cols(), false).unwrap();
        assert_eq!(s.texts, vec!["x, \"quoted\"\ny".to_string(), "plain".into()]);
        assert_eq!(s.labels, vec!["1".to_string(), "0".into()]);
        assert_eq!(s.lines, vec![2, 4]);
        // Windows line ends (Python's csv module writes them) count the same.
        let crlf = write(dir.path(), "crlf.csv", "label,titletext\r\n1,\"x\r\ny\"\r\n\r\n0,plain\r\n");
        let c = read_split(&crlf, &cols(), false).unwrap();
        assert_eq!(c.texts, vec!["x\r\ny".to_string(), "plain".into()]);
        assert_eq!(c.lines, vec![2, 5]);
        let labels = Labels::from_split(&s).unwrap();
        assert_eq!(labels.names, vec!["0", "1"]);
        assert_eq!(labels.ids(&s, "train.csv").unwrap(), vec![1, 0]);
    }

    #[test]
    fn a_bad_row_names_file_and_line_unless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "valid.csv", "label,titletext\nspam,win now\nham\n,empty label\nham,fine\n");
        let e = read_split(&p, &cols(), false).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        let msg = e.to_string();
        assert!(msg.contains("valid.csv line 3") && msg.contains("--skip-bad-rows"), "{msg}");
        let s = read_split(&p, &cols(), true).unwrap();
        assert_eq!(s.skipped, vec![3, 4]);
        assert_eq!(s.texts, vec!["win now", "fine"]);
        assert_eq!(s.records, vec![0, 3], "skipped rows keep their places");
        let labels = Labels::from_split(&s).unwrap();
        assert_eq!(labels.names, vec!["ham", "spam"]);
        let e = read_split(&p, &Columns::single(named("body"), None), false).unwrap_err();
        assert!(e.to_string().contains("no column 'body'") && e.to_string().contains("label, titletext"));
        // A UTF-8 file (it has "é") with broken bytes on one row.
        let bytes = dir.path().join("bin.csv");
        std::fs::write(&bytes, b"label,titletext\n1,caf\xc3\xa9\n0,\xff\xfe\n").unwrap();
        let e = read_split(&bytes, &cols(), false).unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn windows_1252_files_are_read_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spam.csv");
        std::fs::write(&p, b"v1,v2,,,\nspam,\"win \xa3900 \x93now\x94\",,,\nham,\"s\xfc\xdf\",,,\n").unwrap();
        let s = read_split(&p, &Columns::single(named("v2"), Some(named("v1"))), false).unwrap();
        assert_eq!(s.texts, vec!["win \u{a3}900 \u{201c}now\u{201d}", "s\u{fc}\u{df}"]);
        assert_eq!(s.labels, vec!["spam", "ham"]);
    }

    #[test]
    fn tab_separated_files_and_the_usual_column_names() {
        let dir = tempfile::tempdir().unwrap();
        let usual = Columns::single(Column::Usual, Some(Column::Usual));
        // GLUE's SST-2: tabs, no quoting (a text may open a quote it never closes).
        let p = write(dir.path(), "dev.tsv", "sentence\tlabel\n\" a quote, never closed\t1\nit's dull\t0\n");
        let s = read_split(&p, &usual, false).unwrap();
        assert_eq!(s.texts, vec!["\" a quote, never closed", "it's dull"]);
        assert_eq!((s.text_column.as_str(), s.label_column.as_deref()), ("sentence", Some("label")));
        // Tabs found by the header where the name does not say so.
        let p = write(dir.path(), "train.txt", "Label\tText\n1\tgreat, really\n");
        let s = read_split(&p, &usual, false).unwrap();
        assert_eq!((s.texts[0].as_str(), s.labels[0].as_str()), ("great, really", "1"));
        assert_eq!(s.text_column, "Text");
        // Kaggle's IMDB: review,sentiment; the tutorial's titletext wins over text.
        let p = write(dir.path(), "imdb.csv", "review,sentiment\n\"good, very\",positive\n");
        let s = read_split(&p, &usual, false).unwrap();
        assert_eq!((s.texts[0].as_str(), s.labels[0].as_str()), ("good, very", "positive"));
        let p = write(dir.path(), "news.csv", "label,title,text,titletext\n1,t,x,t x\n");
        assert_eq!(read_split(&p, &usual, false).unwrap().texts, vec!["t x"]);
        // A model's column where the file has it, else a usual one.
        let trained = |c: &str| Columns::single(Column::Trained(c.into()), Some(Column::Usual));
        assert_eq!(read_split(&p, &trained("title"), false).unwrap().texts, vec!["t"]);
        assert_eq!(read_split(&p, &trained("body"), false).unwrap().texts, vec!["t x"]);
        // Columns joined as the tutorial makes titletext: "title. text".
        let joined = read_split(&p, &Columns::single(named("title+text"), Some(named("label"))), false).unwrap();
        assert_eq!((joined.texts, joined.text_column.as_str()), (vec!["t. x".to_string()], "title+text"));
        assert_eq!(read_split(&p, &trained("title+text"), false).unwrap().texts, vec!["t. x"]);
        // By number, with nothing to tell a header by, the first row is data.
        let numbered = read_split(&p, &Columns::single(named("2+ 3"), None), false).unwrap();
        assert_eq!(numbered.texts, vec!["title. text", "t. x"]);
        let e = read_split(&p, &Columns::single(named("title+body"), None), false).unwrap_err().to_string();
        assert!(e.contains("no column 'title+body'"), "{e}");
        let e = read_split(&p, &Columns::single(named("text+label"), Some(named("label"))), false).unwrap_err();
        assert!(e.to_string().contains("a column of 'text+label' is also the label"), "{e}");
        // A named column is taken as named: no case folding, no fallback.
        let e = read_split(&p, &Columns::single(named("Text"), None), false).unwrap_err().to_string();
        assert!(e.contains("no column 'Text'"), "{e}");
        // No usual name, and contents that show no column: every value differs.
        let p = write(dir.path(), "odd.csv", "v1,v2\nspam,win\nham,lose\neggs,draw\n");
        let e = read_split(&p, &usual, false).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        let e = e.to_string();
        assert!(e.contains("no label column under a usual name") && e.contains("its columns: v1, v2"), "{e}");
        assert!(e.contains("--label-column"), "{e}");
        // Kaggle's spam.csv: found by their contents.
        let rows: String = (0..12)
            .map(|i| if i % 3 == 0 { format!("spam,win {i} now\n") } else { format!("ham,see you at {i}\n") })
            .collect();
        let p = write(dir.path(), "spam.csv", &format!("v1,v2\n{rows}"));
        let s = read_split(&p, &usual, false).unwrap();
        assert_eq!((s.text_column.as_str(), s.label_column.as_deref(), s.len()), ("v2", Some("v1"), 12));
        assert!(s.found_by.unwrap().contains("found by their contents"));
        // Without a header row: the first row is data, columns go by number.
        let ag = write(dir.path(), "ag.csv", &rows);
        let s = read_split(&ag, &usual, false).unwrap();
        assert_eq!((s.text_column.as_str(), s.label_column.as_deref()), ("column 2", Some("column 1")));
        assert_eq!((s.texts[0].as_str(), s.lines[0], s.records[0], s.len()), ("win 0 now", 1, 0, 12));
        let cols = Columns::single(named("column 2"), None);
        assert_eq!(read_split(&ag, &cols, false).unwrap().texts[0], "win 0 now");
        let e = read_split(&p, &Columns::single(named("v1"), Some(named("v1"))), false).unwrap_err();
        assert!(e.to_string().contains("both be read from column 'v1'"), "{e}");
        // A row with a stray tab is named with its likely cause.
        let p = write(dir.path(), "bad.tsv", "sentence\tlabel\na\tb\t1\n");
        let e = read_split(&p, &usual, false).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("a tab inside a text"), "{e}");
        // A test file with or without its labels.
        let labelled = write(dir.path(), "test.tsv", "index\tsentence\tlabel\n0\tfine\t1\n1\tok\t0\n");
        let (s, has_labels) = read_maybe_labelled(&labelled, &usual, false).unwrap();
        assert!(has_labels);
        assert_eq!(s.labels, vec!["1", "0"]);
        let bare = write(dir.path(), "test.tsv", "index\tsentence\n0\tfine\n");
        let (s, has_labels) = read_maybe_labelled(&bare, &usual, false).unwrap();
        assert!(!has_labels);
        assert_eq!((s.texts, s.labels.len()), (vec!["fine".to_string()], 0));
        let e = read_maybe_labelled(&p, &usual, false).unwrap_err().to_string();
        assert!(e.contains("line 2"), "a bad row is an error either way: {e}");
    }

    #[test]
    fn one_class_is_not_enough_and_unknown_labels_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "train.csv", "label,titletext\n1,a\n1,b\n");
        let s = read_split(&p, &cols(), false).unwrap();
        assert!(Labels::from_split(&s).unwrap_err().to_string().contains("at least two"));
        let labels = Labels::unnamed(vec!["0".into(), "2".into(), "10".into()]);
        let e = labels.ids(&s, "train.csv").unwrap_err();
        assert!(e.to_string().contains("line 2: label '1'"), "{e}");
        let mixed = Split { labels: vec!["10".into(), "2".into(), "0".into()], ..Default::default() };
        assert_eq!(Labels::from_split(&mixed).unwrap().names, vec!["0", "2", "10"]);
        let floats = Split { labels: vec!["10.0".into(), "2.0".into(), "-1.0".into()], ..Default::default() };
        assert_eq!(Labels::from_split(&floats).unwrap().names, vec!["-1.0", "2.0", "10.0"]);
        // STS-B's similarity scores are no classes.
        let scores: Vec<String> = (0..30).map(|i| format!("{:.1}", f64::from(i) / 6.0)).collect();
        let sts = Split { labels: scores.clone(), label_column: Some("score".into()), ..Default::default() };
        let e = Labels::from_split(&sts).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("column 'score' holds 30 distinct numbers (0.2, 0.3, 0.5, ...)"), "{e}");
        let few = Split { labels: scores[..12].to_vec(), ..Default::default() };
        assert_eq!(Labels::from_split(&few).unwrap().len(), 12, "a few fractional values may be classes");
    }

    #[test]
    fn named_classes_keep_their_values_and_answer_to_both() {
        let split = Split {
            labels: vec!["1".into(), "0".into(), "FAKE".into(), "REAL".into()],
            lines: vec![2, 3, 4, 5],
            ..Default::default()
        };
        let pairs = parse_class_names("1=FAKE, 0=REAL").unwrap();
        let from = Path::new("train.csv");
        let labels = Labels::unnamed(vec!["0".into(), "1".into()]).named(&pairs, from).unwrap();
        assert_eq!(
            (labels.values.clone(), labels.names.clone()),
            (vec!["0".into(), "1".into()], vec!["REAL".into(), "FAKE".into()])
        );
        assert_eq!(labels.ids(&split, "the model").unwrap(), vec![1, 0, 1, 0]);
        let odd = Split { labels: vec!["2".into()], lines: vec![7], ..Default::default() };
        let e = labels.ids(&odd, "the model").unwrap_err().to_string();
        assert!(
            e.contains("line 7: label '2'") && e.contains("(0=REAL, 1=FAKE; 1 row(s) here have other labels)"),
            "{e}"
        );
        // Names a Hugging Face Parquet file gives its classes 0, 1, ...
        let hub =
            Split { labels: vec!["1".into(), "0".into()], class_names: vec!["neg".into(), "pos".into()], ..split };
        let by_file = Labels::from_split(&hub).unwrap().names_from_file(&hub);
        assert_eq!(by_file, parse_class_names("0=neg,1=pos").unwrap());
        let strings = Split { labels: vec!["b".into(), "a".into()], ..hub };
        assert!(Labels::from_split(&strings).unwrap().names_from_file(&strings).is_empty(), "not numbers");
        // A name that is another class's value means that value.
        let swapped = Labels::unnamed(vec!["0".into(), "1".into()]).named(&parse_class_names("0=1,1=0").unwrap(), from);
        let digits = Split { labels: vec!["1".into(), "0".into()], lines: vec![2, 3], ..Default::default() };
        assert_eq!(swapped.unwrap().ids(&digits, "m").unwrap(), vec![1, 0]);
        // A Hub classifier's names, and data that numbers the classes: ids,
        // but only where no label is a name and every one is an id.
        let sst = Labels::unnamed(vec!["NEGATIVE".into(), "POSITIVE".into()]);
        assert_eq!(sst.ids_by_number(&digits), Some(vec![1, 0]));
        let mixed = Split { labels: vec!["1".into(), "POSITIVE".into()], ..Default::default() };
        let three = Split { labels: vec!["1".into(), "2".into()], ..Default::default() };
        assert_eq!((sst.ids_by_number(&mixed), sst.ids_by_number(&three)), (None, None));
        assert_eq!(Labels::unnamed(vec!["0".into(), "1".into()]).ids_by_number(&digits), None, "values come first");
        let unnamed = Labels::unnamed(vec!["0".into(), "1".into()]);
        for (spec, says) in [
            ("2=X,0=Y", "'2' is not a class of train.csv (its classes are 0, 1)"),
            ("0=X,0=Y", "names class '0' twice"),
            ("0=X", "leaves class(es) 1 of train.csv unnamed"),
            ("0=X,1=X", "the name 'X'"),
        ] {
            let e = unnamed.clone().named(&parse_class_names(spec).unwrap(), from).unwrap_err();
            assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
            assert!(e.to_string().contains(says), "{spec}: {e}");
        }
        assert!(parse_class_names("0=REAL,1").unwrap_err().contains("'1' is not VALUE=NAME"));
        assert!(parse_class_names("0=,1=FAKE").unwrap_err().contains("empty"));
    }

    #[test]
    fn batches_cover_every_example_once_and_are_reproducible() {
        let lengths: Vec<usize> = (0..1003).map(|i| 3 + (i * 37) % 120).collect();
        let a = train_batches(&lengths, 16, 42, 0);
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1003).collect::<Vec<_>>());
        assert_eq!(a.len(), 1003usize.div_ceil(16));
        assert_eq!(a, train_batches(&lengths, 16, 42, 0));
        assert_ne!(a, train_batches(&lengths, 16, 42, 1));
        // Bucketing: batches are far tighter in length than random ones.
        let spread: usize = a.iter().map(|b| lengths[*b.last().unwrap()] - lengths[b[0]]).sum::<usize>() / a.len();
        assert!(spread < 15, "{spread}");
        let e = eval_batches(&lengths, 16, 128);
        assert_eq!(e.iter().map(Vec::len).sum::<usize>(), 1003);
        assert!(e.iter().all(|b| b.len() * lengths[*b.last().unwrap()] <= 16 * 128));
        assert!(e[0].len() > 16, "short texts share bigger batches");
        let long = eval_batches(&[128; 40], 16, 128);
        assert_eq!(long.iter().map(Vec::len).collect::<Vec<_>>(), vec![16, 16, 8]);
        assert_eq!(deal(&[0, 1, 2, 3, 4], 2), vec![0, 2, 4, 1, 3]);
    }

    #[test]
    fn collate_pads_to_the_longest() {
        let rows: Vec<Vec<u32>> = vec![vec![101, 7, 102], vec![101, 102]];
        let b = collate(rows.iter().map(Vec::as_slice), 0, Device::Cpu).unwrap();
        assert_eq!(b.ids.size(), vec![2, 3]);
        assert_eq!(Vec::<i64>::try_from(b.ids.flatten(0, -1)).unwrap(), vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(b.mask.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]), 5);
        assert!(b.types.is_none(), "single texts: type 0 everywhere");
        // A pair: the second segment's ids carry the bit, which becomes type 1.
        let rows: Vec<Vec<u32>> = vec![vec![101, 7, 102, 8 | SECOND_SEGMENT, 102 | SECOND_SEGMENT], vec![101, 102]];
        let b = collate(rows.iter().map(Vec::as_slice), 0, Device::Cpu).unwrap();
        assert_eq!(Vec::<i64>::try_from(b.ids.flatten(0, -1)).unwrap(), vec![101, 7, 102, 8, 102, 101, 102, 0, 0, 0]);
        let types = Vec::<i64>::try_from(b.types.unwrap().flatten(0, -1)).unwrap();
        assert_eq!(types, vec![0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    }
}
