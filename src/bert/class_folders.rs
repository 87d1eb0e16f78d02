//! Data sets whose classes are their folders or files, not a column: one
//! folder of text files per class, as scikit-learn's `load_files` reads
//! (IMDB's `aclImdb/train/pos/*.txt`, BBC News, 20 Newsgroups), or one data
//! file per class (Kaggle's fake and real news: `Fake.csv`, `True.csv`).
//! Each class is named by its folder or file. A folder of unlabelled texts
//! (IMDB's `unsup`) is no class and is left out.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::data::{self, Column, Columns, Split};
use super::table;
use crate::bail_usage;

/// Names of splits, which no class has.
const SPLIT_NAMES: &[&str] = &["train", "valid", "validation", "dev", "test"];
/// Folders of texts without labels, as IMDB ships next to its classes.
const UNLABELLED: &[&str] = &["unsup", "unlabeled", "unlabelled"];

/// The classes of one split: each a folder of text files or a data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSet {
    pub root: PathBuf,
    pub classes: Vec<(String, PathBuf)>,
    /// Folders left out as unlabelled.
    pub unlabelled: Vec<String>,
}

impl ClassSet {
    /// `dir`'s classes, where it has two or more: non-hidden folders that
    /// hold files, or data files.
    pub fn find(dir: &Path) -> Option<ClassSet> {
        let mut classes = Vec::new();
        let mut unlabelled = Vec::new();
        for p in table::entries(dir) {
            let name = table::file_name(&p);
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() && holds_files(&p) {
                if UNLABELLED.contains(&name.to_ascii_lowercase().as_str()) {
                    unlabelled.push(name);
                } else {
                    classes.push((name, p));
                }
            } else if p.is_file() && table::is_data_file(&name) {
                // The name less its ending: `fake.news.csv.gz` is class `fake.news`.
                let stem = name.strip_suffix(".gz").unwrap_or(&name);
                let class = stem.rsplit_once('.').map_or(stem, |(s, _)| s).to_string();
                classes.push((class, p));
            }
        }
        // Files or folders named as splits (valid.csv, test.csv) are splits
        // of a data set missing its training file, not classes.
        let splits = classes.iter().any(|(c, _)| SPLIT_NAMES.contains(&c.to_ascii_lowercase().as_str()));
        (classes.len() >= 2 && !splits).then(|| ClassSet { root: dir.to_path_buf(), classes, unlabelled })
    }

    /// The set's name for the log: `train/{neg,pos}`, or `train/ (20 classes)`.
    fn name(&self) -> String {
        let root = table::file_name(&self.root);
        match self.classes.len() {
            n if n > 4 => format!("{root}/ ({n} classes)"),
            _ => {
                let names: Vec<String> = self.classes.iter().map(|(_, p)| table::file_name(p)).collect();
                format!("{root}/{{{}}}", names.join(","))
            }
        }
    }

    /// Reads every class's texts into one split labelled by class: a text
    /// file is one text; a data file's rows are read by `text` (its usual
    /// names, else its contents), as a training file's are.
    pub fn read(&self, text: &Column, skip_bad: bool) -> Result<Split> {
        let mut all =
            Split { name: self.name(), path: self.root.clone(), text_column: "text".to_string(), ..Default::default() };
        let mut counts = Vec::new();
        for (class, p) in &self.classes {
            let before = all.len();
            if let (true, Column::Named(c)) = (p.is_dir(), text) {
                bail_usage!(
                    "--text-column {c}: {} holds text files, one text each, with no columns to name; leave the flag out",
                    p.display()
                );
            }
            if p.is_dir() {
                for (line, f) in (1u64..).zip(files_in(p)) {
                    let bytes = match std::fs::read(&f) {
                        Ok(b) => b,
                        Err(e) => bail_usage!("cannot read {}: {e}", f.display()),
                    };
                    all.records.push(all.texts.len() as u64);
                    all.texts.push(table::decode_text(bytes).trim_end().to_string());
                    all.labels.push(class.clone());
                    all.lines.push(line);
                }
            } else {
                let cols = Columns::single(text.clone(), None);
                let split = data::read_split(p, &cols, skip_bad)?;
                all.text_column = split.text_column.clone();
                all.found_by = split.found_by.clone();
                all.skipped.extend(&split.skipped);
                all.records.extend((0..split.len() as u64).map(|i| all.texts.len() as u64 + i));
                all.labels.extend(std::iter::repeat_n(class.clone(), split.len()));
                all.lines.extend(&split.lines);
                all.texts.extend(split.texts);
            }
            if all.len() == before {
                bail_usage!("{}: class '{class}' has no texts; remove it or add some", p.display());
            }
            counts.push(format!("{class} {}", all.len() - before));
        }
        let mut how = format!("classes from folder and file names: {}", counts.join(", "));
        if !self.unlabelled.is_empty() {
            how.push_str(&format!("; left out as unlabelled: {}", self.unlabelled.join(", ")));
        }
        all.found_by = Some(match all.found_by.take() {
            Some(f) => format!("{how}; {f}"),
            None => how,
        });
        all.label_column = Some("class".to_string());
        Ok(all)
    }
}

/// The data files directly in `dir`, in name order.
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = files_in(dir);
    files.retain(|f| table::is_data_file(&table::file_name(f)));
    files
}

