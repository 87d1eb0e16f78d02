//! Which columns of a data file hold the text and the label, and whether its
//! first row names them.
//!
//! A flag names a column exactly. Without one, the usual names of data sets
//! are looked for (case ignored): whole names first (`text`, `label`), then
//! names made of words that include one (`airline_sentiment`, `comment_text`,
//! `reviewText`). A file that has none, such as Kaggle's `spam.csv` (`v1`,
//! `v2`), has its columns guessed from what they hold: the label is the
//! always-filled column of a few short values, the text the column with the
//! longest values. A file whose first row is already data (AG News, Yelp,
//! DBpedia and Sentiment140 ship so) has no header: its first row's label is
//! one of the label column's classes. Its columns are then numbered from 1
//! (`column 3`), and the run's other files, `evaluate` and `predict` read it
//! the same way. Sentence-pair tasks (GLUE's MRPC, RTE, QNLI; SNLI) have a
//! second text column, named or found among the usual pairs.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

use crate::bail_usage;

/// The usual names of the text column, tried in this order: the tutorial's
/// (`TabularDataset` field `titletext`), then those of common exports
/// (Hugging Face datasets, GLUE, Kaggle's reviews, messages and tweets).
pub const TEXT_COLUMNS: &[&str] =
    &["titletext", "text", "sentence", "review", "message", "content", "comment", "tweet", "document"];
/// The usual names of the class column, the tutorial's `label` first, then
/// those of review sets' ratings (Yelp's `stars`, Amazon's `overall`),
/// which their other counts (`useful`, `helpful`) could pass for.
pub const LABEL_COLUMNS: &[&str] =
    &["label", "labels", "class", "category", "target", "sentiment", "polarity", "stars", "rating", "score", "overall"];

/// The name a column of a file without a header row goes by.
const NUMBERED: &str = "column ";
/// A guessed label column's values are short: at most this many bytes on average.
const LABEL_MEAN_BYTES: f64 = 32.0;

/// One column to read: the one a flag named, or the first of the usual names
/// that the header has (case ignored), or a model's own column where the
/// file has it (else a usual one). A name that is a number `K`, or `column
/// K`, is the file's K-th column when no column has that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Named(String),
    Usual,
    /// The column a model was trained on, as `train` recorded it.
    Trained(String),
}

impl Column {
    /// The flag's value, else the usual names.
    pub fn from_flag(flag: Option<String>) -> Column {
        flag.map_or(Column::Usual, Column::Named)
    }
}

/// The usual names of the two texts of a pair, in each data set's order:
/// GLUE's (MRPC's TSV, and its other tasks as Hugging Face exports them),
/// SNLI's and MNLI's, and the `text_a`/`text_b` of older BERT scripts.
pub const PAIR_COLUMNS: &[(&str, &str)] = &[
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("#1 String", "#2 String"),
    ("text_a", "text_b"),
];

/// Which columns to read.
#[derive(Clone, Debug)]
pub struct Columns {
    pub text: Column,
    /// `None` for unlabelled texts (prediction).
    pub label: Option<Column>,
    /// The second text of pairs: `Named` or `Trained`, a column that must be
    /// there; `Usual`, a usual pair (then `text` must be `Usual` too) if the
    /// file has one; `None`, single texts.
    pub pair: Option<Column>,
}

impl Columns {
    /// Single texts from `text`, labels from `label`.
    pub fn single(text: Column, label: Option<Column>) -> Columns {
        Columns { text, label, pair: None }
    }
}

/// Where a file's columns are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The header's names, or `column 1`, `column 2`, ... without a header.
    pub names: Vec<String>,
    /// Whether the first row names the columns (else it is data).
    pub header: bool,
    pub text_at: usize,
    /// Columns whose texts follow the first's, joined by ". " (`--text-column
    /// title+text`, as the tutorial's `titletext` is made).
    pub text_also: Vec<usize>,
    pub label_at: Option<usize>,
    /// Further label columns, for multi-label data sets that give each label
    /// a column of 0s and 1s (the Jigsaw toxic-comment files): `label_at` is
    /// then the first of them.
    pub label_also: Vec<usize>,
    /// The label column lists each row's labels (a multi-label data set in
    /// JSON or Parquet); set by the reader, which knows the cells.
    pub label_lists: bool,
    pub pair_at: Option<usize>,
    /// What the log should say about how the columns were found, when it
    /// was not by their names.
    pub found_by: Option<String>,
}

