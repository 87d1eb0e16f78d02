//! How a run reads: the tutorial's header and per-size lines, its results
//! table (with per-rank and summed rows, % of peak and the kernel), CSV rows,
//! and the log-log scaling plot.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::cell::{Cell, CellError};
use super::config::{memory_bytes, GIB};
use super::{Aggregate, CellRecord, CellSummary, MatmulConfig, MatmulRun, RankSetup, System};
use crate::report::plot::{LinePlot, Series};
use crate::report::units::si;
use crate::report::{Align, Table};

/// `191.10 GFLOPS`: the unit follows the magnitude, as the tutorial's
/// `format_flops` does.
pub fn flops_unit(flops_per_second: f64) -> String {
    format!("{}FLOPS", si(flops_per_second))
}

fn gflops_text(gflops: f64) -> String {
    flops_unit(gflops * 1e9)
}

/// `x` with `digits` significant digits and no exponent, however small.
fn significant(x: f64, digits: i32) -> String {
    if x.is_nan() || x <= 0.0 || !x.is_finite() {
        return "-".into();
    }
    let decimals = (digits - 1 - x.log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.decimals$}")
}

/// Seconds with four significant digits.
pub fn seconds(t: f64) -> String {
    significant(t, 4)
}

/// GiB with two decimals as the tutorial prints them, or three significant
/// digits for the small sizes where two decimals would say 0.00.
fn gib(x: f64) -> String {
    if x >= 0.01 {
        format!("{x:.2}")
    } else {
        significant(x, 3)
    }
}

fn percent(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())
}

/// The header: versions, devices, GPUs or CPU, ranks, peaks, timing method.
pub fn header(system: &System, ranks: &[RankSetup], cfg: &MatmulConfig) -> Vec<String> {
    let mut out = vec![format!(
        "Matrix Multiplication Test for Large Matrices (hpcml matmul-scaling {})",
        env!("CARGO_PKG_VERSION")
    )];
    out.push(format!("libtorch version: {}", system.libtorch.as_deref().unwrap_or("unknown")));
    let first = ranks.first();
    let devices: Vec<String> = first.map(|r| r.devices.iter().map(|d| d.device.clone()).collect()).unwrap_or_default();
    let any_gpu = ranks.iter().flat_map(|r| &r.devices).any(|d| d.device.starts_with("cuda"));
    let mut using = format!("Using device: {}", devices.join(", "));
    if ranks.len() > 1 && any_gpu {
        using.push_str(" (each rank takes GPU local_rank % GPUs on its node)");
    }
    out.push(using);
    let cuda = system.cuda.as_deref().unwrap_or("none (no CUDA GPU visible)");
    out.push(format!("CUDA version: {cuda}"));
    for r in ranks {
        for d in r.devices.iter().filter(|d| d.device.starts_with("cuda")) {
            let who = if ranks.len() > 1 { format!(" [{}-{}]", r.host, r.rank) } else { String::new() };
            match &d.gpu {
                Some(g) => out.push(format!(
                    "GPU{who}: {} ({}), GPU Memory: {:.2} GiB",
                    g.name,
                    d.device,
                    g.memory_bytes as f64 / GIB
                )),
                None => out.push(format!("GPU{who}: {} (name and memory unknown: no nvidia-smi)", d.device)),
            }
        }
    }
    let threads = first.map(|r| r.threads).unwrap_or(1);
    out.push(format!(
        "CPU: {}, {} physical core(s), {threads} thread(s) per rank ({})",
        system.cpu_model, system.cpu_cores, system.cpu_features
    ));
    out.push(format!("Ranks: {} on {} node(s)", system.ranks, system.nodes));
    if let Some(r) = first {
        for d in &r.devices {
            for (dtype, peak) in &d.peaks {
                let runs = d.kernels.iter().any(|(t, k)| t == dtype && k.is_ok());
                if let Some(p) = peak.as_ref().filter(|_| runs) {
                    out.push(format!(
                        "Peak per rank, {dtype} on {}: {} ({})",
                        d.device,
                        gflops_text(p.gflops),
                        p.source
                    ));
                }
            }
        }
    }
    out.push(format!(
        "Timing: {} warm-up(s) then the median of {} timed product(s) per cell, the device synchronised around each; \
         every product checked against f64",
        cfg.warmup, cfg.repeats
    ));
    out
}

/// Before a cell: what runs and how much memory it takes.
pub fn start(cell: &Cell, kernel: Option<&str>) -> Vec<String> {
    let n = cell.size;
    let via = kernel.map(|k| format!(", {k}")).unwrap_or_default();
    vec![
        String::new(),
        format!("Running test for matrix size: {n}x{n} ({} on {}{via})", cell.dtype, cell.device),
        format!("Estimated memory requirement: {} GiB (A, B and C)", gib(memory_bytes(n, cell.dtype) as f64 / GIB)),
    ]
}

