//! A data file's rows of cells, whatever it is written in: comma-, tab- or
//! semicolon-separated text (the tutorial's CSVs, GLUE's TSVs, spreadsheet
//! exports from European locales), or JSON objects, one per line as Hugging
//! Face datasets' `to_json` and pandas' `to_json(orient="records",
//! lines=True)` write them, or in one array (`orient="records"`), or
//! Parquet, as the Hugging Face Hub serves datasets (a split in shards,
//! `train-00000-of-00002.parquet`, is read whole from its first shard). The
//! text files may be gzipped (`train.jsonl.gz`, as Amazon's and Yelp's
//! reviews ship). A JSON file's keys are its columns' names, in the order
//! they first appear; a row without a key has an empty cell there, as pandas
//! reads it. A Parquet file has no lines: its rows are counted from 1 where
//! messages say "line".

use std::io::Read;
use std::path::Path;

use anyhow::Result;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::bail_usage;

/// The file name endings read as JSON (before any `.gz`).
const JSON_EXTENSIONS: &[&str] = &["jsonl", "ndjson", "json"];
/// The endings a data file is known by, in the order a split's file is
/// looked for: the tutorial's CSV, GLUE's TSV, JSON lines as Hugging Face
/// datasets' `to_json` writes them, each also gzipped, and Parquet.
pub const EXTENSIONS: &[&str] =
    &["csv", "tsv", "jsonl", "json", "ndjson", "csv.gz", "tsv.gz", "jsonl.gz", "json.gz", "ndjson.gz", "parquet"];

/// The rows of a CSV looked at to tell whether a column holds lists.
const LIST_SAMPLE_ROWS: usize = 2_000;

/// A file's text, ready to be read row by row.
pub struct Table {
    form: Form,
    /// The file's name for messages: a split in shards shows `*` for the
    /// shard's number (`train-*-of-00002.parquet`).
    name: String,
}

enum Form {
    Delimited {
        bytes: Vec<u8>,
        delimiter: Delimiter,
    },
    /// JSON and Parquet: rows under names the file gives.
    Keyed(KeyedRows),
}

/// One row as read: the line it starts on (1-based), its place among the
/// file's rows (0-based, header not counted) and its cells, or why it could
/// not be read.
pub struct Row<'a> {
    pub line: u64,
    pub index: u64,
    pub cells: std::result::Result<&'a csv::ByteRecord, String>,
}