/// What a column holds, over a sample of rows.
struct Profile {
    filled: usize,
    /// Up to `cap` distinct values (trimmed); `capped` when there were more.
    distinct: HashSet<Vec<u8>>,
    capped: bool,
    bytes: usize,
}

impl Profile {
    fn mean_bytes(&self) -> f64 {
        self.bytes as f64 / self.filled.max(1) as f64
    }
}

fn profiles(rows: &[csv::ByteRecord], fields: usize, cap: usize) -> Vec<Profile> {
    let mut out: Vec<Profile> =
        (0..fields).map(|_| Profile { filled: 0, distinct: HashSet::new(), capped: false, bytes: 0 }).collect();
    for row in rows.iter().filter(|r| r.len() == fields) {
        for (p, cell) in out.iter_mut().zip(row.iter()) {
            let cell = cell.trim_ascii();
            if cell.is_empty() {
                continue;
            }
            p.filled += 1;
            p.bytes += cell.len();
            if p.distinct.len() < cap {
                p.distinct.insert(cell.to_vec());
            } else if !p.distinct.contains(cell) {
                p.capped = true;
            }
        }
    }
    out
}

/// The words of a column name: split at anything not a letter or digit and
/// where a lower-case letter meets an upper-case one, lower-cased
/// (`airline_sentiment` -> airline, sentiment; `reviewText` -> review, text).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if (!c.is_alphanumeric() || (c.is_uppercase() && prev_lower)) && !word.is_empty() {
            out.push(std::mem::take(&mut word).to_lowercase());
        }
        if c.is_alphanumeric() {
            word.push(c);
        }
        prev_lower = c.is_lowercase();
    }
    if !word.is_empty() {
        out.push(word.to_lowercase());
    }
    out
}

/// The first of `usual` that is a whole name in `names` (case ignored), else
/// the first that is a word of one (not of an id: `text_id` is no text).
fn usual_position(names: &[String], usual: &[&str]) -> Option<usize> {
    usual.iter().find_map(|u| names.iter().position(|n| n.eq_ignore_ascii_case(u))).or_else(|| {
        usual.iter().find_map(|u| {
            names.iter().position(|n| {
                let w = words(n);
                w.last().is_some_and(|l| l != "id") && w.iter().any(|x| x == u)
            })
        })
    })
}

/// How a column is found in a file.
#[derive(Clone, Copy)]
enum Found {
    /// By its name in the header.
    Name(usize),
    /// By its number: `column K` (from a file without a header) or `K`.
    Number { at: usize, headerless: bool },
    /// Not by name: its contents must tell.
    Guess,
}

/// The column's index where it was found by name or number.
fn index(f: &Found) -> Option<usize> {
    match f {
        Found::Name(i) | Found::Number { at: i, .. } => Some(*i),
        Found::Guess => None,
    }
}

/// The number a column name gives, counted from 1, where no header name is
/// it: `column K`, which only a file without a header row is named by, or `K`.
fn by_number(name: &str, fields: usize) -> Option<Found> {
    let (k, headerless) = match name.strip_prefix(NUMBERED) {
        Some(k) => (k, true),
        None => (name, false),
    };
    let k: usize = k.trim().parse().ok()?;
    (1..=fields).contains(&k).then_some(Found::Number { at: k - 1, headerless })
}

fn find(names: &[String], want: &Column, usual: &[&str]) -> Option<Found> {
    match want {
        Column::Named(c) => names.iter().position(|n| n == c).map(Found::Name).or_else(|| by_number(c, names.len())),
        Column::Usual => Some(usual_position(names, usual).map_or(Found::Guess, Found::Name)),
        Column::Trained(c) => Some(
            names
                .iter()
                .position(|n| n == c)
                .map(Found::Name)
                .or_else(|| by_number(c, names.len()))
                .or_else(|| usual_position(names, usual).map(Found::Name))
                .unwrap_or(Found::Guess),
        ),
    }
}

