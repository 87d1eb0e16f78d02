//! `pi-mpi`: Monte Carlo estimate of pi over MPI ranks, exact and reproducible.
//!
//! The global sample range `0..samples` is split evenly over ranks (the remainder
//! spread, nothing dropped) and each rank's slice over its threads. Hits are
//! summed as integers, never averaged as ratios, and every sample comes from a
//! counter-based stream (`stream`), so the final estimate depends only on the seed
//! and the sample count.

#[cfg(feature = "torch")]
pub mod gpu;
pub mod kernel;
pub mod output;
pub mod stream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cluster::{share, Cluster};
use crate::device::{self, Device, DeviceRequest};
use crate::report::Progress;

#[derive(Clone, Debug)]
pub struct PiConfig {
    pub samples: u64,
    pub seed: u64,
    pub threads: Option<usize>,
    pub device: DeviceRequest,
    /// Samples per GPU chunk.
    pub chunk: u64,
}

/// One rank's share of the work and what it found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankResult {
    pub host: String,
    pub rank: usize,
    pub device: String,
    pub threads: usize,
    pub first_sample: u64,
    pub samples: u64,
    pub hits: u64,
    pub estimate: f64,
    pub error: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// The whole job's result, as rank 0 reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PiRun {
    pub workload: String,
    pub version: String,
    pub seed: u64,
    pub samples: u64,
    pub ranks: usize,
    pub nodes: usize,
    pub threads_per_rank: usize,
    pub device: String,
    pub isa: String,
    pub block_size: u64,
    pub hits: u64,
    pub estimate: f64,
    pub error: f64,
    /// One standard error of the estimate, 4 sqrt(p (1 - p) / N).
    pub std_error: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub samples_per_second_per_rank: f64,
    pub per_rank: Vec<RankResult>,
}

fn estimate(hits: u64, samples: u64) -> f64 {
    if samples == 0 {
        return f64::NAN;
    }
    4.0 * hits as f64 / samples as f64
}

/// Runs the estimate on every rank; rank 0 gets the job's record, others `None`.
pub fn run(cluster: &Cluster, cfg: &PiConfig) -> Result<Option<PiRun>> {
    let device = cluster.agree(device::resolve(cfg.device, cluster.local_rank()))?;
    let threads = device::apply_threads(cfg.threads, cluster.default_threads());
    let (start, end) = share(cfg.samples, cluster.size(), cluster.rank());

    cluster.barrier();
    let t0 = cluster.wtime();
    let began = Instant::now();
    let local = cluster.agree(count(cfg, device, threads, start, end, cluster.is_root()))?;
    let seconds_local = began.elapsed().as_secs_f64();
    let hits = cluster.sum_u64(local);
    let seconds = cluster.max_f64(cluster.wtime() - t0);

    let n_local = end - start;
    let mine = RankResult {
        host: cluster.host().to_string(),
        rank: cluster.rank(),
        device: device.to_string(),
        threads,
        first_sample: start,
        samples: n_local,
        hits: local,
        estimate: estimate(local, n_local),
        error: (estimate(local, n_local) - std::f64::consts::PI).abs(),
        seconds: seconds_local,
        samples_per_second: n_local as f64 / seconds_local.max(1e-12),
    };
    let Some(per_rank) = cluster.gather(&mine)? else {
        return Ok(None);
    };
    let pi = estimate(hits, cfg.samples);
    let p = std::f64::consts::FRAC_PI_4;
    let rate = cfg.samples as f64 / seconds.max(1e-12);
    let device_name = if device.is_cuda() { "cuda".to_string() } else { "cpu".to_string() };
    Ok(Some(PiRun {
        workload: "pi-mpi".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        seed: cfg.seed,
        samples: cfg.samples,
        ranks: cluster.size(),
        nodes: cluster.nodes(),
        threads_per_rank: threads,
        device: device_name,
        isa: if device.is_cuda() { "cuda".into() } else { kernel::isa().into() },
        block_size: stream::BLOCK,
        hits,
        estimate: pi,
        error: (pi - std::f64::consts::PI).abs(),
        std_error: 4.0 * (p * (1.0 - p) / cfg.samples as f64).sqrt(),
        seconds,
        samples_per_second: rate,
        samples_per_second_per_rank: rate / cluster.size() as f64,
        per_rank,
    }))
}

/// This rank's hit count over `start..end`, with progress shown by rank 0 for
/// long runs (every rank does the same amount of work, so rank 0 speaks for all).
fn count(cfg: &PiConfig, device: Device, threads: usize, start: u64, end: u64, show: bool) -> Result<u64> {
    let mut progress = Progress::new("pi-mpi samples (rank 0)", end - start, show);
    let result = match device {
        Device::Cpu => {
            let done = AtomicU64::new(0);
            let finished = AtomicBool::new(false);
            let me = std::thread::current();
            std::thread::scope(|s| {
                let worker = s.spawn(|| {
                    let h = kernel::count_hits_threaded(cfg.seed, start, end, threads, Some(&done));
                    finished.store(true, Ordering::Release);
                    me.unpark();
                    h
                });
                // Woken at once when the work ends, so short runs pay no polling delay.
                while !finished.load(Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_millis(200));
                    progress.set(done.load(Ordering::Relaxed));
                }
                worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        }
        Device::Cuda(_) => count_gpu(cfg, device, start, end, &mut progress)?,
    };
    progress.finish();
    Ok(result)
}

#[cfg(feature = "torch")]
fn count_gpu(cfg: &PiConfig, device: Device, start: u64, end: u64, progress: &mut Progress) -> Result<u64> {
    gpu::count_hits(cfg.seed, start, end, device.tch(), cfg.chunk, |n| progress.inc(n))
}

#[cfg(not(feature = "torch"))]
fn count_gpu(_: &PiConfig, _: Device, _: u64, _: u64, _: &mut Progress) -> Result<u64> {
    crate::bail_usage!("this build has no GPU support (built without the torch feature); use --device cpu")
}
