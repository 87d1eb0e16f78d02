//! MNIST's four files, fetched from the usual mirrors on first use and checked
//! against their published SHA-256 sums (the same sums torchvision, torch.rb
//! and GuildAI's examples pin) before they are moved into place atomically.

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
}

/// train images, train labels, test images, test labels.
pub const FILES: [Published; 4] = [
    Published {
        name: "train-images-idx3-ubyte.gz",
        bytes: 9_912_422,
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    },
    Published {
        name: "train-labels-idx1-ubyte.gz",
        bytes: 28_881,
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    },
    Published {
        name: "t10k-images-idx3-ubyte.gz",
        bytes: 1_648_877,
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    Published {
        name: "t10k-labels-idx1-ubyte.gz",
        bytes: 4_542,
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
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
        "cannot download MNIST's {} into {} ({}); put the four MNIST .gz files there yourself (see data/mnist.md), or leave out --data-dir to train on the offline sample",
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

/// Checks a file already on disk against the published sum.
pub fn verify(path: &Path, bytes: &[u8], file: &Published) -> Result<()> {
    let got = hex(&Sha256::digest(bytes));
    if got != file.sha256 {
        bail_usage!(
            "{} is not MNIST's published file (sha256 {got}, expected {}); it may be corrupt or partial: delete it and run again to download it",
            path.display(),
            file.sha256
        );
    }
    Ok(())
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
            assert_eq!(f.sha256.len(), 64);
            assert!(f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        assert_eq!(hex(&Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_wrong_file_on_disk_is_a_usage_error() {
        let err = verify(Path::new("d/x.gz"), b"not mnist", &FILES[3]).unwrap_err();
        assert_eq!(crate::cli::exit_code(&err), crate::cli::EXIT_USAGE);
        assert!(err.to_string().contains("delete it and run again"), "{err}");
    }
}