/// The columns of a name that is several joined by `sep`, where no column
/// has the whole name and every part is a column; else none. Texts join
/// with `+` (`title+text`, `2+3`); a multi-label data set's label columns
/// are listed with `,` (`toxic,insult`).
fn parts(names: &[String], want: &Column, sep: char) -> Vec<Found> {
    let (Column::Named(c) | Column::Trained(c)) = want else { return Vec::new() };
    if !c.contains(sep) || names.iter().any(|n| n == c) {
        return Vec::new();
    }
    let found: Option<Vec<Found>> =
        c.split(sep).map(|p| find(names, &Column::Named(p.trim().to_string()), &[])).collect();
    found.unwrap_or_default()
}

/// Whether a column holds only 0 and 1 (or true and false), as a multi-label
/// data set's label columns do.
fn is_indicator(p: &Profile, rows: usize) -> bool {
    p.filled * 100 >= rows * 99
        && !p.capped
        && !p.distinct.is_empty()
        && p.distinct.iter().all(|v| indicator(v).is_some())
}

/// A label cell of a multi-label data set: whether the text has the label.
pub fn indicator(cell: &[u8]) -> Option<bool> {
    match cell.trim_ascii().to_ascii_lowercase().as_slice() {
        b"1" | b"1.0" | b"true" | b"yes" => Some(true),
        b"0" | b"0.0" | b"false" | b"no" => Some(false),
        _ => None,
    }
}

/// The label column its contents show: filled on every row but a few, with
/// between 2 and a few distinct short values, each on two rows or more on
/// average; the fewest distinct values win, then the leftmost.
fn guess_label(p: &[Profile], rows: usize, not: Option<usize>) -> Option<usize> {
    (0..p.len())
        .filter(|&j| Some(j) != not)
        .filter(|&j| {
            let c = &p[j];
            let classes = c.distinct.len();
            c.filled * 100 >= rows * 99
                && !c.capped
                && classes >= 2
                && classes * 2 <= c.filled
                && c.mean_bytes() <= LABEL_MEAN_BYTES
        })
        .min_by_key(|&j| (p[j].distinct.len(), j))
}

/// The text column its contents show: filled on at least half the rows, with
/// the longest values on average.
fn guess_text(p: &[Profile], rows: usize, not: Option<usize>) -> Option<usize> {
    (0..p.len())
        .filter(|&j| Some(j) != not && p[j].filled * 2 >= rows && p[j].filled > 0)
        .max_by(|&a, &b| p[a].mean_bytes().total_cmp(&p[b].mean_bytes()).then(b.cmp(&a)))
}

