//! `matmul-scaling`: GEMM throughput over matrix sizes, element types and
//! devices, per rank and summed over nodes and the job.
//!
//! Every rank runs the same cells (device x type x size) in lock-step: a barrier
//! before every product, so ranks sharing a node or a job really compute at the
//! same time and their sum is what the node delivers. Each cell is warmed up,
//! timed `repeats` times with the device synchronised, and its product checked
//! against an f64 reference. A failing cell (out of memory, unsupported type,
//! wrong product) is recorded and the sweep goes on. After each cell rank 0
//! gathers every rank's record and sums them.

pub mod cell;
pub mod check;
pub mod config;
pub mod dtype;
pub mod output;
pub mod peak;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::usage;
use crate::cluster::Cluster;
use crate::device::{self, CpuFeatures, Device, GpuInfo};
use cell::{Cell, CellError, Failure, MemoryLimit};
use check::Check;
pub use config::MatmulConfig;
use config::{flops, memory_bytes, GIB};
pub use dtype::Dtype;
use peak::{CpuClock, Peak};

/// One rank's result for one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRecord {
    pub host: String,
    pub rank: usize,
    pub device: String,
    pub dtype: Dtype,
    pub size: usize,
    pub memory_gib: f64,
    pub kernel: Option<String>,
    /// Seconds of each timed product, in the order run.
    pub times_s: Vec<f64>,
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// 2 n^3 / median time, in GFLOPS.
    pub gflops: Option<f64>,
    /// 2 n^3 / fastest time.
    pub gflops_best: Option<f64>,
    pub peak: Option<Peak>,
    pub percent_of_peak: Option<f64>,
    pub check: Option<Check>,
    pub error: Option<CellError>,
}

impl CellRecord {
    fn new(
        cluster: &Cluster,
        cell: &Cell,
        kernel: Option<String>,
        peak: Option<Peak>,
        result: Result<cell::Measured, CellError>,
    ) -> CellRecord {
        let mut r = CellRecord {
            host: cluster.host().to_string(),
            rank: cluster.rank(),
            device: cell.device.to_string(),
            dtype: cell.dtype,
            size: cell.size,
            memory_gib: memory_bytes(cell.size, cell.dtype) as f64 / GIB,
            kernel,
            times_s: Vec::new(),
            median_s: None,
            min_s: None,
            max_s: None,
            gflops: None,
            gflops_best: None,
            peak: None,
            percent_of_peak: None,
            check: None,
            error: None,
        };
        match result {
            Ok(m) => {
                let (median, min, max) = stats(&m.times);
                let rate = |t: f64| flops(cell.size) / t / 1e9;
                r.gflops = Some(rate(median));
                r.gflops_best = Some(rate(min));
                r.percent_of_peak = peak.as_ref().map(|p| 100.0 * rate(median) / p.gflops);
                (r.median_s, r.min_s, r.max_s) = (Some(median), Some(min), Some(max));
                r.times_s = m.times;
                r.check = Some(m.check);
                r.peak = peak;
            }
            Err(e) => r.error = Some(e),
        }
        r
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Median (mean of the middle two for an even count), min and max.
pub fn stats(times: &[f64]) -> (f64, f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 { t[n / 2] } else { (t[n / 2 - 1] + t[n / 2]) / 2.0 };
    (median, t[0], t[n - 1])
}

/// A cell summed over the ranks of one node, or of the whole job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Aggregate {
    /// The host, or "job".
    pub name: String,
    pub ranks: usize,
    pub ranks_ok: usize,
    pub memory_gib: f64,
    /// The slowest rank's median.
    pub max_median_s: Option<f64>,
    /// Sum of the ranks' GFLOPS (each from its median time).
    pub gflops: Option<f64>,
    pub gflops_best: Option<f64>,
    /// Sum of the ranks' peaks, where every rank that ran has one.
    pub peak_gflops: Option<f64>,
    pub percent_of_peak: Option<f64>,
}

impl Aggregate {
    fn of<'a>(name: &str, records: impl Iterator<Item = &'a CellRecord>) -> Aggregate {
        let records: Vec<&CellRecord> = records.collect();
        let ok: Vec<&&CellRecord> = records.iter().filter(|r| r.ok()).collect();
        let sum = |f: fn(&CellRecord) -> Option<f64>| -> Option<f64> {
            (!ok.is_empty()).then(|| ok.iter().filter_map(|r| f(r)).sum())
        };
        let gflops = sum(|r| r.gflops);
        let peak_gflops =
            if ok.iter().all(|r| r.peak.is_some()) { sum(|r| r.peak.as_ref().map(|p| p.gflops)) } else { None };
        Aggregate {
            name: name.to_string(),
            ranks: records.len(),
            ranks_ok: ok.len(),
            memory_gib: records.iter().map(|r| r.memory_gib).sum(),
            max_median_s: ok.iter().filter_map(|r| r.median_s).reduce(f64::max),
            gflops,
            gflops_best: sum(|r| r.gflops_best),
            peak_gflops,
            percent_of_peak: gflops.zip(peak_gflops).map(|(g, p)| 100.0 * g / p),
        }
    }
}