impl Table {
    /// Reads `path` (gunzipping a `.gz`) and works out how it is written.
    pub fn load(path: &Path) -> Result<Table> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
            let shards = shards(path)?;
            let name = match shard_parts(&file_name(path)) {
                Some((stem, _, count)) if shards.len() > 1 => format!("{stem}-*-of-{count:05}.parquet"),
                _ => file_name(path),
            };
            return Ok(Table { form: Form::Keyed(parquet_rows(&shards)?), name });
        }
        let mut bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => bail_usage!("cannot read {}: {e}", path.display()),
        };
        let mut name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if let Some(inner) = name.strip_suffix(".gz") {
            let mut out = Vec::new();
            if let Err(e) = flate2::read::MultiGzDecoder::new(bytes.as_slice()).read_to_end(&mut out) {
                bail_usage!("{}: cannot gunzip it ({e}); is it a complete .gz file?", path.display());
            }
            bytes = out;
            name = inner.to_string();
        }
        let bytes = without_bom(bytes);
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_string()).unwrap_or_default();
        let form = if JSON_EXTENSIONS.contains(&ext.as_str()) {
            Form::Keyed(KeyedRows::from_json(&bytes, path)?)
        } else {
            let bytes = utf8_or_windows_1252(bytes);
            let delimiter = Delimiter::of(&ext, &bytes);
            Form::Delimited { bytes, delimiter }
        };
        Ok(Table { form, name: file_name(path) })
    }

    /// The file's name without its directory, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the file names its columns itself (JSON keys, Parquet's
    /// schema), so its first row is never data.
    pub fn named(&self) -> bool {
        matches!(self.form, Form::Keyed(_))
    }

    /// The cells of the first row, trimmed: the columns' names where it is a
    /// header (a JSON file's keys).
    pub fn first_row(&self, path: &Path) -> Result<Vec<String>> {
        let names = match &self.form {
            Form::Delimited { bytes, delimiter } => match csv_reader(bytes, *delimiter, true).byte_headers() {
                Ok(h) => h.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect(),
                Err(e) => bail_usage!("{}: cannot read the header row ({e})", path.display()),
            },
            Form::Keyed(j) => j.names.clone(),
        };
        if names.iter().all(|n: &String| n.is_empty()) {
            bail_usage!("{} is empty: expected a header row naming the columns", path.display());
        }
        Ok(names)
    }

    /// Up to `n` readable rows after the first.
    pub fn sample(&self, n: usize) -> Vec<csv::ByteRecord> {
        match &self.form {
            Form::Delimited { bytes, delimiter } => {
                csv_reader(bytes, *delimiter, true).byte_records().take(n).filter_map(|r| r.ok()).collect()
            }
            Form::Keyed(j) => j.rows.iter().filter_map(|(_, r)| r.as_ref().ok()).take(n).cloned().collect(),
        }
    }

    /// Calls `each` on every row, after the first where `header`.
    pub fn rows(&self, path: &Path, header: bool, mut each: impl FnMut(Row) -> Result<()>) -> Result<()> {
        match &self.form {
            Form::Delimited { bytes, delimiter } => {
                let mut rdr = csv_reader(bytes, *delimiter, header);
                let mut record = csv::ByteRecord::new();
                let mut lines = LineCounter::default();
                for index in 0u64.. {
                    let line = rdr.position().line();
                    let read = match rdr.read_byte_record(&mut record) {
                        Ok(false) => break,
                        Ok(true) => Ok(()),
                        Err(e) => match e.kind() {
                            csv::ErrorKind::Io(_) => bail_usage!("cannot read {}: {e}", path.display()),
                            _ => Err(format!("{e}")),
                        },
                    };
                    let line = record.position().map(|p| lines.line_at(bytes, p.byte() as usize)).unwrap_or(line);
                    each(Row { line, index, cells: read.map(|_| &record) })?;
                }
            }
            Form::Keyed(j) => {
                for (index, (line, cells)) in (0u64..).zip(&j.rows) {
                    each(Row { line: *line, index, cells: cells.as_ref().map_err(Clone::clone) })?;
                }
            }
        }
        Ok(())
    }

    /// The names the file gives the classes that `column`'s values 0, 1,
    /// ... stand for (empty where it gives none).
    pub fn class_names(&self, column: &str) -> &[String] {
        match &self.form {
            Form::Keyed(k) => k.class_names.iter().find(|(c, _)| c == column).map_or(&[], |(_, n)| n.as_slice()),
            Form::Delimited { .. } => &[],
        }
    }

    /// What a row with the wrong number of cells most likely has.
    pub fn stray(&self) -> &'static str {
        match &self.form {
            Form::Delimited { delimiter, .. } => delimiter.stray(),
            Form::Keyed(_) => "a key the first rows lack",
        }
    }

    /// Whether column `c` holds lists: a list (or an object) on some row of
    /// a JSON or Parquet file; in a CSV, `[...]` in every filled cell of the
    /// rows looked at (a list pandas wrote, `[2, 27]` or `['joy', 'love']`).
    pub fn holds_lists(&self, c: usize) -> bool {
        match &self.form {
            Form::Keyed(j) => matches!(j.nested.get(c), Some(Some(_))),
            Form::Delimited { .. } => {
                let rows = self.sample(LIST_SAMPLE_ROWS);
                let mut cells =
                    rows.iter().filter_map(|r| r.get(c)).map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()).peekable();
                cells.peek().is_some() && cells.all(|v| v.starts_with(b"[") && v.ends_with(b"]"))
            }
        }
    }

    /// Fails where one of `columns` holds a list or an object on some row:
    /// each row must give one text (and one label, where the label column is
    /// not read as lists of labels).
    pub fn single_values(&self, path: &Path, names: &[String], columns: &[usize]) -> Result<()> {
        let Form::Keyed(j) = &self.form else { return Ok(()) };
        for &c in columns {
            if let Some(Some(line)) = j.nested.get(c) {
                bail_usage!(
                    "{} line {line}: column '{}' holds a list or an object, not one value; each row needs one text (and one 0 or 1 per label column), so pick other columns with --text-column or --label-column",
                    path.display(),
                    names[c]
                );
            }
        }
        Ok(())
    }
}

