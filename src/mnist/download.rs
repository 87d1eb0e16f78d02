//! MNIST's four files, fetched from the usual mirrors on first use and checked
//! against their published SHA-256 sums (the same sums torchvision, torch.rb
//! and GuildAI's examples pin) before they are moved into place atomically.
//! A file on disk passes if either the `.gz` or what it unpacks to has the
//! published sum, so a copy gzipped again (other tools, other levels) is
//! still recognised as MNIST.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::bail_usage;
use crate::cli::usage;
use crate::report::write_atomic;

/// One of MNIST's files as its authors published it.
#[derive(Debug)]
pub struct Published {
    pub name: &'static str,
    pub bytes: u64,
    pub sha256: &'static str,
    /// The IDX file inside the `.gz`.
    pub unpacked_bytes: u64,
    pub unpacked_sha256: &'static str,
}

/// train images, train labels, test images, test labels.
pub const FILES: [Published; 4] = [
    Published {
        name: "train-images-idx3-ubyte.gz",
        bytes: 9_912_422,
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        unpacked_bytes: 47_040_016,
        unpacked_sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    Published {
        name: "train-labels-idx1-ubyte.gz",
        bytes: 28_881,
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        unpacked_bytes: 60_008,
        unpacked_sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    Published {
        name: "t10k-images-idx3-ubyte.gz",
        bytes: 1_648_877,
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        unpacked_bytes: 7_840_016,
        unpacked_sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    Published {
        name: "t10k-labels-idx1-ubyte.gz",
        bytes: 4_542,
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        unpacked_bytes: 10_008,
        unpacked_sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Tried in order: PyTorch's S3 copy, TensorFlow's GCS copy, the original site.
pub const MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// `HPCML_MNIST_MIRRORS` (base URLs separated by commas or spaces) replaces the
/// list, e.g. for a site-local copy on a cluster without internet access.
pub fn mirrors() -> Vec<String> {
    let custom: Vec<String> = std::env::var("HPCML_MNIST_MIRRORS")
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| if s.ends_with('/') { s.to_string() } else { format!("{s}/") })
        .collect();
    if custom.is_empty() {
        MIRRORS.iter().map(|s| s.to_string()).collect()
    } else {
        custom
    }
}

/// Downloads `file` into `dir`, trying each mirror in turn; returns its size.
/// Nothing lands in `dir` unless its SHA-256 matches.
pub fn fetch(dir: &Path, file: &Published) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| usage(format!("cannot create --data-dir {}: {e}", dir.display())))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .user_agent(concat!("hpcml/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut failures = Vec::new();
    for base in mirrors() {
        let url = format!("{base}{}", file.name);
        match fetch_one(&agent, &url, dir, file) {
            Ok(n) => return Ok(n),
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    bail_usage!(
        "cannot download MNIST's {} into {} ({}); put the four MNIST .gz files there yourself (see data/mnist.md), or leave out --data-dir to train offline",
        file.name,
        dir.display(),
        failures.join("; ")
    )
}

fn fetch_one(agent: &ureq::Agent, url: &str, dir: &Path, file: &Published) -> Result<u64, String> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => t.kind().to_string().to_lowercase(),
    })?;
    let mut body = response.into_reader().take(file.bytes + 1);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    write_atomic(&dir.join(file.name), |out| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
        let got = hex(&hasher.clone().finalize());
        if total != file.bytes || got != file.sha256 {
            anyhow::bail!(
                "got {total} bytes with sha256 {got}, expected {} bytes with sha256 {}",
                file.bytes,
                file.sha256
            );
        }
        Ok(())
    })
    .map_err(|e| format!("{e:#}"))?;
    Ok(total)
}

/// Checks a file already on disk against the published sums and returns what
/// it unpacks to (`unpack`). `packed` passes if it is the published `.gz`, or
/// if it unpacks to the published IDX file.
pub fn verify(
    path: &Path,
    packed: &[u8],
    file: &Published,
    unpack: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let packed_sum = sha256_hex(&[packed]);
    if packed_sum == file.sha256 {
        return unpack(packed);
    }
    let Ok(unpacked) = unpack(packed) else {
        return Err(not_mnist(path, format!("sha256 {packed_sum}, expected {}, and it does not unpack", file.sha256)));
    };
    check_unpacked(path, unpacked, file, "it unpacks to")
}

/// Checks an unpacked IDX file on disk (what `gunzip` leaves) against the
/// published sum of the unpacked file, and hands its bytes back.
pub fn verify_unpacked(path: &Path, bytes: Vec<u8>, file: &Published) -> Result<Vec<u8>> {
    check_unpacked(path, bytes, file, "it has")
}

fn check_unpacked(path: &Path, unpacked: Vec<u8>, file: &Published, it_holds: &str) -> Result<Vec<u8>> {
    let got = sha256_hex(&[&unpacked]);
    if got != file.unpacked_sha256 {
        return Err(not_mnist(
            path,
            format!(
                "{it_holds} {} bytes with sha256 {got}, expected {} with {}",
                unpacked.len(),
                file.unpacked_bytes,
                file.unpacked_sha256
            ),
        ));
    }
    Ok(unpacked)
}

fn not_mnist(path: &Path, what: String) -> anyhow::Error {
    usage(format!(
        "{} is not MNIST's published file ({what}); it may be corrupt or partial: delete it and run again to fetch it",
        path.display()
    ))
}

/// The SHA-256 of `parts` one after the other, in lowercase hex.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_of_the_right_length() {
        for f in &FILES {
            for sum in [f.sha256, f.unpacked_sha256] {
                assert_eq!(sum.len(), 64);
                assert!(sum.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
            // IDX: a 4-byte magic, 4 bytes per dimension, then the bytes.
            let header = if f.name.contains("images") { 16 } else { 8 };
            let count = if f.name.starts_with("train") { 60_000 } else { 10_000 };
            let per = if f.name.contains("images") { 28 * 28 } else { 1 };
            assert_eq!(f.unpacked_bytes, header + count * per, "{}", f.name);
        }
        assert_eq!(hex(&Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_wrong_file_on_disk_is_a_usage_error() {
        let path = Path::new("d/x.gz");
        let not_gzip = |_: &[u8]| -> Result<Vec<u8>> { anyhow::bail!("not gzip") };
        let err = verify(path, b"not mnist", &FILES[3], not_gzip).unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_USAGE);
        assert!(err.to_string().contains("and it does not unpack); it may be corrupt"), "{err}");
        // Unpacks, but not to MNIST's labels.
        let err = verify(path, b"x", &FILES[3], |_| Ok(vec![0u8; 10_008])).unwrap_err();
        assert!(err.to_string().contains("unpacks to 10008 bytes with sha256"), "{err}");
        assert!(err.to_string().contains("delete it and run again"), "{err}");
        // An unpacked file is checked against the unpacked sum alone.
        let err = verify_unpacked(Path::new("d/x"), vec![0u8; 10_008], &FILES[3]).unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_USAGE);
        assert!(err.to_string().contains("d/x is not MNIST's published file (it has 10008 bytes with sha256"), "{err}");
    }
}
