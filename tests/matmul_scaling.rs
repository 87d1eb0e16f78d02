//! matmul-scaling end to end: real binary, real libtorch, real mpiexec, real
//! files. Small sizes only (64..512), so the whole file takes seconds.

mod common;

use std::path::Path;

use common::{assert_one_line_error, json, mpirun, mpirun_in, run, run_in, Run};

const BIN: &str = "matmul-scaling";

fn in_dir(dir: &Path, args: &[&str]) -> Run {
    run_in(BIN, args, 120, Some(dir))
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(b.len() > 1000, "{} is only {} bytes", path.display(), b.len());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&b[12..16], b"IHDR");
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

fn cells(record: &serde_json::Value) -> &Vec<serde_json::Value> {
    record["cells"].as_array().expect("cells")
}

/// Whether this CPU has a bf16 GEMM worth timing (AVX-512 or AMX). Without
/// one, as on an AVX2-only Zen 3, matmul-scaling reports bf16 cells as
/// unsupported instead of timing libtorch's scalar loop, and these tests
/// check that report in their place.
fn bf16_runs() -> bool {
    hpcml::device::CpuFeatures::detect().kernel(hpcml::matmul::Dtype::Bf16, true).is_ok()
}

/// A bf16 cell's record where this CPU has no bf16 GEMM: an error, no time.
fn assert_unsupported(rank: &serde_json::Value) {
    assert_eq!(rank["error"]["failure"], "unsupported", "{rank}");
    assert!(rank["error"]["message"].as_str().unwrap().contains("no bf16 GEMM on this CPU"), "{rank}");
    assert!(rank["gflops"].is_null() && rank["times_s"].as_array().unwrap().is_empty(), "{rank}");
}