/// A JSON or Parquet file's rows as cells under its keys.
struct KeyedRows {
    names: Vec<String>,
    rows: Vec<(u64, std::result::Result<csv::ByteRecord, String>)>,
    /// Per column, the first line where it holds a list or an object.
    nested: Vec<Option<u64>>,
    /// The names of the classes a column's values 0, 1, ... stand for,
    /// where the file says (Hugging Face's `ClassLabel` in Parquet metadata).
    class_names: Vec<(String, Vec<String>)>,
}

/// A JSON object with its keys in the file's order.
struct Object(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Object, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of column names and values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Object, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Object(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

impl KeyedRows {
    fn from_json(bytes: &[u8], path: &Path) -> Result<KeyedRows> {
        let objects = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => array_objects(bytes, path)?,
            _ => line_objects(bytes),
        };
        if let [(_, Ok(only))] = objects.as_slice() {
            if !only.0.is_empty() && only.0.iter().all(|(_, v)| v.is_object()) {
                bail_usage!(
                    "{}: one object of columns, as pandas' to_json() writes by default; write one object per row instead: df.to_json(path, orient=\"records\", lines=True)",
                    path.display()
                );
            }
        }
        // Not one row an object: the file is no JSON lines at all.
        if let [(line, Err(why)), ..] = objects.as_slice() {
            if objects.iter().all(|(_, o)| o.is_err()) {
                bail_usage!("{} line {line}: {why}; expected one JSON object per line", path.display());
            }
        }
        let mut names: Vec<String> = Vec::new();
        for (_, o) in &objects {
            for (k, _) in o.iter().flat_map(|o| &o.0) {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        let mut nested = vec![None; names.len()];
        let rows = objects
            .into_iter()
            .map(|(line, o)| {
                let cells = o.map(|o| {
                    let mut cells = vec![Vec::new(); names.len()];
                    for (k, v) in o.0 {
                        let Some(at) = names.iter().position(|n| *n == k) else { continue };
                        if matches!(v, Value::Array(_) | Value::Object(_)) {
                            nested[at].get_or_insert(line);
                        }
                        cells[at] = cell(v);
                    }
                    csv::ByteRecord::from(cells)
                });
                (line, cells)
            })
            .collect();
        Ok(KeyedRows { names, rows, nested, class_names: Vec::new() })
    }
}

/// A value as a cell: strings as they are, numbers and booleans as JSON
/// writes them, null as an empty cell.
fn cell(v: Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

type Parsed = Vec<(u64, std::result::Result<Object, String>)>;

/// JSON lines: one object per line; blank lines are no rows.
fn line_objects(bytes: &[u8]) -> Parsed {
    (1u64..)
        .zip(bytes.split(|&b| b == b'\n'))
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(n, l)| (n, serde_json::from_slice::<Object>(l).map_err(|e| broken(&e))))
        .collect()
}

/// Why a row is not a JSON object, at which column of its line.
fn broken(e: &serde_json::Error) -> String {
    let what = e.to_string();
    let what = what.split(" at line ").next().unwrap_or_default();
    format!("not a JSON object ({what}, column {})", e.column())
}

/// One array of objects, each on the line where it starts. A broken
/// element leaves no way to find the next, so it fails the file.
fn array_objects(bytes: &[u8], path: &Path) -> Result<Parsed> {
    let mut at = bytes.iter().position(|&b| b == b'[').map_or(bytes.len(), |i| i + 1);
    let mut line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
    // Moves past whitespace, counting its lines; the byte there.
    let skip = |at: &mut usize, line: &mut u64| {
        while *at < bytes.len() && bytes[*at].is_ascii_whitespace() {
            *line += u64::from(bytes[*at] == b'\n');
            *at += 1;
        }
        bytes.get(*at).copied()
    };
    let mut out = Vec::new();
    loop {
        match skip(&mut at, &mut line) {
            Some(b']') => break,
            None => bail_usage!("{}: the JSON array is not closed with ']'", path.display()),
            Some(b',') if !out.is_empty() => {
                at += 1;
                skip(&mut at, &mut line);
            }
            Some(_) if !out.is_empty() => {
                bail_usage!("{} line {line}: expected ',' or ']' between the array's objects", path.display())
            }
            Some(_) => {}
        }
        let mut stream = serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<Object>();
        match stream.next() {
            Some(Ok(o)) => out.push((line, Ok(o))),
            Some(Err(e)) => {
                let line = line + e.line().max(1) as u64 - 1;
                bail_usage!("{} line {line}: {}", path.display(), broken(&e))
            }
            None => bail_usage!("{}: the JSON array is not closed with ']'", path.display()),
        }
        let end = at + stream.byte_offset();
        line += bytes[at..end].iter().filter(|&&b| b == b'\n').count() as u64;
        at = end;
    }
    Ok(out)
}

/// (stem, index, count) of `NAME-00001-of-00003[-hash].parquet`.
fn shard_parts(name: &str) -> Option<(&str, usize, usize)> {
    let base = name.strip_suffix(".parquet")?;
    let (stem, rest) = base.split_once("-of-").map(|(a, b)| (a.rsplit_once('-'), b))?;
    let (stem, index) = stem?;
    let count = rest.split('-').next()?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(index) && digits(count)) {
        return None;
    }
    Some((stem, index.parse().ok()?, count.parse().ok()?))
}

/// Whether a file's name ends as a data file's does ([`EXTENSIONS`]).
pub fn is_data_file(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    EXTENSIONS.iter().any(|ext| name.strip_suffix(ext).is_some_and(|stem| stem.ends_with('.')))
}

/// What a folder holds, in name order (nothing, where it cannot be read).
pub fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    paths.sort();
    paths
}

/// A file's name without its directory, for messages.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The shards of a split on the Hugging Face Hub, from any one of them:
/// `train-00000-of-00003.parquet` (some with a hash after the count) and its
/// siblings, in order; a file not named so is its own only shard.
fn shards(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let name = file_name(path);
    let Some((stem, _, count)) = shard_parts(&name) else { return Ok(vec![path.to_path_buf()]) };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut found: Vec<(usize, std::path::PathBuf)> = entries(dir)
        .into_iter()
        .filter_map(|p| {
            let name = file_name(&p);
            let (s, i, c) = shard_parts(&name)?;
            (s == stem && c == count).then_some((i, p))
        })
        .collect();
    found.sort();
    found.dedup_by_key(|(i, _)| *i);
    if let Some(missing) = (0..count).find(|&i| found.get(i).is_none_or(|(j, _)| *j != i)) {
        bail_usage!(
            "{}: shard {missing} of {stem}'s {count} is not in {} (expected {stem}-{missing:05}-of-{count:05}.parquet); download every shard",
            path.display(),
            dir.display()
        );
    }
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// A Parquet split's rows (all its shards'), under its top-level columns;
/// pandas' saved index (`__index_level_0__`) is no column.
fn parquet_rows(shards: &[std::path::PathBuf]) -> Result<KeyedRows> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let mut names: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut nested: Vec<Option<u64>> = Vec::new();
    let mut line = 0u64;
    let mut class_names = Vec::new();
    for shard in shards {
        let file = match std::fs::File::open(shard) {
            Ok(f) => f,
            Err(e) => bail_usage!("cannot read {}: {e}", shard.display()),
        };
        let shard = shard.as_path();
        let reader = match SerializedFileReader::new(file) {
            Ok(r) => r,
            Err(e) => bail_usage!("{}: not a readable Parquet file ({e})", shard.display()),
        };
        let schema = reader.metadata().file_metadata().schema_descr().root_schema().get_fields().to_vec();
        let here: Vec<String> = schema.iter().map(|f| f.name().to_string()).collect();
        if names.is_empty() {
            names = here.iter().filter(|n| !n.starts_with("__index_level_")).cloned().collect();
            nested = vec![None; names.len()];
            class_names = hugging_face_classes(reader.metadata().file_metadata().key_value_metadata());
        } else if !names.iter().all(|n| here.contains(n)) {
            bail_usage!(
                "{}: its columns ({}) are not those of the split's first shard ({})",
                shard.display(),
                here.join(", "),
                names.join(", ")
            );
        }
        let iter = match reader.get_row_iter(None) {
            Ok(i) => i,
            Err(e) => bail_usage!("{}: cannot read its rows ({e})", shard.display()),
        };
        for row in iter {
            line += 1;
            let row = match row {
                Ok(r) => r,
                Err(e) => bail_usage!("{} row {line}: cannot read it ({e})", shard.display()),
            };
            let mut cells = vec![Vec::new(); names.len()];
            for (name, field) in row.get_column_iter() {
                let Some(at) = names.iter().position(|n| n == name) else { continue };
                cells[at] = match field {
                    Field::Null => Vec::new(),
                    Field::Str(s) => s.as_bytes().to_vec(),
                    Field::Bytes(b) => b.data().to_vec(),
                    Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
                        nested[at].get_or_insert(line);
                        field.to_string().into_bytes()
                    }
                    other => other.to_string().into_bytes(),
                };
            }
            rows.push((line, Ok(csv::ByteRecord::from(cells))));
        }
    }
    Ok(KeyedRows { names, rows, nested, class_names })
}

