//! How a pi run reads: the tutorial's lines, with totals and throughput.

use super::PiRun;
use crate::report::units::si;

/// The lines rank 0 prints, in order.
pub fn lines(run: &PiRun) -> Vec<String> {
    let mut out = Vec::new();
    let (lo, hi) = run.per_rank.iter().fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.samples), hi.max(r.samples)));
    let each = if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
    let gpu = run.device == "cuda";
    let on = if gpu {
        "each rank's GPU, libtorch tensor ops".to_string()
    } else {
        format!("{} thread(s) per rank, {} {}", run.threads_per_rank, run.device, run.isa)
    };
    out.push(format!(
        "Computing {each} samples on each of the {} ranks ({} in total, seed {}, {on})",
        run.ranks, run.samples, run.seed
    ));
    for r in &run.per_rank {
        out.push(format!("[{}-{}] Local Estimate: {:.8} Error: {:.8}", r.host, r.rank, r.estimate, r.error));
    }
    out.push(format!("Finished computing {} samples in {:.3} seconds", run.samples, run.seconds));
    out.push(format!(
        "Final Estimate: {:.10} Error: {:.10} (standard error {:.10})",
        run.estimate, run.error, run.std_error
    ));
    // CPU threads do none of a GPU rank's sampling: no per-thread figure there.
    let per_thread = if gpu {
        String::new()
    } else {
        format!(", {}samples/s per thread", si(run.samples_per_second_per_rank / run.threads_per_rank.max(1) as f64))
    };
    out.push(format!(
        "Throughput: {}samples/s total, {}samples/s per rank{per_thread}",
        si(run.samples_per_second),
        si(run.samples_per_second_per_rank)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(device: &str, isa: &str) -> PiRun {
        PiRun {
            workload: "pi-mpi".into(),
            version: "0".into(),
            seed: 1,
            samples: 1000,
            ranks: 1,
            nodes: 1,
            threads_per_rank: 16,
            device: device.into(),
            isa: isa.into(),
            block_size: 1,
            hits: 785,
            estimate: 3.125,
            error: 0.0016,
            std_error: 0.05,
            seconds: 1.0,
            samples_per_second: 1000.0,
            samples_per_second_per_rank: 1000.0,
            per_rank: Vec::new(),
        }
    }

    #[test]
    fn a_gpu_run_names_the_gpu_not_cpu_threads() {
        let gpu = lines(&run("cuda", "cuda"));
        assert!(gpu[0].ends_with("seed 1, each rank's GPU, libtorch tensor ops)"), "{}", gpu[0]);
        assert!(!gpu.last().unwrap().contains("per thread"));
        let cpu = lines(&run("cpu", "avx512"));
        assert!(cpu[0].ends_with("16 thread(s) per rank, cpu avx512)"), "{}", cpu[0]);
        assert!(cpu.last().unwrap().ends_with("62.50 samples/s per thread"), "{}", cpu.last().unwrap());
    }
}
