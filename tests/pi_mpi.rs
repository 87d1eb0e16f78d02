//! pi-mpi end to end: real binary, real mpiexec, real files.

mod common;

use common::{assert_one_line_error, json, mpirun, run};

fn json_run(ranks: usize, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pi.json");
    let p = path.to_str().unwrap();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", p]);
    if ranks == 0 {
        run("pi-mpi", &all, 120).ok();
    } else {
        mpirun(ranks, "pi-mpi", &all, 120).ok();
    }
    json(&path)
}

#[test]
fn same_estimate_for_one_rank_and_two_under_mpiexec() {
    let single = json_run(0, &["2e8", "--seed", "7", "--threads", "1"]);
    let two = json_run(2, &["2e8", "--seed", "7", "--threads", "1"]);
    assert_eq!(single["ranks"], 1);
    assert_eq!(two["ranks"], 2);
    assert_eq!(single["hits"], two["hits"]);
    assert_eq!(single["estimate"].as_f64().unwrap().to_bits(), two["estimate"].as_f64().unwrap().to_bits());
    // Different seeds must differ: the comparison above can fail.
    let other = json_run(0, &["2e8", "--seed", "8", "--threads", "1"]);
    assert_ne!(single["hits"], other["hits"]);
}

#[test]
fn same_estimate_for_one_thread_and_two() {
    let one = json_run(0, &["123456789", "--seed", "3", "--threads", "1"]);
    let two = json_run(0, &["123456789", "--seed", "3", "--threads", "2"]);
    assert_eq!(one["hits"], two["hits"]);
    assert_eq!(two["threads_per_rank"], 2);
}

#[test]
fn every_sample_is_drawn_once_over_uneven_ranks() {
    let r = json_run(3, &["10000001", "--seed", "5", "--threads", "1"]);
    let per = r["per_rank"].as_array().unwrap();
    assert_eq!(per.len(), 3);
    let mut next = 0u64;
    let mut hits = 0u64;
    for (i, p) in per.iter().enumerate() {
        assert_eq!(p["rank"], i);
        assert_eq!(p["first_sample"].as_u64().unwrap(), next);
        next += p["samples"].as_u64().unwrap();
        hits += p["hits"].as_u64().unwrap();
    }
    assert_eq!(next, 10_000_001);
    assert_eq!(hits, r["hits"].as_u64().unwrap());
    let samples: Vec<u64> = per.iter().map(|p| p["samples"].as_u64().unwrap()).collect();
    assert_eq!(samples, vec![3_333_334, 3_333_334, 3_333_333]);
    let single = json_run(0, &["10000001", "--seed", "5"]);
    assert_eq!(single["hits"], r["hits"]);
}

#[test]
fn prints_the_tutorial_lines_from_rank_zero_in_rank_order() {
    let r = mpirun(2, "pi-mpi", &["1e7", "--seed", "1"], 120).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("Computing 5000000 samples on each of the 2 ranks"), "{}", r.stdout);
    assert!(lines[1].starts_with('[') && lines[1].contains("-0] Local Estimate: 3.1"), "{}", r.stdout);
    assert!(lines[2].contains("-1] Local Estimate: 3.1") && lines[2].contains(" Error: 0.0"), "{}", r.stdout);
    assert!(lines[3].starts_with("Finished computing 10000000 samples in "), "{}", r.stdout);
    assert!(lines[4].starts_with("Final Estimate: 3.14") && lines[4].contains("Error: 0.0"), "{}", r.stdout);
    assert!(lines[5].contains("samples/s total") && lines[5].contains("per rank"), "{}", r.stdout);
    assert_eq!(lines.len(), 6, "{}", r.stdout);
}

#[test]
fn json_record_holds_what_the_lines_say() {
    let r = json_run(2, &["1e6", "--seed", "9"]);
    for key in [
        "samples",
        "seed",
        "ranks",
        "hits",
        "estimate",
        "error",
        "seconds",
        "samples_per_second",
        "samples_per_second_per_rank",
        "per_rank",
    ] {
        assert!(!r[key].is_null(), "missing {key} in {r}");
    }
    let est = r["estimate"].as_f64().unwrap();
    assert_eq!(est, 4.0 * r["hits"].as_f64().unwrap() / 1e6);
    assert!((r["error"].as_f64().unwrap() - (est - std::f64::consts::PI).abs()).abs() < 1e-15);
}