/// The class names of each `ClassLabel` column, from the features the
/// `datasets` library stores under the `huggingface` key of a Parquet
/// file's metadata (IMDB's label: `neg`, `pos`).
fn hugging_face_classes(metadata: Option<&Vec<parquet::file::metadata::KeyValue>>) -> Vec<(String, Vec<String>)> {
    let Some(json) = metadata.into_iter().flatten().find(|kv| kv.key == "huggingface").and_then(|kv| kv.value.as_ref())
    else {
        return Vec::new();
    };
    let Ok(info) = serde_json::from_str::<Value>(json) else { return Vec::new() };
    let Some(features) = info.pointer("/info/features").and_then(Value::as_object) else { return Vec::new() };
    features
        .iter()
        .filter_map(|(column, f)| {
            // A multi-label column is a list of classes: Sequence or List of a ClassLabel.
            let f = match f.get("_type").and_then(Value::as_str) {
                Some("Sequence" | "List" | "LargeList") => f.get("feature")?,
                _ => f,
            };
            (f.get("_type").and_then(Value::as_str) == Some("ClassLabel")).then_some((column, f))
        })
        .filter_map(|(column, f)| {
            let names: Option<Vec<String>> =
                f.get("names")?.as_array()?.iter().map(|n| n.as_str().map(str::to_string)).collect();
            Some((column.clone(), names?))
        })
        .collect()
}

