//! Where `train` finds its labelled examples: the tutorial's directory of
//! `train.csv`, `valid.csv` and (optionally) `test.csv`, or one labelled CSV
//! (the spam/ham variant's `spam.csv`) that it splits itself, as
//! scikit-learn's `train_test_split(stratify=...)` would: by class, in fixed
//! shares, the same for the same seed, so `--resume` sees the same split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::class_folders::{self, ClassSet};
use super::data::{self, Split};
use super::table;
use crate::bail_usage;
use crate::train::rng::{derive, SplitMix64};

/// `-s/--source`: a directory of split files, or one file to split.
pub enum Source {
    /// train is required. Without valid, a share of train is held out for
    /// validation (AG News, Yelp, DBpedia and IMDB ship only train and
    /// test); test is optional.
    Dir {
        train: PathBuf,
        valid: Option<PathBuf>,
        test: Option<PathBuf>,
    },
    File(PathBuf),
    /// Classes named by their folders or files ([`ClassSet`]): a training
    /// set, and a test set where the data set has one.
    Classes {
        train: ClassSet,
        test: Option<ClassSet>,
    },
}

/// The share of a directory's training file held out for validation when it
/// has no validation file: 10%, as `--split 90,10,0`.
pub const HELD_OUT: Shares = Shares { train: 90, valid: 10, test: 0 };

/// The names a split's file may have in a source directory, tried in this
/// order, each with each of [`table::EXTENSIONS`]: the tutorial's, then those of
/// Hugging Face exports (`validation`) and GLUE (`dev`).
const TRAIN_NAMES: &[&str] = &["train"];
const VALID_NAMES: &[&str] = &["valid", "validation", "dev"];
const TEST_NAMES: &[&str] = &["test"];

/// The first file of `names` (with any of [`table::EXTENSIONS`]) in `dir`, else
/// the first shard of a split as the Hugging Face Hub serves it
/// (`train-00000-of-00002.parquet`; the table reads every shard).
fn find_split(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    let exact = names
        .iter()
        .flat_map(|n| table::EXTENSIONS.iter().map(move |ext| dir.join(format!("{n}.{ext}"))))
        .find(|p| p.is_file());
    exact.or_else(|| {
        let listed = table::entries(dir);
        names
            .iter()
            .find_map(|n| {
                let first = format!("{n}-00000-of-");
                listed.iter().find(|p| {
                    let name = table::file_name(p);
                    name.starts_with(&first) && name.ends_with(".parquet") && p.is_file()
                })
            })
            .cloned()
    })
}