/// Everything about one cell: each rank's record and the sums.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellSummary {
    /// `cpu` or `cuda` (ranks may each have their own GPU).
    pub device: String,
    pub dtype: Dtype,
    pub size: usize,
    pub per_rank: Vec<CellRecord>,
    /// One per node, in order of first rank.
    pub nodes: Vec<Aggregate>,
    pub job: Aggregate,
}

impl CellSummary {
    fn new(cell: &Cell, per_rank: Vec<CellRecord>) -> CellSummary {
        let mut hosts: Vec<&str> = Vec::new();
        for r in &per_rank {
            if !hosts.contains(&r.host.as_str()) {
                hosts.push(&r.host);
            }
        }
        let nodes = hosts.iter().map(|h| Aggregate::of(h, per_rank.iter().filter(|r| r.host == *h))).collect();
        let job = Aggregate::of("job", per_rank.iter());
        let device = if cell.device.is_cuda() { "cuda" } else { "cpu" };
        CellSummary { device: device.into(), dtype: cell.dtype, size: cell.size, nodes, job, per_rank }
    }
}

/// How one rank is set up: its devices, GPUs and peaks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankSetup {
    pub host: String,
    pub rank: usize,
    pub threads: usize,
    pub devices: Vec<DeviceSetup>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceSetup {
    pub device: String,
    pub gpu: Option<GpuInfo>,
    /// Per requested type: the kernel libtorch runs, or why the type can't run here.
    pub kernels: Vec<(Dtype, Result<String, String>)>,
    pub peaks: Vec<(Dtype, Option<Peak>)>,
}

/// What rank 0 found about the software and the CPU, for the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct System {
    pub libtorch: Option<String>,
    pub cuda: Option<String>,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub cpu_features: String,
    pub cpu_clock: Option<CpuClock>,
    pub ranks: usize,
    pub nodes: usize,
}

/// The whole run, as rank 0 reports it (and `--json` writes it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatmulRun {
    pub workload: String,
    pub version: String,
    pub config: MatmulConfig,
    pub system: System,
    pub ranks: Vec<RankSetup>,
    pub cells: Vec<CellSummary>,
    /// Cells (per rank) that measured a speed, and that failed.
    pub cells_ok: usize,
    pub cells_failed: usize,
}

/// What the sweep tells rank 0 as it goes, so it can print progress.
pub enum Event<'a> {
    Setup { system: &'a System, ranks: &'a [RankSetup] },
    Start { cell: &'a Cell, kernel: Option<&'a str> },
    Done(&'a CellSummary),
}

/// The result on every rank: the record on rank 0, and the job's cell counts
/// (known everywhere, so every rank reaches the same verdict).
pub struct Outcome {
    pub run: Option<MatmulRun>,
    pub ok: u64,
    pub failed: u64,
    /// Failures that were not "unsupported" (memory, wrong results, errors).
    pub failed_hard: u64,
}

impl Outcome {
    /// Succeeds if any cell measured a speed. Otherwise an error every rank
    /// agrees on: exit 2 if all that failed was asking for types the devices
    /// don't have (a usage error), else 1.
    pub fn verdict(&self, cluster: &Cluster) -> Result<()> {
        let local = if self.ok > 0 {
            Ok(())
        } else if self.failed_hard == 0 {
            Err(usage(format!(
                "every cell failed ({} in all): no requested type runs on the requested device; see the errors above",
                self.failed
            )))
        } else {
            Err(anyhow::anyhow!("every cell failed ({} in all): see the errors above", self.failed))
        };
        // Every rank holds the same counts, hence the same error: said once.
        cluster.agree(local)
    }
}

