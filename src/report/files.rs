//! Atomic file writes: a temp file in the same directory, fsynced, then renamed
//! over the target. An interrupted run leaves either the old file or the new one,
//! never a truncated one.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes a file atomically through `fill`, creating parent directories.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let file = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut out = BufWriter::new(file);
        fill(&mut out)?;
        let file =
            out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
        sync_dir(path);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Moves a finished file (written elsewhere, e.g. by a library that only takes a
/// path) into place atomically.
pub fn replace_with(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", tmp.display()))?;
    fs::rename(tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    sync_dir(path);
    Ok(())
}

/// A temp path beside `path` (same filesystem, so rename is atomic), unique per
/// process, keeping the extension for writers that pick a format by it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".tmp.{}.{name}", std::process::id()))
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")?;
        Ok(())
    })
    .with_context(|| format!("writing JSON record {}", path.display()))
}

/// Writes flat records (no nested lists or maps) as CSV, atomically: a header row
/// from the first record's field names, then one row per record.
#[cfg(feature = "torch")]
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        for row in rows {
            out.serialize(row)?;
        }
        out.flush()?;
        Ok(())
    })
    .with_context(|| format!("writing CSV {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rec.json");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["a"], 1);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.txt");
        fs::write(&path, "old").unwrap();
        let r = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("interrupted")
        });
        assert!(r.is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(feature = "torch")]
    #[test]
    fn csv_has_a_header_and_one_row_per_record() {
        #[derive(Serialize)]
        struct Row {
            size: u32,
            dtype: &'static str,
            gflops: Option<f64>,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let rows = [Row { size: 64, dtype: "f32", gflops: Some(1.5) }, Row { size: 128, dtype: "bf16", gflops: None }];
        write_csv(&path, &rows).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "size,dtype,gflops\n64,f32,1.5\n128,bf16,\n");
    }
}