#[test]
fn large_runs_stay_within_a_few_standard_errors() {
    for seed in ["1", "2", "3"] {
        let r = json_run(0, &["1e9", "--seed", seed]);
        let z = r["error"].as_f64().unwrap() / r["std_error"].as_f64().unwrap();
        assert!(z < 4.5, "seed {seed}: {z:.2} standard errors off");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    for (args, needle) in [
        (vec!["0"], "at least 1"),
        (vec!["-5"], "positive"),
        (vec!["ten"], "whole number"),
        (vec!["1e30"], "too large"),
        (vec!["99999999999999999999"], "too large"),
        (vec!["10", "--frobnicate"], "--frobnicate"),
        (vec!["10", "--device", "tpu"], "tpu"),
        (vec!["10", "--threads", "0"], "--threads"),
        (vec![], "SAMPLES"),
    ] {
        let r = run("pi-mpi", &args, 60);
        assert_one_line_error(&r, 2, needle);
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    if hpcml_has_gpu() {
        return;
    }
    let r = run("pi-mpi", &["1e6", "--device", "cuda"], 60);
    assert_one_line_error(&r, 2, "no CUDA GPU");
    let r = mpirun(2, "pi-mpi", &["1e6", "--device", "cuda"], 60);
    assert_one_line_error(&r, 2, "no CUDA GPU");
    let auto = json_run(0, &["1e6", "--device", "auto", "--seed", "4"]);
    let cpu = json_run(0, &["1e6", "--device", "cpu", "--seed", "4"]);
    assert_eq!(auto["device"], "cpu");
    assert_eq!(auto["hits"], cpu["hits"]);
}

fn hpcml_has_gpu() -> bool {
    std::process::Command::new("nvidia-smi").arg("-L").output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn a_failing_rank_ends_the_job_without_a_hang() {
    // An unwritable JSON path fails on rank 0 only, after the collective work:
    // the job must end (abort), not hang, and say why in one line.
    let r = mpirun(2, "pi-mpi", &["1e6", "--json", "/proc/forbidden/pi.json"], 60);
    assert_ne!(r.code, 0);
    assert_ne!(r.code, 124, "timed out: the job hung");
    assert!(r.stderr.contains("pi.json"), "{}", r.stderr);
}

/// The CPUs this test process may use.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Physical cores among `cpus` (SMT siblings once), from sysfs.
fn cores_among(cpus: &[usize]) -> usize {
    let read = |c: usize, f: &str| std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{c}/topology/{f}")).ok();
    let ids: std::collections::BTreeSet<String> = cpus
        .iter()
        .map(|&c| match (read(c, "physical_package_id"), read(c, "core_id")) {
            (Some(p), Some(k)) => format!("{}/{}", p.trim(), k.trim()),
            _ => format!("cpu{c}"),
        })
        .collect();
    ids.len()
}

fn threads_of_ranks(binding: &str, ranks: usize) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pi.json");
    common::mpirun_bound(ranks, binding, "pi-mpi", &["1e6", "--json", path.to_str().unwrap()], 120).ok();
    json(&path)["per_rank"].as_array().unwrap().iter().map(|r| r["threads"].as_u64().unwrap()).collect()
}

#[test]
fn default_threads_follow_the_launchers_binding() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: one CPU allowed");
        return;
    }
    let (a, b) = (cpus[0], cpus[1]);
    // Two ranks bound to the same two CPUs share their cores.
    let shared = (cores_among(&[a, b]) / 2).max(1) as u64;
    assert_eq!(threads_of_ranks(&format!("user:{a}+{b},{a}+{b}"), 2), vec![shared, shared]);
    // One rank bound to both runs on both cores; one bound to one CPU, on it.
    assert_eq!(threads_of_ranks(&format!("user:{a}+{b}"), 1), vec![cores_among(&[a, b]) as u64]);
    assert_eq!(threads_of_ranks(&format!("user:{a},{b}"), 2), vec![1, 1]);
    if cpus.len() >= 4 {
        // Ranks bound to cores of their own keep all of them (srun -c 2,
        // Intel MPI's pinning): not the node's cores divided by its ranks.
        let (c, d) = (cpus[2], cpus[3]);
        let want = vec![cores_among(&[a, b]) as u64, cores_among(&[c, d]) as u64];
        assert_eq!(threads_of_ranks(&format!("user:{a}+{b},{c}+{d}"), 2), want);
    }
}