/// Where `cols` are in a file whose first row is `first`; `rows` gives the
/// rows after it (a sample is enough), read only when no name says where.
/// `named`: the file names its columns itself (JSON's keys), so `first` is
/// a header whatever the rows hold.
pub fn locate(
    path: &Path,
    first: Vec<String>,
    named: bool,
    cols: &Columns,
    rows: impl FnOnce() -> Vec<csv::ByteRecord>,
) -> Result<Layout> {
    let fields = first.len();
    let usual_pair = match (&cols.text, &cols.pair) {
        (Column::Usual, Some(Column::Usual)) => PAIR_COLUMNS.iter().find_map(|(a, b)| {
            let at = |n: &str| first.iter().position(|f| f.eq_ignore_ascii_case(n));
            Some((at(a)?, at(b)?))
        }),
        _ => None,
    };
    let pair_at = match (&cols.pair, usual_pair) {
        (_, Some((_, b))) => Some(b),
        (Some(want @ (Column::Named(c) | Column::Trained(c))), None) => {
            // By its name or number only: a pair's second text is never guessed.
            match find(&first, &Column::Named(c.clone()), &[]).as_ref().and_then(index) {
                Some(i) => Some(i),
                None => {
                    let flag = if matches!(want, Column::Named(_)) { "--text-pair-column" } else { "--text-column" };
                    bail_usage!(
                        "{} has no column '{c}' for the second text of each pair (its columns: {}); pick one with {flag}",
                        path.display(),
                        first.join(", ")
                    );
                }
            }
        }
        _ => None,
    };
    let text_parts = parts(&first, &cols.text, '+');
    let text = match (usual_pair, text_parts.first()) {
        (Some((a, _)), _) => Some(Found::Name(a)),
        (None, Some(&part)) => Some(part),
        (None, None) => find(&first, &cols.text, TEXT_COLUMNS),
    };
    let text_also: Vec<usize> = text_parts.iter().skip(1).filter_map(index).collect();
    let label_parts = cols.label.as_ref().map(|l| parts(&first, l, ',')).unwrap_or_default();
    let mut label_also: Vec<usize> = label_parts.iter().skip(1).filter_map(index).collect();
    let label = match label_parts.first() {
        Some(&part) => Some(Some(part)),
        None => cols.label.as_ref().map(|l| find(&first, l, LABEL_COLUMNS)),
    };
    let named_missing = |want: &Column, flag: &str| -> Result<Layout> {
        let c = match want {
            Column::Named(c) | Column::Trained(c) => c,
            Column::Usual => "",
        };
        bail_usage!("{} has no column '{c}' (its columns: {}); pick one with {flag}", path.display(), first.join(", "))
    };
    let Some(text) = text else { return named_missing(&cols.text, "--text-column") };
    let label = match (label, &cols.label) {
        (Some(None), Some(want)) => return named_missing(want, "--label-column"),
        (l, _) => l.flatten(),
    };
    let by_name = matches!(text, Found::Name(_)) || matches!(label, Some(Found::Name(_)));
    let marked_headerless = [Some(&text), label.as_ref()]
        .into_iter()
        .flatten()
        .any(|f| matches!(f, Found::Number { headerless: true, .. }));
    let guessing = matches!(text, Found::Guess) || matches!(label, Some(Found::Guess));
    let numbered = !by_name && !marked_headerless && index(&text).is_some();
    let (mut text_at, mut label_at) = (index(&text), label.as_ref().and_then(index));
    let mut header = !marked_headerless;
    let mut guessed = Vec::new();
    if guessing || (numbered && label.is_some()) {
        let sample = rows();
        let n = sample.iter().filter(|r| r.len() == fields).count();
        let cap = (n / 5).clamp(10, 1000);
        let p = profiles(&sample, fields, cap);
        let usual = |u: &[&str]| u.join(", ");
        let under = |c: Option<&Column>| match c {
            Some(Column::Trained(c)) => format!("under the model's name '{c}' or a usual name"),
            _ => "under a usual name".to_string(),
        };
        if matches!(label, Some(Found::Guess)) {
            label_at = guess_label(&p, n, text_at);
            let Some(j) = label_at else {
                bail_usage!(
                    "{} has no label column {} ({}; its columns: {}), and none holds a few classes on every row; pick one with --label-column",
                    path.display(),
                    under(cols.label.as_ref()),
                    usual(LABEL_COLUMNS),
                    first.join(", ")
                );
            };
            guessed.push(format!("the label holds {} classes", p[j].distinct.len()));
        }
        if matches!(text, Found::Guess) {
            text_at = guess_text(&p, n, label_at);
            if text_at.is_none() {
                bail_usage!(
                    "{} has no text column {} ({}; its columns: {}), and no other column holds texts; pick one with --text-column",
                    path.display(),
                    under(Some(&cols.text)),
                    usual(TEXT_COLUMNS),
                    first.join(", ")
                );
            }
            guessed.push("the text the longest values".to_string());
        }
        // A first row whose label is one of the label column's classes is data.
        if !by_name && !marked_headerless && !named {
            if let Some(j) = label_at {
                header = !p[j].distinct.contains(first[j].trim().as_bytes());
            }
        }
        // A guessed label of 0s and 1s beside others like it: one column per
        // label of a multi-label data set (Jigsaw's toxic, severe_toxic, ...).
        if let (true, true, Some(j)) = (header, matches!(label, Some(Found::Guess)), label_at) {
            let others = |k: &usize| Some(*k) != text_at && Some(*k) != pair_at && !text_also.contains(k);
            let indicators: Vec<usize> = (0..fields).filter(|k| others(k) && is_indicator(&p[*k], n)).collect();
            // The labels are written alike; a flag written otherwise (GoEmotions'
            // example_very_unclear, True or False, beside its emotions' 0s and
            // 1s) is no label.
            let numeric = |k: &usize| p[*k].distinct.iter().all(|v| v.iter().all(|b| b.is_ascii_digit() || *b == b'.'));
            let (digits, words): (Vec<usize>, Vec<usize>) = indicators.iter().partition(|k| numeric(k));
            let all = if digits.len() >= words.len() { digits } else { words };
            if all.len() >= 2 && is_indicator(&p[j], n) {
                label_at = all.first().copied();
                label_also = all[1..].to_vec();
                // The label's guess is the first said.
                if let Some(said) = guessed.first_mut() {
                    *said = format!("{} labels, each a column of 0s and 1s", all.len());
                }
            }
        }
    } else if numbered && !named {
        // No label to tell by: a column asked for by number is of a file
        // without names for its columns.
        header = false;
    }
    let Some(text_at) = text_at else { return named_missing(&cols.text, "--text-column") };
    if label_at.is_some() && label_at == pair_at || pair_at == Some(text_at) {
        bail_usage!(
            "{}: column '{}' would be read twice; name the columns with --text-column, --text-pair-column and --label-column",
            path.display(),
            first[pair_at.unwrap_or(text_at)]
        );
    }
    if label_at.is_some_and(|l| text_also.contains(&l)) || pair_at.is_some_and(|p| text_also.contains(&p)) {
        let joined: Vec<&str> = std::iter::once(text_at).chain(text_also).map(|i| first[i].as_str()).collect();
        bail_usage!(
            "{}: a column of '{}' is also the label or the second text; name the columns apart with --text-column, --label-column and --text-pair-column",
            path.display(),
            joined.join("+")
        );
    }
    let labels: Vec<usize> = label_at.into_iter().chain(label_also.iter().copied()).collect();
    if labels.iter().any(|l| Some(*l) == pair_at || text_also.contains(l)) || label_also.contains(&text_at) {
        bail_usage!(
            "{}: a label column is also a text column; name them apart with --text-column, --label-column and --text-pair-column",
            path.display()
        );
    }
    if label_at == Some(text_at) {
        bail_usage!(
            "{}: the text and the label would both be read from column '{}'; name them with --text-column and --label-column",
            path.display(),
            first[text_at]
        );
    }
    let names = if header { first } else { (1..=fields).map(|k| format!("{NUMBERED}{k}")).collect() };
    let mut said = Vec::new();
    if !header {
        said.push("no header row: columns numbered from 1".to_string());
    }
    if !guessed.is_empty() {
        said.push(format!("found by their contents: {}", guessed.join(", ")));
    }
    let found_by = (!said.is_empty())
        .then(|| format!("{}; name them with --text-column and --label-column if wrong", said.join("; ")));
    Ok(Layout { names, header, text_at, text_also, label_at, label_also, label_lists: false, pair_at, found_by })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cells: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(cells.to_vec())
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    fn usual() -> Columns {
        Columns::single(Column::Usual, Some(Column::Usual))
    }

    #[test]
    fn words_of_names() {
        assert_eq!(words("airline_sentiment"), ["airline", "sentiment"]);
        assert_eq!(words("reviewText"), ["review", "text"]);
        assert_eq!(words("Comment Text"), ["comment", "text"]);
        assert_eq!(words("textID"), ["text", "id"]);
        assert_eq!(words(""), Vec::<String>::new());
    }

    #[test]
    fn usual_words_inside_names() {
        let n = strings(&["tweet_id", "airline_sentiment", "airline_sentiment_confidence", "text"]);
        assert_eq!(usual_position(&n, LABEL_COLUMNS), Some(1));
        assert_eq!(usual_position(&n, TEXT_COLUMNS), Some(3));
        // An id is no text.
        let n = strings(&["textID", "reviewBody", "overall"]);
        assert_eq!(usual_position(&n, TEXT_COLUMNS), Some(1));
        assert_eq!(usual_position(&n[..1], TEXT_COLUMNS), None);
        let n = strings(&["id", "comment_text", "toxic"]);
        assert_eq!(usual_position(&n, TEXT_COLUMNS), Some(1));
        // Review sets: the rating is the class, not a vote count with fewer values.
        let n = strings(&["review_id", "useful", "stars", "text"]);
        assert_eq!(usual_position(&n, LABEL_COLUMNS), Some(2));
        let n = strings(&["reviewerID", "helpful", "reviewText", "overall", "summary"]);
        assert_eq!(usual_position(&n, LABEL_COLUMNS), Some(3));
        assert_eq!(usual_position(&n, TEXT_COLUMNS), Some(2));
    }

    #[test]
    fn kaggle_spam_columns_are_guessed_from_their_contents() {
        let first = strings(&["v1", "v2", "", "", ""]);
        let rows = vec![
            record(&["ham", "Go until jurong point, crazy.. Available only", "", "", ""]),
            record(&["spam", "Free entry in 2 a wkly comp to win FA Cup", "", "", ""]),
            record(&["ham", "U dun say so early hor... U c already then say", "x", "", ""]),
            record(&["ham", "Nah I don't think he goes to usf", "", "", ""]),
        ];
        let l = locate(Path::new("spam.csv"), first.clone(), false, &usual(), || rows.clone()).unwrap();
        assert_eq!((l.text_at, l.label_at, l.header), (1, Some(0), true));
        assert_eq!(l.names[..2], strings(&["v1", "v2"]));
        let said = l.found_by.unwrap();
        assert!(
            said.contains("found by their contents: the label holds 2 classes, the text the longest values"),
            "{said}"
        );
        // A named text column: only the label is guessed.
        let cols = Columns::single(Column::Named("v2".into()), Some(Column::Usual));
        let l = locate(Path::new("spam.csv"), first.clone(), false, &cols, || rows.clone()).unwrap();
        assert_eq!((l.text_at, l.label_at), (1, Some(0)));
        assert!(!l.found_by.unwrap().contains("the text"));
        // Named columns read no rows.
        let cols = Columns::single(Column::Named("v2".into()), Some(Column::Named("v1".into())));
        let l = locate(Path::new("spam.csv"), first, false, &cols, || panic!("rows read")).unwrap();
        assert_eq!((l.text_at, l.label_at, l.found_by), (1, Some(0), None));
    }

    #[test]
    fn columns_of_zeros_and_ones_are_the_labels_of_a_multi_label_set() {
        // Jigsaw's toxic-comment layout: an id, the text, a column per label.
        let first = strings(&["id", "comment_text", "toxic", "insult", "threat"]);
        let rows = vec![
            record(&["a1", "you are a fool and a troll", "1", "1", "0"]),
            record(&["a2", "thanks for fixing the page", "0", "0", "0"]),
            record(&["a3", "stop it or else you will see", "1", "0", "1"]),
            record(&["a4", "nice edit on the history part", "0", "0", "0"]),
        ];
        let l = locate(Path::new("train.csv"), first.clone(), false, &usual(), || rows.clone()).unwrap();
        assert_eq!((l.text_at, l.label_at, l.label_also.as_slice()), (1, Some(2), &[3, 4][..]));
        let said = l.found_by.unwrap();
        assert!(said.contains("found by their contents: 3 labels, each a column of 0s and 1s"), "{said}");
        // Named: a list of columns, in the order given; no rows read.
        let cols = Columns::single(Column::Usual, Some(Column::Named("threat, toxic".into())));
        let l = locate(Path::new("train.csv"), first.clone(), false, &cols, || panic!("rows read")).unwrap();
        assert_eq!((l.label_at, l.label_also.as_slice()), (Some(4), &[2][..]));
        // A flag written otherwise than the labels is none of them (GoEmotions).
        let emotions = strings(&["text", "id", "example_very_unclear", "joy", "anger", "fear"]);
        let rated = vec![
            record(&["what a day this has been", "e1", "False", "1", "0", "0"]),
            record(&["i cannot stand this any more", "e2", "True", "0", "1", "1"]),
            record(&["so glad you came by today", "e3", "False", "1", "0", "0"]),
            record(&["that noise at night scares me", "e4", "False", "0", "0", "1"]),
        ];
        let l = locate(Path::new("goemotions_1.csv"), emotions, false, &usual(), || rated).unwrap();
        assert_eq!((l.label_at, l.label_also.as_slice()), (Some(3), &[4, 5][..]));
        // One named label column of 0s and 1s is one binary label.
        let cols = Columns::single(Column::Usual, Some(Column::Named("toxic".into())));
        let l = locate(Path::new("train.csv"), first.clone(), false, &cols, || rows.clone()).unwrap();
        assert_eq!((l.label_at, l.label_also.len()), (Some(2), 0));
        // A label found by its name stays one column, whatever else holds 0s and 1s.
        let first = strings(&["text", "label", "has_url", "is_reply"]);
        let rows = vec![record(&["hello there", "ham", "0", "1"]), record(&["win a prize now", "spam", "1", "0"])];
        let l = locate(Path::new("train.csv"), first, false, &usual(), || rows).unwrap();
        assert_eq!((l.label_at, l.label_also.len()), (Some(1), 0));
        assert_eq!(indicator(b" True "), Some(true));
        assert_eq!(indicator(b"0.0"), Some(false));
        assert_eq!(indicator(b"2"), None);
    }

    #[test]
    fn a_first_row_of_data_is_no_header() {
        // AG News: class, title, description; no header row.
        let first =
            strings(&["3", "Wall St. Bears Claw Back", "Reuters - Short-sellers, Wall Street's dwindling band"]);
        let rows: Vec<csv::ByteRecord> = (0..40)
            .map(|i| {
                let class = (i % 4 + 1).to_string();
                record(&[&class, "A title", &format!("A longer description of the story number {i}")])
            })
            .collect();
        let l = locate(Path::new("train.csv"), first.clone(), false, &usual(), || rows.clone()).unwrap();
        assert_eq!((l.text_at, l.label_at, l.header), (2, Some(0), false));
        assert_eq!(l.names, strings(&["column 1", "column 2", "column 3"]));
        assert!(l
            .found_by
            .unwrap()
            .starts_with("no header row: columns numbered from 1; found by their contents: the label holds 4 classes"));
        // Its other files are read by those names, as data from the first row.
        let cols = Columns::single(Column::Named("column 3".into()), Some(Column::Named("column 1".into())));
        let l = locate(Path::new("valid.csv"), first.clone(), false, &cols, || panic!("rows read")).unwrap();
        assert_eq!((l.text_at, l.label_at, l.header), (2, Some(0), false));
        // Plain numbers, where no column has them as names: the first row's
        // label tells whether it is data.
        let cols = Columns::single(Column::Named("3".into()), Some(Column::Named("1".into())));
        let mut fourth = first.clone();
        fourth[0] = "4".into();
        let l = locate(Path::new("train.csv"), fourth, false, &cols, || rows.clone()).unwrap();
        assert_eq!((l.text_at, l.label_at, l.header), (2, Some(0), false));
        let mut named = first.clone();
        named[0] = "Class Index".into();
        let l = locate(Path::new("train.csv"), named, false, &cols, || rows.clone()).unwrap();
        assert!(l.header, "a first row whose label is no class names the columns");
        // A name wins over a number: here '3' is the first column.
        let e = locate(Path::new("train.csv"), first.clone(), false, &cols, || rows.clone()).unwrap_err();
        assert!(e.to_string().contains("both be read from column '3'"), "{e}");
        // A column number beyond the file's is missing.
        let cols = Columns::single(Column::Named("4".into()), None);
        let e = locate(Path::new("t.csv"), first, false, &cols, || rows.clone()).unwrap_err();
        assert!(e.to_string().contains("has no column '4'"), "{e}");
    }

    #[test]
    fn contents_that_show_no_column_are_an_error() {
        // Every value distinct: no column holds classes.
        let first = strings(&["a", "b"]);
        let rows: Vec<csv::ByteRecord> =
            (0..30).map(|i| record(&[&format!("x{i}"), &format!("some text {i}")])).collect();
        let e = locate(Path::new("odd.csv"), first.clone(), false, &usual(), || rows.clone()).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        let e = e.to_string();
        assert!(e.contains("no label column under a usual name") && e.contains("its columns: a, b"), "{e}");
        assert!(e.contains("--label-column"), "{e}");
        // A header and no rows.
        let e = locate(Path::new("odd.csv"), first.clone(), false, &usual(), Vec::new).unwrap_err();
        assert!(e.to_string().contains("no label column"), "{e}");
        // A model's column that is not there is named.
        let cols = Columns::single(Column::Trained("body".into()), None);
        let e = locate(Path::new("odd.csv"), first, false, &cols, Vec::new).unwrap_err();
        assert!(e.to_string().contains("no text column under the model's name 'body' or a usual name"), "{e}");
    }
}