#[test]
fn cpu_run_prints_the_tutorial_output_and_writes_json_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--no-gpu",
        "--sizes",
        "64,128",
        "--dtype",
        "f32,bf16",
        "--repeats",
        "3",
        "--json",
        "r.json",
        "--csv",
        "r.csv",
    ];
    let r = in_dir(dir.path(), &args).ok();
    let out = &r.stdout;
    let bf16 = bf16_runs();
    let bf16_needle = match bf16 {
        true => "Running test for matrix size: 128x128 (bf16 on cpu, ",
        false => "Running test for matrix size: 128x128 (bf16 on cpu)\nEstimated memory requirement: 0.0000916 GiB (A, B and C)\nError (unsupported): bf16 on cpu: no bf16 GEMM on this CPU",
    };
    for needle in [
        "libtorch version: 2.",
        "Using device: cpu",
        "CUDA version: ",
        "CPU: ",
        "thread(s) per rank",
        "Running test for matrix size: 64x64 (f32 on cpu, ",
        "Estimated memory requirement: 0.0000458 GiB (A, B and C)",
        bf16_needle,
        "Matrix Multiplication Test Results",
        "┃ Matrix Size ┃ Dtype ┃ Device ┃ Memory Size (GiB) ┃ Computation Time (s) ┃",
        "Scaling plot saved as 'scaling_plot.png'",
    ] {
        assert!(out.contains(needle), "missing '{needle}' in:\n{out}");
    }
    // One "Time: ..., Performance: ..." line per cell, with its unit.
    let perf: Vec<&str> = out.lines().filter(|l| l.starts_with("Time: ")).collect();
    assert_eq!(perf.len(), if bf16 { 4 } else { 2 }, "{out}");
    assert!(perf.iter().all(|l| l.contains("(median of 3;") && l.contains("FLOPS")), "{out}");
    // Table: four result rows, in run order.
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("│ ")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[0].starts_with("│ 64x64 ") && rows[0].contains(" f32 "), "{}", rows[0]);
    assert!(rows[3].starts_with("│ 128x128 ") && rows[3].contains(" bf16 "), "{}", rows[3]);
    assert_eq!(rows[3].contains(" unsupported "), !bf16, "{}", rows[3]);
    assert!(r.stderr.trim().is_empty(), "{}", r.stderr);

    let rec = json(&dir.path().join("r.json"));
    assert_eq!(rec["workload"], "matmul-scaling");
    assert_eq!(cells(&rec).len(), 4);
    for c in cells(&rec) {
        let n = c["size"].as_f64().unwrap();
        let me = &c["per_rank"][0];
        if c["dtype"] == "bf16" && !bf16 {
            assert_unsupported(me);
            continue;
        }
        let t = me["median_s"].as_f64().unwrap();
        let g = me["gflops"].as_f64().unwrap();
        assert!(t > 0.0 && g > 0.0);
        assert!((g - 2.0 * n * n * n / t / 1e9).abs() <= 1e-9 * g, "GFLOPS must be 2n^3/t: {c}");
        assert_eq!(me["times_s"].as_array().unwrap().len(), 3);
        assert!(me["min_s"].as_f64().unwrap() <= t && t <= me["max_s"].as_f64().unwrap());
        // Small products are checked whole, against f64.
        assert_eq!(me["check"]["entries"].as_f64().unwrap(), n * n);
        assert!(me["check"]["max_error"].as_f64().unwrap() <= me["check"]["tolerance"].as_f64().unwrap());
        let bytes = if c["dtype"] == "f32" { 4.0 } else { 2.0 };
        assert_eq!(me["memory_gib"].as_f64().unwrap(), 3.0 * n * n * bytes / (1u64 << 30) as f64);
        assert_eq!(c["job"]["gflops"], me["gflops"]);
    }
    assert_eq!(rec["cells_ok"], if bf16 { 4 } else { 2 });

    let csv = std::fs::read_to_string(dir.path().join("r.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("scope,host,rank,ranks,device,dtype,size,memory_gib,median_s"), "{csv}");
    // Per cell: the rank's row, its node's and the job's sums.
    assert_eq!(lines.len(), 1 + 4 * 3, "{csv}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("rank,")).count(), 4);

    assert_eq!(png_size(&dir.path().join("scaling_plot.png")), (1000, 640));
}

#[test]
fn two_ranks_under_mpiexec_give_per_rank_and_job_rows() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--no-gpu", "--sizes", "128,256", "--dtype", "f32,bf16", "--repeats", "2", "--json", "r.json"];
    let r = mpirun_in(2, BIN, &args, 120, Some(dir.path())).ok();
    let out = &r.stdout;
    assert!(out.contains("Ranks: 2 on 1 node(s)"), "{out}");
    let share = (std::thread::available_parallelism().unwrap().get() / 2).max(1);
    assert!(out.contains(&format!(" {share} thread(s) per rank")), "the node's cores are shared: {out}");
    let timed = if bf16_runs() { 4 } else { 2 };
    for rank in ["-0] Time: ", "-1] Time: "] {
        assert_eq!(out.matches(rank).count(), timed, "{out}");
    }
    assert_eq!(out.matches("Job (2 of 2 ranks ran): ").count(), timed, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("│ ")).collect();
    assert_eq!(rows.len(), 4 * 3, "{out}");
    assert!(rows[0].contains("-0 ") && rows[1].contains("-1 ") && rows[2].starts_with("│ job "), "{out}");
    assert!(rows[2].contains("sum of 2/2 ranks"), "{}", rows[2]);
    // Only rank 0 prints.
    assert_eq!(out.matches("Matrix Multiplication Test Results").count(), 1);

    let rec = json(&dir.path().join("r.json"));
    assert_eq!(rec["system"]["ranks"], 2);
    assert_eq!(rec["ranks"].as_array().unwrap().len(), 2);
    for c in cells(&rec) {
        let per = c["per_rank"].as_array().unwrap();
        assert_eq!(per.len(), 2);
        assert_eq!((per[0]["rank"].as_u64(), per[1]["rank"].as_u64()), (Some(0), Some(1)));
        if c["dtype"] == "bf16" && !bf16_runs() {
            per.iter().for_each(assert_unsupported);
            assert_eq!(c["job"]["ranks_ok"], 0);
            continue;
        }
        let sum: f64 = per.iter().map(|p| p["gflops"].as_f64().unwrap()).sum();
        let job = c["job"]["gflops"].as_f64().unwrap();
        assert!((job - sum).abs() <= 1e-9 * sum, "job {job} != sum {sum}");
        assert_eq!(c["job"]["ranks_ok"], 2);
        assert_eq!(c["nodes"].as_array().unwrap().len(), 1);
    }
    assert_eq!(png_size(&dir.path().join("scaling_plot.png")), (1000, 640));
}

#[test]
fn a_cell_over_the_memory_limit_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    // 4k = 4096: A, B and C in f32 need 0.1875 GiB, over the 0.1 GiB limit; 128 fits.
    let args = ["--no-gpu", "--sizes", "128,4k", "--repeats", "1", "--max-memory-gb", "0.1", "--json", "r.json"];
    let r = in_dir(dir.path(), &args).ok();
    assert!(r.stdout.contains("Running test for matrix size: 4096x4096"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Error (over memory limit): 4096x4096 f32 needs 0.19 GiB for A, B and C, more than the --max-memory-gb limit (0.10 GiB)"),
        "{}",
        r.stdout
    );
    let row = r.stdout.lines().find(|l| l.starts_with("│ 4096x4096")).expect("a row for the failed cell");
    assert!(row.contains("over memory limit"), "{row}");
    let rec = json(&dir.path().join("r.json"));
    let failed = &cells(&rec)[1]["per_rank"][0];
    assert_eq!(failed["error"]["failure"], "memory_limit");
    assert!(failed["gflops"].is_null());
    assert!(cells(&rec)[0]["per_rank"][0]["gflops"].as_f64().unwrap() > 0.0);
    assert_eq!((rec["cells_ok"].as_u64(), rec["cells_failed"].as_u64()), (Some(1), Some(1)));
    // The plot has the cell that ran.
    assert!(dir.path().join("scaling_plot.png").exists());
}

#[test]
fn a_real_out_of_memory_is_a_cell_error() {
    // 1024k: each matrix is 4 TiB, which the allocator refuses at once unless the
    // kernel overcommits without limit (mode 1), where it would be touched instead.
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() == "1" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["--no-gpu", "--sizes", "64,1024k", "--repeats", "1", "--max-memory-gb", "100000"];
    let r = in_dir(dir.path(), &args).ok();
    let err = r.stdout.lines().find(|l| l.starts_with("Error (out of memory): out of memory: ")).unwrap_or_else(|| {
        panic!("no out-of-memory line in:\n{}", r.stdout);
    });
    assert!(!err.contains("frame #"), "{err}");
}

#[test]
fn all_cells_failing_exits_nonzero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Only types the CPU can't run: a usage error.
    let r = in_dir(dir.path(), &["--no-gpu", "--sizes", "64,128", "--dtype", "tf32"]);
    assert_one_line_error(&r, 2, "every cell failed");
    assert!(r.stdout.contains("Error (unsupported): tf32 on cpu: "), "{}", r.stdout);
    assert!(r.stdout.contains("No successful tests to plot."), "{}", r.stdout);
    assert!(!dir.path().join("scaling_plot.png").exists());
    // Nothing fits: a runtime failure.
    let r = in_dir(dir.path(), &["--no-gpu", "--sizes", "512", "--max-memory-gb", "0.001"]);
    assert_one_line_error(&r, 1, "every cell failed");
    // The same verdict on every rank, said once. (tf32 alone: f16 runs on CPUs
    // with AVX512-FP16, such as Sapphire Rapids.)
    let r = mpirun_in(2, BIN, &["--no-gpu", "--sizes", "64,128", "--dtype", "tf32"], 60, Some(dir.path()));
    assert_one_line_error(&r, 2, "every cell failed");
}