/// Line numbers of byte offsets, counted forward as records are read. (The
/// csv crate's own count is one short after a CRLF line end, where a record's
/// position is the `\n` of the previous line's end.)
#[derive(Default)]
struct LineCounter {
    offset: usize,
    newlines: u64,
}

impl LineCounter {
    /// The 1-based line of the first character at or after `offset` that is
    /// not a line end. Offsets must not decrease between calls.
    fn line_at(&mut self, bytes: &[u8], offset: usize) -> u64 {
        let mut start = offset.min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        let from = self.offset.min(start);
        self.newlines += bytes[from..start].iter().filter(|&&b| b == b'\n').count() as u64;
        self.offset = start;
        self.newlines + 1
    }
}

/// How a file separates its fields: tabs where its name says so (`.tsv`,
/// `.tab`), else what its header row holds: tabs and no commas (GLUE's
/// files, spreadsheet exports), semicolons and neither (Excel's CSV in
/// locales whose decimal mark is a comma), else commas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delimiter {
    Comma,
    Tab,
    Semicolon,
}

impl Delimiter {
    fn of(ext: &str, bytes: &[u8]) -> Delimiter {
        if matches!(ext, "tsv" | "tab") {
            return Delimiter::Tab;
        }
        let header = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let has = |c: u8| header.contains(&c);
        let by_header = if has(b'\t') && !has(b',') {
            Delimiter::Tab
        } else if has(b';') && !has(b',') && !has(b'\t') {
            Delimiter::Semicolon
        } else {
            Delimiter::Comma
        };
        // A first row with both tabs and commas (UCI's SMSSpamCollection:
        // `ham<TAB>Go until jurong point, crazy..`) is told by the rows: the
        // delimiter that splits them all alike.
        if consistent(bytes, by_header) {
            return by_header;
        }
        [Delimiter::Tab, Delimiter::Comma, Delimiter::Semicolon]
            .into_iter()
            .find(|&d| consistent(bytes, d))
            .unwrap_or(by_header)
    }

    fn stray(self) -> &'static str {
        match self {
            Delimiter::Comma => "an unquoted comma or an unclosed quote",
            Delimiter::Tab => "a tab inside a text",
            Delimiter::Semicolon => "an unquoted semicolon or an unclosed quote",
        }
    }
}