fn rank_line(r: &CellRecord) -> String {
    match (&r.error, r.median_s, r.gflops) {
        (Some(CellError { failure, message }), _, _) => format!("Error ({}): {message}", failure.short()),
        (None, Some(t), Some(g)) => {
            let pct = r.percent_of_peak.map(|p| format!(" ({p:.1}% of peak)")).unwrap_or_default();
            let entries = r.check.as_ref().map(|c| c.entries).unwrap_or(0);
            format!(
                "Time: {} s (median of {}; min {}, max {}), Performance: {}{pct}, product checked ({entries} entries)",
                seconds(t),
                r.times_s.len(),
                seconds(r.min_s.unwrap_or(t)),
                seconds(r.max_s.unwrap_or(t)),
                gflops_text(g)
            )
        }
        _ => "no result".into(),
    }
}

fn sum_line(label: &str, a: &Aggregate) -> String {
    match a.gflops {
        Some(g) => {
            let pct = a.percent_of_peak.map(|p| format!(" ({p:.1}% of peak)")).unwrap_or_default();
            format!("{label} ({} of {} ranks ran): {}{pct}", a.ranks_ok, a.ranks, gflops_text(g))
        }
        None => format!("{label}: every rank failed"),
    }
}

/// After a cell: each rank's time and rate (tagged when there are several),
/// then the node and job sums.
pub fn done(s: &CellSummary) -> Vec<String> {
    let multi = s.per_rank.len() > 1;
    let mut out: Vec<String> = s
        .per_rank
        .iter()
        .map(|r| if multi { format!("[{}-{}] {}", r.host, r.rank, rank_line(r)) } else { rank_line(r) })
        .collect();
    if s.nodes.len() > 1 {
        out.extend(s.nodes.iter().map(|n| sum_line(&format!("Node {}", n.name), n)));
    }
    if multi {
        out.push(sum_line("Job", &s.job));
    }
    out
}

/// The results table: one row per size and type (and device), per rank, with
/// node and job sums when there are several ranks.
pub fn table(run: &MatmulRun) -> Table {
    let multi = run.system.ranks > 1;
    let mut headers = vec![
        "Matrix Size",
        "Dtype",
        "Device",
        "Memory Size (GiB)",
        "Computation Time (s)",
        "Min-Max (s)",
        "Performance",
        "% of Peak",
        "Kernel",
    ];
    if multi {
        headers.insert(0, "Rank");
    }
    // Text columns read better left-aligned; numbers stay right-aligned.
    let first_text = if multi { 2 } else { 1 };
    let mut t = Table::new(headers)
        .title("Matrix Multiplication Test Results")
        .align(first_text - 1, Align::Left)
        .align(first_text, Align::Left)
        .align(first_text + 1, Align::Left)
        .align(first_text + 7, Align::Left);
    for s in &run.cells {
        let size = format!("{0}x{0}", s.size);
        for r in &s.per_rank {
            let mut row = vec![size.clone(), s.dtype.to_string(), r.device.clone(), gib(r.memory_gib)];
            match &r.error {
                Some(e) => row.extend(["-".into(), "-".into(), e.failure.short().into(), "-".into()]),
                None => row.extend([
                    r.median_s.map(seconds).unwrap_or_default(),
                    format!(
                        "{}-{}",
                        r.min_s.map(seconds).unwrap_or_default(),
                        r.max_s.map(seconds).unwrap_or_default()
                    ),
                    r.gflops.map(gflops_text).unwrap_or_default(),
                    percent(r.percent_of_peak),
                ]),
            }
            row.push(r.kernel.clone().unwrap_or_else(|| "-".into()));
            if multi {
                row.insert(0, format!("{}-{}", r.host, r.rank));
            }
            t.row(row);
        }
        if multi {
            let sums = if s.nodes.len() > 1 { s.nodes.iter().collect() } else { Vec::new() };
            for (label, a) in sums.into_iter().map(|n| (format!("node {}", n.name), n)).chain([("job".into(), &s.job)])
            {
                t.row([
                    label,
                    size.clone(),
                    s.dtype.to_string(),
                    s.device.clone(),
                    gib(a.memory_gib),
                    a.max_median_s.map(seconds).unwrap_or_else(|| "-".into()),
                    "-".into(),
                    a.gflops.map(gflops_text).unwrap_or_else(|| "failed".into()),
                    percent(a.percent_of_peak),
                    format!("sum of {}/{} ranks", a.ranks_ok, a.ranks),
                ]);
            }
        }
    }
    t
}

