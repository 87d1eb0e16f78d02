//! How a pi run reads: the tutorial's lines, with totals and throughput.

use super::PiRun;
use crate::report::units::si;

/// The lines rank 0 prints, in order.
pub fn lines(run: &PiRun) -> Vec<String> {
    let mut out = Vec::new();
    let (lo, hi) = run.per_rank.iter().fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.samples), hi.max(r.samples)));
    let each = if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
    out.push(format!(
        "Computing {each} samples on each of the {} ranks ({} in total, seed {}, {} thread(s) per rank, {} {})",
        run.ranks, run.samples, run.seed, run.threads_per_rank, run.device, run.isa
    ));
    for r in &run.per_rank {
        out.push(format!("[{}-{}] Local Estimate: {:.8} Error: {:.8}", r.host, r.rank, r.estimate, r.error));
    }
    out.push(format!("Finished computing {} samples in {:.3} seconds", run.samples, run.seconds));
    out.push(format!(
        "Final Estimate: {:.10} Error: {:.10} (standard error {:.10})",
        run.estimate, run.error, run.std_error
    ));
    out.push(format!(
        "Throughput: {}samples/s total, {}samples/s per rank, {}samples/s per thread",
        si(run.samples_per_second),
        si(run.samples_per_second_per_rank),
        si(run.samples_per_second_per_rank / run.threads_per_rank.max(1) as f64)
    ));
    out
}