/// Runs the sweep on every rank; `on_event` is called on rank 0 only.
pub fn run(cluster: &Cluster, cfg: &MatmulConfig, mut on_event: impl FnMut(Event)) -> Result<Outcome> {
    let devices = cluster.agree(resolve_devices(cfg, cluster.local_rank()))?;
    let share = cluster.default_threads();
    let threads = device::apply_threads(cfg.threads, share);
    let features = CpuFeatures::detect();
    let clock = if devices.contains(&Device::Cpu) { CpuClock::detect(threads, share) } else { None };
    let setup = RankSetup {
        host: cluster.host().to_string(),
        rank: cluster.rank(),
        threads,
        devices: devices.iter().map(|d| device_setup(cfg, *d, &features, clock.as_ref())).collect(),
    };
    let setups = cluster.gather(&setup)?;
    let system = System {
        libtorch: device::libtorch_version(),
        cuda: device::cuda_version(),
        cpu_model: device::cpu_model(),
        cpu_cores: crate::cluster::cpus::own_physical_cores(),
        cpu_features: features.summary(),
        cpu_clock: clock,
        ranks: cluster.size(),
        nodes: cluster.nodes(),
    };
    if let Some(ranks) = &setups {
        on_event(Event::Setup { system: &system, ranks });
    }

    let mut cells = Vec::new();
    let (mut ok, mut failed, mut failed_hard) = (0u64, 0u64, 0u64);
    for (d, dev) in setup.devices.iter().enumerate() {
        let limit = memory_limit(cfg, devices[d], cluster.local_size());
        for (dtype, kernel) in &dev.kernels {
            let peak = dev.peaks.iter().find(|(t, _)| t == dtype).and_then(|(_, p)| p.clone());
            for &size in &cfg.sizes {
                let cell = Cell { device: devices[d], dtype: *dtype, size };
                let ready = match kernel {
                    Ok(_) => cell::fits(&cell, limit.as_ref()),
                    Err(why) => Err(CellError::new(Failure::Unsupported, format!("{dtype} on {}: {why}", cell.device))),
                };
                if cluster.is_root() {
                    on_event(Event::Start { cell: &cell, kernel: kernel.as_deref().ok() });
                }
                let result = cell::measure(&cell, ready, cfg.warmup, cfg.repeats, cfg.seed, &|| cluster.barrier());
                match &result {
                    Ok(_) => ok += 1,
                    Err(e) if e.failure == Failure::Unsupported => failed += 1,
                    Err(_) => (failed, failed_hard) = (failed + 1, failed_hard + 1),
                }
                let record = CellRecord::new(cluster, &cell, kernel.clone().ok(), peak.clone(), result);
                if let Some(per_rank) = cluster.gather(&record)? {
                    let summary = CellSummary::new(&cell, per_rank);
                    on_event(Event::Done(&summary));
                    cells.push(summary);
                }
            }
        }
    }
    let (ok, failed, failed_hard) = (cluster.sum_u64(ok), cluster.sum_u64(failed), cluster.sum_u64(failed_hard));
    let run = setups.map(|ranks| MatmulRun {
        workload: "matmul-scaling".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        config: cfg.clone(),
        system,
        ranks,
        cells,
        cells_ok: ok as usize,
        cells_failed: failed as usize,
    });
    Ok(Outcome { run, ok, failed, failed_hard })
}