/// Whether the first rows (up to 50) all split into the same number of
/// fields, two or more, at `delimiter`.
fn consistent(bytes: &[u8], delimiter: Delimiter) -> bool {
    let mut fields = None;
    for record in csv_reader(bytes, delimiter, false).byte_records().take(50) {
        match (record, fields) {
            (Err(_), _) => return false,
            (Ok(r), None) => fields = Some(r.len()),
            (Ok(r), Some(n)) if r.len() != n => return false,
            _ => {}
        }
    }
    fields.is_some_and(|n| n >= 2)
}

/// How every delimited file is read: rows of any length (each is checked
/// against the first, naming its line), after a header row where `header`.
/// Tab-separated files are read without quoting, as GLUE's loaders read
/// them: a text may begin with a quote it never closes.
fn csv_reader(bytes: &[u8], delimiter: Delimiter, header: bool) -> csv::Reader<&[u8]> {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(header).flexible(true);
    match delimiter {
        Delimiter::Comma => {}
        Delimiter::Tab => {
            b.delimiter(b'\t').quoting(false);
        }
        Delimiter::Semicolon => {
            b.delimiter(b';');
        }
    }
    b.from_reader(bytes)
}

/// A text file's contents as text, whatever its encoding: UTF-8 (with or
/// without a byte-order mark), UTF-16 with one, or Windows-1252.
pub fn decode_text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&utf8_or_windows_1252(without_bom(bytes))).into_owned()
}

/// A text file's bytes without a byte-order mark: UTF-16 converted to
/// UTF-8, a UTF-8 mark dropped.
fn without_bom(bytes: Vec<u8>) -> Vec<u8> {
    let mut bytes = utf16(&bytes).map_or(bytes, String::into_bytes);
    if bytes.starts_with("\u{feff}".as_bytes()) {
        bytes.drain(..3);
    }
    bytes
}