impl Source {
    pub fn find(path: &Path) -> Result<Source> {
        if path.is_file() {
            return Ok(Source::File(path.to_path_buf()));
        }
        if !path.is_dir() {
            bail_usage!(
                "-s/--source {}: no such directory or file (give a directory with train.csv, valid.csv and optionally test.csv, or one labelled CSV file to split)",
                path.display()
            );
        }
        if find_split(path, TRAIN_NAMES).is_none() {
            // A dataset repository from the Hugging Face Hub keeps its files a
            // level down, in `data/` or one folder per configuration.
            let mut inner = table::entries(path);
            inner.retain(|d| d.is_dir() && find_split(d, TRAIN_NAMES).is_some());
            match inner.as_slice() {
                [one] => return Source::find(one),
                [] => {
                    if let Some((train, test)) = class_folders::find_splits(path) {
                        return Ok(Source::Classes { train, test });
                    }
                    // A folder holding one labelled file, whatever its name.
                    if let [one] = class_folders::data_files(path).as_slice() {
                        return Ok(Source::File(one.clone()));
                    }
                }
                several => bail_usage!(
                    "-s/--source {}: its folders hold several data sets ({}); give one of them to -s",
                    path.display(),
                    several.iter().map(|d| data::file_name(d)).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        let need = |names: &[&str], f: &str| -> Result<PathBuf> {
            match find_split(path, names) {
                Some(p) => Ok(p),
                None => bail_usage!(
                    "-s/--source {}: no {f} there (expected train.csv, and valid.csv and test.csv if there are; .tsv, .jsonl, .ndjson, .json and .parquet files, Parquet shards as the Hugging Face Hub serves them, and dev or validation for valid also do; or give one labelled CSV as -s FILE to split it; data/fake-news.md fetches the tutorial's)",
                    path.display()
                ),
            }
        };
        let train = need(TRAIN_NAMES, "train.csv")?;
        let valid = find_split(path, VALID_NAMES);
        let test = find_split(path, TEST_NAMES);
        if valid.is_none() && test.is_none() {
            // A lone training file is split as one file given as -s FILE is.
            return Ok(Source::File(train));
        }
        Ok(Source::Dir { train, valid, test })
    }
}

/// Percent of one file's rows for training, validation and test: `--split 80,10,10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shares {
    pub train: u32,
    pub valid: u32,
    pub test: u32,
}

impl Default for Shares {
    fn default() -> Shares {
        Shares { train: 80, valid: 10, test: 10 }
    }
}

impl FromStr for Shares {
    type Err = String;

    fn from_str(s: &str) -> Result<Shares, String> {
        let bad = || {
            "give three whole percentages for train, valid and test that add up to 100, such as 80,10,10 (test may be 0)".to_string()
        };
        let parts: Vec<u32> =
            s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
        match parts[..] {
            [train, valid, test] if train > 0 && valid > 0 && train + valid + test == 100 => {
                Ok(Shares { train, valid, test })
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.train, self.valid, self.test)
    }
}

/// One file's rows split by class into train, valid and test: each class
/// shuffled (by `seed`) and cut in `shares`, so every split holds the classes
/// in the file's proportions; rows keep their file order within a split.
/// Rows the reader skipped are counted with train. `None` for an empty test share.
pub fn split_by_class(all: &Split, shares: Shares, seed: u64) -> Result<(Split, Split, Option<Split>)> {
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, label) in all.labels.iter().enumerate() {
        by_class.entry(label.as_str()).or_default().push(i);
    }
    let mut rng = SplitMix64::new(derive(seed, "split", 0));
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for rows in by_class.values_mut() {
        for i in (1..rows.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            rows.swap(i, j);
        }
        let n = rows.len();
        let part = |pct: u32| ((n as f64) * f64::from(pct) / 100.0).round() as usize;
        let n_valid = part(shares.valid).min(n.saturating_sub(1));
        let n_test = part(shares.test).min(n - 1 - n_valid);
        valid.extend_from_slice(&rows[..n_valid]);
        test.extend_from_slice(&rows[n_valid..n_valid + n_test]);
        train.extend_from_slice(&rows[n_valid + n_test..]);
    }
    if valid.is_empty() {
        bail_usage!(
            "{}: {} rows are too few to hold out {}% for validation; give more rows or a larger validation share (--split)",
            all.path.display(),
            all.len(),
            shares.valid
        );
    }
    let pick = |rows: &mut Vec<usize>, part: &str| -> Split {
        rows.sort_unstable();
        Split {
            name: format!("{} ({part} split)", all.name),
            path: all.path.clone(),
            texts: rows.iter().map(|&i| all.texts[i].clone()).collect(),
            labels: rows.iter().map(|&i| all.labels[i].clone()).collect(),
            lines: rows.iter().map(|&i| all.lines[i]).collect(),
            records: rows.iter().map(|&i| all.records[i]).collect(),
            skipped: Vec::new(),
            text_column: all.text_column.clone(),
            label_column: all.label_column.clone(),
            multi_label: all.multi_label,
            label_columns: all.label_columns.clone(),
            found_by: all.found_by.clone(),
            pairs: if all.pairs.is_empty() { Vec::new() } else { rows.iter().map(|&i| all.pairs[i].clone()).collect() },
            pair_column: all.pair_column.clone(),
            class_names: all.class_names.clone(),
        }
    };
    let mut train_split = pick(&mut train, "train");
    train_split.skipped = all.skipped.clone();
    let valid_split = pick(&mut valid, "valid");
    let test_split = (shares.test > 0 && !test.is_empty()).then(|| pick(&mut test, "test"));
    Ok((train_split, valid_split, test_split))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(labels: &[&str]) -> Split {
        Split {
            name: "spam.csv".into(),
            path: PathBuf::from("d/spam.csv"),
            texts: (0..labels.len()).map(|i| format!("text {i}")).collect(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            lines: (2..labels.len() as u64 + 2).collect(),
            records: (0..labels.len() as u64).collect(),
            skipped: vec![7],
            ..Default::default()
        }
    }

    #[test]
    fn a_directory_may_name_its_splits_as_glue_and_hugging_face_do() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |f: &str| std::fs::write(dir.path().join(f), "sentence\tlabel\n").unwrap();
        let e = Source::find(dir.path()).err().unwrap().to_string();
        assert!(e.contains("no train.csv there") && e.contains("dev or validation"), "{e}");
        touch("train.tsv");
        // Train alone is one file to split; train and test hold out valid.
        assert!(matches!(Source::find(dir.path()).unwrap(), Source::File(p) if p.ends_with("train.tsv")));
        touch("test.tsv");
        let Source::Dir { valid, .. } = Source::find(dir.path()).unwrap() else { panic!("a directory") };
        assert!(valid.is_none());
        touch("dev.tsv");
        touch("test.tsv");
        let Source::Dir { train, valid, test } = Source::find(dir.path()).unwrap() else { panic!("a directory") };
        assert!(train.ends_with("train.tsv") && valid.unwrap().ends_with("dev.tsv"));
        assert!(test.unwrap().ends_with("test.tsv"));
        // The tutorial's names come first.
        touch("valid.csv");
        touch("validation.csv");
        let Source::Dir { valid, .. } = Source::find(dir.path()).unwrap() else { panic!("a directory") };
        assert!(valid.as_ref().unwrap().ends_with("valid.csv"), "{valid:?}");
        // The Hugging Face Hub's Parquet shards: the first shard stands for the split.
        let hub = tempfile::tempdir().unwrap();
        for f in
            ["train-00001-of-00002.parquet", "train-00000-of-00002.parquet", "validation-00000-of-00001-5a74.parquet"]
        {
            std::fs::write(hub.path().join(f), "").unwrap();
        }
        let Source::Dir { train, valid, test } = Source::find(hub.path()).unwrap() else { panic!("a directory") };
        assert!(train.ends_with("train-00000-of-00002.parquet"), "{train:?}");
        assert!(valid.unwrap().ends_with("validation-00000-of-00001-5a74.parquet") && test.is_none());
        // A Hub repository's folder of data, a level down; several are a choice.
        let repo = tempfile::tempdir().unwrap();
        let data = repo.path().join("plain_text");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("train-00000-of-00001.parquet"), "").unwrap();
        std::fs::write(repo.path().join("README.md"), "").unwrap();
        assert!(matches!(Source::find(repo.path()).unwrap(), Source::File(p) if p.starts_with(&data)));
        std::fs::create_dir_all(repo.path().join("sst2")).unwrap();
        std::fs::write(repo.path().join("sst2/train.csv"), "").unwrap();
        let e = Source::find(repo.path()).err().unwrap().to_string();
        assert!(e.contains("several data sets (plain_text, sst2); give one of them to -s"), "{e}");
        // A folder of one labelled file is that file, whatever its name.
        let kaggle = tempfile::tempdir().unwrap();
        std::fs::write(kaggle.path().join("spam.csv"), "").unwrap();
        std::fs::write(kaggle.path().join("notes.txt"), "").unwrap();
        assert!(matches!(Source::find(kaggle.path()).unwrap(), Source::File(p) if p.ends_with("spam.csv")));
        // JSON lines by their other name, gzipped or not.
        let nd = tempfile::tempdir().unwrap();
        std::fs::write(nd.path().join("train.ndjson.gz"), "").unwrap();
        std::fs::write(nd.path().join("test.ndjson"), "").unwrap();
        let Source::Dir { train, test, .. } = Source::find(nd.path()).unwrap() else { panic!("a directory") };
        assert!(train.ends_with("train.ndjson.gz") && test.unwrap().ends_with("test.ndjson"));
    }

    #[test]
    fn shares_parse_and_refuse_what_does_not_add_up() {
        assert_eq!("80,10,10".parse::<Shares>().unwrap(), Shares::default());
        assert_eq!("90, 10, 0".parse::<Shares>().unwrap(), Shares { train: 90, valid: 10, test: 0 });
        for bad in ["80,10", "80,10,20", "0,50,50", "90,0,10", "a,b,c", "-1,51,50"] {
            let e = bad.parse::<Shares>().unwrap_err();
            assert!(e.contains("add up to 100"), "{bad}: {e}");
        }
    }

    #[test]
    fn splits_each_class_in_its_shares_the_same_way_for_a_seed() {
        // 900 ham and 100 spam, interleaved.
        let labels: Vec<&str> = (0..1000).map(|i| if i % 10 == 3 { "spam" } else { "ham" }).collect();
        let all = labelled(&labels);
        let spam = labels.iter().filter(|l| **l == "spam").count();
        let (train, valid, test) = split_by_class(&all, Shares::default(), 42).unwrap();
        let test = test.unwrap();
        assert_eq!(train.len() + valid.len() + test.len(), 1000);
        let count = |s: &Split, l: &str| s.labels.iter().filter(|x| *x == l).count();
        let tenth = (spam as f64 / 10.0).round() as usize;
        assert_eq!((count(&valid, "spam"), count(&test, "spam")), (tenth, tenth));
        assert_eq!(count(&train, "spam"), spam - 2 * tenth);
        assert_eq!(valid.len(), 100);
        // Disjoint, each row once, in file order, with its line.
        let mut seen: Vec<&String> = train.texts.iter().chain(&valid.texts).chain(&test.texts).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
        assert!(valid.lines.windows(2).all(|w| w[0] < w[1]));
        let i = all.texts.iter().position(|t| *t == valid.texts[0]).unwrap();
        assert_eq!(valid.lines[0], all.lines[i]);
        assert_eq!((train.skipped.len(), valid.skipped.len()), (1, 0));
        assert_eq!(valid.name, "spam.csv (valid split)");
        // The same seed, the same split; another seed, another one.
        let (_, again, _) = split_by_class(&all, Shares::default(), 42).unwrap();
        assert_eq!(again.texts, valid.texts);
        let (_, other, _) = split_by_class(&all, Shares::default(), 43).unwrap();
        assert_ne!(other.texts, valid.texts);
        // No test share: no test split.
        let (train, valid, test) = split_by_class(&all, "90,10,0".parse().unwrap(), 42).unwrap();
        assert!(test.is_none());
        assert_eq!(train.len() + valid.len(), 1000);
    }

    #[test]
    fn too_few_rows_to_validate_is_an_error() {
        let all = labelled(&["a", "b", "a", "b"]);
        let e = split_by_class(&all, Shares::default(), 1).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("too few to hold out 10% for validation"), "{e}");
        // A class of one row stays in training.
        let all = labelled(&["a", "a", "a", "a", "a", "a", "a", "a", "a", "a", "b"]);
        let (train, valid, _) = split_by_class(&all, Shares::default(), 1).unwrap();
        assert!(train.labels.contains(&"b".to_string()) && !valid.labels.contains(&"b".to_string()));
    }
}