/// One CSV row: a rank's cell, or a node's or the job's sum.
#[derive(Serialize)]
pub struct CsvRow {
    pub scope: &'static str,
    pub host: String,
    pub rank: Option<usize>,
    pub ranks: usize,
    pub device: String,
    pub dtype: String,
    pub size: usize,
    pub memory_gib: f64,
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    pub gflops: Option<f64>,
    pub gflops_best: Option<f64>,
    pub peak_gflops: Option<f64>,
    pub percent_of_peak: Option<f64>,
    pub kernel: String,
    pub check_max_error: Option<f64>,
    pub error: String,
}

pub fn csv_rows(run: &MatmulRun) -> Vec<CsvRow> {
    let mut out = Vec::new();
    for s in &run.cells {
        for r in &s.per_rank {
            out.push(CsvRow {
                scope: "rank",
                host: r.host.clone(),
                rank: Some(r.rank),
                ranks: 1,
                device: r.device.clone(),
                dtype: s.dtype.to_string(),
                size: s.size,
                memory_gib: r.memory_gib,
                median_s: r.median_s,
                min_s: r.min_s,
                max_s: r.max_s,
                gflops: r.gflops,
                gflops_best: r.gflops_best,
                peak_gflops: r.peak.as_ref().map(|p| p.gflops),
                percent_of_peak: r.percent_of_peak,
                kernel: r.kernel.clone().unwrap_or_default(),
                check_max_error: r.check.as_ref().map(|c| c.max_error),
                error: r.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
            });
        }
        let sums = s.nodes.iter().map(|n| ("node", n)).chain([("job", &s.job)]);
        for (scope, a) in sums {
            out.push(CsvRow {
                scope,
                host: if scope == "node" { a.name.clone() } else { String::new() },
                rank: None,
                ranks: a.ranks,
                device: s.device.clone(),
                dtype: s.dtype.to_string(),
                size: s.size,
                memory_gib: a.memory_gib,
                median_s: a.max_median_s,
                min_s: None,
                max_s: None,
                gflops: a.gflops,
                gflops_best: a.gflops_best,
                peak_gflops: a.peak_gflops,
                percent_of_peak: a.percent_of_peak,
                kernel: format!("sum of {}/{} ranks", a.ranks_ok, a.ranks),
                check_max_error: None,
                error: String::new(),
            });
        }
    }
    out
}

/// The scaling plot: performance against size on log-log axes, one line per
/// type and device (the job's sum when there are several ranks).
pub fn plot(run: &MatmulRun, path: &Path) -> Result<()> {
    let ranks = run.system.ranks;
    let title = if ranks > 1 {
        format!("Scaling: Performance vs Matrix Size (sum of {ranks} ranks)")
    } else {
        "Scaling: Performance vs Matrix Size".to_string()
    };
    let mut p = LinePlot::new(title, "Matrix Size (n for n x n)", "Performance (FLOPS)");
    p.log_x = true;
    p.log_y = true;
    p.markers = true;
    let mut sizes: Vec<f64> = run.cells.iter().map(|s| s.size as f64).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    p.x_ticks = sizes;
    p.x_format = Some(|x| format!("{x:.0}"));
    p.y_format = Some(flops_unit);
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in &run.cells {
        let key = (s.dtype.to_string(), s.device.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (dtype, device) in keys {
        let cells: Vec<&CellSummary> =
            run.cells.iter().filter(|s| s.dtype.to_string() == dtype && s.device == device).collect();
        let points = cells.iter().filter_map(|s| s.job.gflops.map(|g| (s.size as f64, g * 1e9))).collect();
        let kernel = cells.iter().flat_map(|s| &s.per_rank).find_map(|r| r.kernel.clone());
        let name = match kernel {
            Some(k) => format!("{dtype} on {device} ({k})"),
            None => format!("{dtype} on {device}"),
        };
        p.series.push(Series::new(name, points));
    }
    p.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_like_the_tutorial() {
        assert_eq!(flops_unit(191.1e9), "191.10 GFLOPS");
        assert_eq!(flops_unit(11.17e12), "11.17 TFLOPS");
        assert_eq!(flops_unit(950e6), "950.00 MFLOPS");
        assert_eq!(seconds(0.0123), "0.01230");
        assert_eq!(seconds(5.8123), "5.812");
        assert_eq!(seconds(1.234e-5), "0.00001234");
        assert_eq!(seconds(1234.5), "1234");
        assert_eq!(seconds(f64::NAN), "-");
        assert_eq!(gib(0.1875), "0.19");
        assert_eq!(gib(0.000732421875), "0.000732");
        assert_eq!(gib(0.0), "-");
    }
}