/// The text of a UTF-16 file, which starts with its byte-order mark
/// (Excel's "Unicode Text" export, a tab-separated file, is UTF-16 LE).
fn utf16(bytes: &[u8]) -> Option<String> {
    let little = match bytes.get(..2)? {
        [0xff, 0xfe] => true,
        [0xfe, 0xff] => false,
        _ => return None,
    };
    let units: Vec<u16> = bytes[2..]
        .chunks_exact(2)
        .map(|c| if little { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) })
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// The file's bytes as UTF-8. Files saved by Windows tools and Kaggle's
/// spam.csv are Latin-1 / Windows-1252, which Python users read with
/// `encoding='latin-1'`: a file that is not UTF-8 and holds not a single
/// multi-byte UTF-8 character is taken as Windows-1252 and converted. A UTF-8
/// file with a few broken bytes stays UTF-8, and those rows are reported.
fn utf8_or_windows_1252(bytes: Vec<u8>) -> Vec<u8> {
    if std::str::from_utf8(&bytes).is_ok() || bytes.utf8_chunks().any(|c| !c.valid().is_ascii()) {
        return bytes;
    }
    // Windows-1252's 0x80-0x9F; its five unassigned codes keep Latin-1's.
    const HIGH: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,
        0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A,
        0x0153, 0x9D, 0x017E, 0x0178,
    ];
    let text: String = bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => char::from_u32(HIGH[usize::from(b - 0x80)]).unwrap_or(char::REPLACEMENT_CHARACTER),
            _ => char::from(b),
        })
        .collect();
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cells = std::result::Result<Vec<String>, String>;

    /// Every row of `path`'s table: line, index, cells as strings (or why not).
    fn read(path: &Path) -> (Vec<String>, Vec<(u64, u64, Cells)>) {
        let t = Table::load(path).unwrap();
        let names = t.first_row(path).unwrap();
        let mut rows = Vec::new();
        t.rows(path, true, |r| {
            let cells = r.cells.map(|c| c.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect());
            rows.push((r.line, r.index, cells));
            Ok(())
        })
        .unwrap();
        (names, rows)
    }

    fn cells(v: &[&str]) -> Cells {
        Ok(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn json_lines_take_their_keys_in_order_and_fill_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.jsonl");
        let text =
            "{\"text\": \"a \\\"b\\\"\\nc\", \"label\": 1}\n\n{\"label\": 0.5, \"text\": \"d\", \"extra\": true}\n\
                    {\"text\": null, \"label\": \"x\"}\n{\"text\": \"cut off\n";
        std::fs::write(&p, text).unwrap();
        let (names, rows) = read(&p);
        assert_eq!(names, vec!["text", "label", "extra"]);
        assert_eq!(rows[0], (1, 0, cells(&["a \"b\"\nc", "1", ""])));
        assert_eq!(rows[1], (3, 1, cells(&["d", "0.5", "true"])));
        assert_eq!(rows[2], (4, 2, cells(&["", "x", ""])));
        let (line, index, why) = &rows[3];
        assert_eq!((*line, *index), (5, 3));
        assert!(why.as_ref().unwrap_err().starts_with("not a JSON object"), "{why:?}");
        assert!(Table::load(&p).unwrap().named());
        // pandas' default to_json(), and a file of no objects at all, say what they are.
        for (text, says) in [
            ("{\"text\": {\"0\": \"a\"}, \"label\": {\"0\": 1}}\n", "orient=\"records\", lines=True"),
            ("42\n", "line 1: not a JSON object"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Table::load(&p).err().unwrap();
            assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_json_array_gives_each_object_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("valid.json");
        std::fs::write(&p, "[\n  {\"text\": \"a\",\n   \"label\": 0},\n  {\"text\": \"b\", \"label\": [1, 2]}\n]\n")
            .unwrap();
        let (names, rows) = read(&p);
        assert_eq!(names, vec!["text", "label"]);
        assert_eq!(rows[0], (2, 0, cells(&["a", "0"])));
        assert_eq!(rows[1], (4, 1, cells(&["b", "[1,2]"])));
        // A list is no single value: the column is refused, naming where
        // (a label column of lists is read as lists of labels instead).
        let t = Table::load(&p).unwrap();
        assert!(t.single_values(&p, &names, &[0]).is_ok());
        let e = t.single_values(&p, &names, &[0, 1]).unwrap_err().to_string();
        assert!(e.contains("valid.json line 4: column 'label' holds a list"), "{e}");
        assert!(t.holds_lists(1) && !t.holds_lists(0));
        for (broken, says) in [
            ("[{\"text\": \"a\"}\n {\"text\": \"b\"}]", "line 2: expected ','"),
            ("[{\"text\": \"a\"},\n\n {\"text\": }]", "line 3: not a JSON object"),
            ("[{\"text\": \"a\"},", "not closed"),
        ] {
            std::fs::write(&p, broken).unwrap();
            let e = Table::load(&p).err().unwrap();
            assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
            assert!(e.to_string().contains(says), "{broken}: {e}");
        }
    }

    #[test]
    fn gzipped_and_semicolon_separated_files_are_read() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"label;text\n1;\"a; b\"\n0;c, d\n").unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let (names, rows) = read(&p);
        assert_eq!(names, vec!["label", "text"]);
        assert_eq!(rows[0], (2, 0, cells(&["1", "a; b"])));
        assert_eq!(rows[1], (3, 1, cells(&["0", "c, d"])));
        assert!(!Table::load(&p).unwrap().named());
        std::fs::write(&p, b"not gzip").unwrap();
        let e = Table::load(&p).err().unwrap().to_string();
        assert!(e.contains("cannot gunzip"), "{e}");
        // Excel's "Unicode Text": UTF-16 LE with a byte-order mark, tabs.
        let p = dir.path().join("train.txt");
        let text = "label\ttext\r\n1\tcaf\u{e9}, \u{1f600}\r\n";
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(&p, bytes).unwrap();
        let (names, rows) = read(&p);
        assert_eq!(names, vec!["label", "text"]);
        assert_eq!(rows[0], (2, 0, cells(&["1", "caf\u{e9}, \u{1f600}"])));
        // Commas in the header keep commas where the rows split alike.
        assert_eq!(Delimiter::of("csv", b"label,text\n1,x;y\n"), Delimiter::Comma);
        assert_eq!(Delimiter::of("txt", b"label\ttext; more\n"), Delimiter::Tab);
        // UCI's SMSSpamCollection: no header, no extension, tabs, commas in texts.
        let sms = b"ham\tGo until jurong point, crazy..\nham\tOk lar...\nspam\tFree entry, in 2 a wkly comp, win\n";
        assert_eq!(Delimiter::of("", sms), Delimiter::Tab);
        // Rows that split alike at nothing (a broken file) keep the header's choice.
        assert_eq!(Delimiter::of("csv", b"label,text\n1,a,b\n0\n"), Delimiter::Comma);
    }

    /// Writes a Parquet file as pyarrow does for `datasets`: a text column,
    /// an optional int64 label, an optional list of ints, snappy-compressed,
    /// with Hugging Face's features in the metadata.
    fn write_parquet(path: &Path, texts: &[&str], labels: &[Option<i64>], tags: &[Vec<i64>]) {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::metadata::KeyValue;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let schema = "message schema { REQUIRED BYTE_ARRAY text (UTF8); OPTIONAL INT64 label; \
                      OPTIONAL group tags (LIST) { REPEATED group list { OPTIONAL INT64 element; } } }";
        let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let features = r#"{"info": {"features": {"text": {"dtype": "string", "_type": "Value"},
            "label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}}}"#;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".into(), features.to_string())]))
            .build();
        let mut w = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, Arc::new(props)).unwrap();
        let mut group = w.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = texts.iter().map(|t| ByteArray::from(*t)).collect();
        column.typed::<ByteArrayType>().write_batch(&values, None, None).unwrap();
        column.close().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let present: Vec<i64> = labels.iter().flatten().copied().collect();
        let defined: Vec<i16> = labels.iter().map(|l| i16::from(l.is_some())).collect();
        column.typed::<Int64Type>().write_batch(&present, Some(&defined), None).unwrap();
        column.close().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let (mut values, mut defined, mut repeated) = (Vec::new(), Vec::new(), Vec::new());
        for list in tags {
            if list.is_empty() {
                defined.push(1);
                repeated.push(0);
            }
            for (i, v) in list.iter().enumerate() {
                values.push(*v);
                defined.push(3);
                repeated.push(i16::from(i > 0));
            }
        }
        column.typed::<Int64Type>().write_batch(&values, Some(&defined), Some(&repeated)).unwrap();
        column.close().unwrap();
        group.close().unwrap();
        w.close().unwrap();
    }

    #[test]
    fn parquet_shards_read_as_one_split_with_hugging_face_class_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("train-00000-of-00002.parquet");
        write_parquet(&first, &["a", "b"], &[Some(1), None], &[vec![], vec![4, 5]]);
        write_parquet(&dir.path().join("train-00001-of-00002.parquet"), &["c"], &[Some(0)], &[vec![6]]);
        let (names, rows) = read(&first);
        assert_eq!(names, vec!["text", "label", "tags"]);
        assert_eq!(rows[0], (1, 0, cells(&["a", "1", "[]"])));
        assert_eq!(rows[1], (2, 1, cells(&["b", "", "[4, 5]"])));
        assert_eq!(rows[2], (3, 2, cells(&["c", "0", "[6]"])));
        let t = Table::load(&first).unwrap();
        assert_eq!(t.name(), "train-*-of-00002.parquet");
        assert!(t.named());
        assert_eq!(t.class_names("label"), ["neg", "pos"]);
        assert!(t.class_names("text").is_empty());
        let e = t.single_values(&first, &names, &[0, 2]).unwrap_err().to_string();
        assert!(e.contains("line 1: column 'tags' holds a list"), "{e}");
        // Any shard finds the others; a missing one is named.
        assert_eq!(read(&dir.path().join("train-00001-of-00002.parquet")).1.len(), 3);
        std::fs::remove_file(dir.path().join("train-00001-of-00002.parquet")).unwrap();
        let e = Table::load(&first).err().unwrap();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("shard 1 of train's 2 is not in"), "{e}");
        let fake = dir.path().join("test.parquet");
        std::fs::write(&fake, "label,text\n1,a\n").unwrap();
        let e = Table::load(&fake).err().unwrap().to_string();
        assert!(e.contains("test.parquet: not a readable Parquet file"), "{e}");
        assert_eq!(shard_parts("validation-00003-of-00010-5a744bf76a1d84b8.parquet"), Some(("validation", 3, 10)));
        assert_eq!(shard_parts("train-1-of-2.parquet"), None);
    }
}