/// A folder's non-hidden files, in name order.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = table::entries(dir);
    files.retain(|f| f.is_file() && !table::file_name(f).starts_with('.'));
    files
}

fn holds_files(dir: &Path) -> bool {
    !files_in(dir).is_empty()
}

/// The split folders of a class-folder data set: `train` and `test` (or
/// names ending so, as 20 Newsgroups' `20news-bydate-train`), each a
/// [`ClassSet`]; else `dir` itself as the one split.
pub fn find_splits(dir: &Path) -> Option<(ClassSet, Option<ClassSet>)> {
    let mut subdirs = table::entries(dir);
    subdirs.retain(|p| p.is_dir());
    let named = |word: &str| {
        subdirs.iter().find(|d| {
            let n = table::file_name(d).to_ascii_lowercase();
            n == word || n.ends_with(&format!("-{word}")) || n.ends_with(&format!("_{word}"))
        })
    };
    if let Some(train) = named("train").and_then(|d| ClassSet::find(d)) {
        let test = named("test").and_then(|d| ClassSet::find(d));
        return Some((train, test));
    }
    ClassSet::find(dir).map(|set| (set, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn class_folders_as_imdb_ships_them() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path();
        for split in ["train", "test"] {
            write(&acl.join(split).join("pos/0_9.txt"), b"great film<br />\n");
            write(&acl.join(split).join("pos/1_7.txt"), b"loved it");
            write(&acl.join(split).join("neg/0_2.txt"), b"caf\xe9 was dull\n");
            write(&acl.join(split).join("urls_pos.txt"), b"http://x\n");
        }
        write(&acl.join("train/unsup/0_0.txt"), b"no label");
        write(&acl.join("train/.hidden/x.txt"), b"no class");
        write(&acl.join("README"), b"about");
        let (train, test) = find_splits(acl).unwrap();
        let names: Vec<&str> = train.classes.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!((names, train.unlabelled.clone()), (vec!["neg", "pos"], vec!["unsup".to_string()]));
        let s = train.read(&Column::Usual, false).unwrap();
        assert_eq!(s.name, "train/{neg,pos}");
        assert_eq!(s.texts, vec!["caf\u{e9} was dull", "great film<br />", "loved it"]);
        assert_eq!(s.labels, vec!["neg", "pos", "pos"]);
        assert_eq!(s.records, vec![0, 1, 2]);
        assert!(s.found_by.unwrap().contains("neg 1, pos 2; left out as unlabelled: unsup"));
        assert_eq!(test.unwrap().read(&Column::Usual, false).unwrap().len(), 3);
        let e = train.read(&Column::Named("review".into()), false).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("--text-column review:") && e.to_string().contains("leave the flag out"), "{e}");
        assert!(train.read(&Column::Trained("text".into()), false).is_ok(), "a model's recorded column is no flag");
        // Without train and test folders, the folder itself is the one split.
        let (only, none) = find_splits(&acl.join("test")).unwrap();
        assert!(none.is_none() && only.root.ends_with("test"));
        // One class is no classification; a folder of data files is not either.
        assert!(ClassSet::find(&acl.join("train/pos")).is_none());
        std::fs::remove_file(acl.join("test/neg/0_2.txt")).unwrap();
        assert!(ClassSet::find(&acl.join("test")).is_none(), "an empty folder is no class");
    }

    #[test]
    fn one_data_file_per_class_as_kaggle_s_fake_and_real_news() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("Fake.csv"), b"title,text,subject\nt,fake one,news\nu,fake two,news\n");
        write(&dir.path().join("True.csv"), b"title,text,subject\nv,true one,politics\n");
        write(&dir.path().join("notes.txt"), b"not data");
        // A class is its file's name less the ending.
        write(&dir.path().join("satire.news.jsonl.gz"), b"");
        let (set, _) = find_splits(dir.path()).unwrap();
        let names: Vec<&str> = set.classes.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, vec!["Fake", "True", "satire.news"]);
        std::fs::remove_file(dir.path().join("satire.news.jsonl.gz")).unwrap();
        let other = tempfile::tempdir().unwrap();
        write(&other.path().join("valid.csv"), b"text,label\na,1\n");
        write(&other.path().join("test.csv"), b"text,label\na,1\n");
        assert!(find_splits(other.path()).is_none(), "splits without train are no classes");
        let (set, test) = find_splits(dir.path()).unwrap();
        assert!(test.is_none());
        let s = set.read(&Column::Usual, false).unwrap();
        assert_eq!(s.name.rsplit('/').next(), Some("{Fake.csv,True.csv}"));
        assert_eq!(s.texts, vec!["fake one", "fake two", "true one"]);
        assert_eq!(s.labels, vec!["Fake", "Fake", "True"]);
        assert_eq!((s.lines, s.records), (vec![2, 3, 2], vec![0, 1, 2]));
        assert_eq!(s.text_column, "text");
        let e = set.read(&Column::Named("body".into()), false).unwrap_err().to_string();
        assert!(e.contains("Fake.csv has no column 'body'"), "{e}");
        write(&dir.path().join("True.csv"), b"title,text,subject\n");
        let e = set.read(&Column::Usual, false).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("class 'True' has no texts"), "{e}");
    }
}