#[test]
fn bad_flags_are_one_line_and_exit_two() {
    for (args, needle) in [
        (vec!["--sizes", "4x"], "'4x' is not a matrix size"),
        (vec!["--sizes", "0"], "4k (= 4096)"),
        (vec!["--sizes", "-5"], "--sizes"),
        (vec!["--sizes", "2048,,4096"], "--sizes"),
        (vec!["--sizes", "99999999"], "too large"),
        (vec!["--dtype", "f64"], "unknown type 'f64'"),
        (vec!["--repeats", "0"], "--repeats"),
        (vec!["--warmup", "-1"], "--warmup"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--peak-gflops", "fast"], "--peak-gflops"),
        (vec!["--peak-gflops", "f64=3"], "--peak-gflops"),
        (vec!["--max-memory-gb", "0"], "--max-memory-gb"),
        (vec!["--device", "tpu"], "unknown device 'tpu'"),
        (vec!["--device", "cpu", "--no-gpu"], "cannot be used with"),
        (vec!["--frobnicate"], "--frobnicate"),
    ] {
        let r = run(BIN, &args, 60);
        assert_one_line_error(&r, 2, needle);
        assert!(r.stdout.is_empty(), "{args:?} printed: {}", r.stdout);
    }
    let help = run(BIN, &["--help"], 60).ok();
    for flag in ["--sizes", "--no-gpu", "--dtype", "--repeats", "--peak-gflops", "--max-memory-gb", "--csv", "--plot"] {
        assert!(help.stdout.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_and_gpu_falls_back() {
    if has_gpu() {
        return;
    }
    let r = run(BIN, &["--device", "cuda", "--sizes", "64"], 60);
    assert_one_line_error(&r, 2, "no CUDA GPU");
    let r = mpirun(2, BIN, &["--device", "cuda", "--sizes", "64"], 60);
    assert_one_line_error(&r, 2, "no CUDA GPU");
    // --gpu is the tutorial's "GPU if available".
    let dir = tempfile::tempdir().unwrap();
    let r = in_dir(dir.path(), &["--gpu", "--sizes", "64", "--repeats", "1", "--no-plot"]).ok();
    assert!(r.stdout.contains("Using device: cpu"), "{}", r.stdout);
}

fn has_gpu() -> bool {
    std::process::Command::new("nvidia-smi").arg("-L").output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn peak_override_sets_percent_of_peak() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--no-gpu", "--sizes", "64", "--repeats", "1", "--peak-gflops", "f32=1000", "--json", "r.json"];
    let r = in_dir(dir.path(), &args).ok();
    assert!(r.stdout.contains("Peak per rank, f32 on cpu: 1.00 TFLOPS (--peak-gflops)"), "{}", r.stdout);
    let rec = json(&dir.path().join("r.json"));
    let me = &cells(&rec)[0]["per_rank"][0];
    let pct = me["percent_of_peak"].as_f64().unwrap();
    assert!((pct - me["gflops"].as_f64().unwrap() / 1000.0 * 100.0).abs() < 1e-9);
}

#[test]
fn an_unwritable_output_ends_every_rank_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--no-gpu", "--sizes", "64", "--repeats", "1", "--no-plot", "--json", "/proc/forbidden/r.json"];
    let r = mpirun_in(2, BIN, &args, 60, Some(dir.path()));
    assert_ne!(r.code, 124, "timed out: the job hung");
    assert_one_line_error(&r, 1, "r.json");
}