/// The devices this rank runs on, in the order asked, each once.
fn resolve_devices(cfg: &MatmulConfig, local_rank: usize) -> Result<Vec<Device>> {
    let mut out = Vec::new();
    for req in &cfg.devices {
        let d = device::resolve(*req, local_rank)?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn device_setup(cfg: &MatmulConfig, device: Device, cpu: &CpuFeatures, clock: Option<&CpuClock>) -> DeviceSetup {
    let gpu = match device {
        Device::Cuda(i) => device::gpu_info(i),
        Device::Cpu => None,
    };
    let has_mkl = tch::utils::has_mkl();
    let kernels = cfg
        .dtypes
        .iter()
        .map(|&t| {
            let k = match device {
                Device::Cpu => cpu.kernel(t, has_mkl),
                Device::Cuda(_) => Ok(peak::gpu_kernel(t).to_string()),
            };
            (t, k)
        })
        .collect();
    let peaks = cfg
        .dtypes
        .iter()
        .map(|&t| {
            let given = cfg.peak.get(t).map(|g| Peak { gflops: g, source: "--peak-gflops".into() });
            let known = || match device {
                Device::Cpu => clock.and_then(|c| c.peak(cpu, t)),
                Device::Cuda(_) => gpu.as_ref().and_then(|g| peak::gpu_peak(&g.name, t)),
            };
            (t, given.or_else(known))
        })
        .collect();
    DeviceSetup { device: device.to_string(), gpu, kernels, peaks }
}

/// The memory a cell may take on `device`: `--max-memory-gb` if given, else on
/// the CPU what the host has available shared among the node's ranks (a CPU
/// allocation beyond it would not fail cleanly: Linux overcommits, then its OOM
/// killer ends the process), and no limit on a GPU, whose out-of-memory
/// libtorch reports as an error the cell survives.
fn memory_limit(cfg: &MatmulConfig, device: Device, local_size: usize) -> Option<MemoryLimit> {
    if let Some(gib) = cfg.max_memory_gib {
        return Some(MemoryLimit { gib, what: "the --max-memory-gb limit".into() });
    }
    if device.is_cuda() {
        return None;
    }
    let avail = device::host_memory_available()? as f64 / GIB / local_size.max(1) as f64;
    let what = if local_size > 1 {
        format!("this node's available memory shared by its {local_size} ranks")
    } else {
        "this node's available memory".to_string()
    };
    Some(MemoryLimit { gib: avail, what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(stats(&[5.0]), (5.0, 5.0, 5.0));
        assert!(stats(&[]).0.is_nan());
    }

    fn record(host: &str, rank: usize, gflops: Option<f64>, peak: Option<f64>) -> CellRecord {
        CellRecord {
            host: host.into(),
            rank,
            device: "cpu".into(),
            dtype: Dtype::F32,
            size: 1024,
            memory_gib: 0.01171875,
            kernel: Some("MKL sgemm".into()),
            times_s: vec![],
            median_s: gflops.map(|g| flops(1024) / g / 1e9),
            min_s: None,
            max_s: None,
            gflops,
            gflops_best: gflops,
            peak: peak.map(|p| Peak { gflops: p, source: "test".into() }),
            percent_of_peak: None,
            check: None,
            error: gflops.is_none().then(|| CellError::new(Failure::OutOfMemory, "out of memory")),
        }
    }

    #[test]
    fn sums_ranks_per_node_and_job() {
        let cell = Cell { device: Device::Cpu, dtype: Dtype::F32, size: 1024 };
        let s = CellSummary::new(
            &cell,
            vec![
                record("a", 0, Some(100.0), Some(200.0)),
                record("a", 1, Some(50.0), Some(200.0)),
                record("b", 2, None, Some(200.0)),
                record("b", 3, Some(150.0), Some(200.0)),
            ],
        );
        assert_eq!(s.nodes.len(), 2);
        assert_eq!((s.nodes[0].name.as_str(), s.nodes[0].gflops), ("a", Some(150.0)));
        assert_eq!(s.nodes[0].percent_of_peak, Some(37.5));
        assert_eq!((s.nodes[1].ranks, s.nodes[1].ranks_ok, s.nodes[1].gflops), (2, 1, Some(150.0)));
        assert_eq!((s.job.ranks, s.job.ranks_ok, s.job.gflops), (4, 3, Some(300.0)));
        assert_eq!(s.job.peak_gflops, Some(600.0));
        assert_eq!(s.job.memory_gib, 4.0 * 0.01171875);
        let slowest = s.per_rank[1].median_s;
        assert_eq!(s.job.max_median_s, slowest);
        // No peak on a rank that ran: no percentage for the sum.
        let s = CellSummary::new(&cell, vec![record("a", 0, Some(1.0), None), record("a", 1, Some(1.0), Some(2.0))]);
        assert_eq!((s.job.peak_gflops, s.job.percent_of_peak), (None, None));
        // Nothing ran: nothing summed.
        let s = CellSummary::new(&cell, vec![record("a", 0, None, Some(1.0))]);
        assert_eq!((s.job.gflops, s.job.ranks_ok), (None, 0));
    }
}
