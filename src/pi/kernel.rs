//! Counting hits over a slice of the global sample range, on CPU threads.
//!
//! The inner loop is plain integer code that LLVM vectorises; it is compiled
//! three times (AVX-512, AVX2, baseline) and the best one the CPU supports is
//! picked at run time, so one portable binary runs at full width everywhere.
//! All three compute exactly the same count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::stream::{block_key, inside, mix64, seed_key, BLOCK, BLOCK_BITS, GAMMA};

type BlockFn = unsafe fn(u64, u64, u64) -> u64;

/// Hits among samples `j0..j1` of the block whose key is `key`.
#[inline(always)]
fn count_in_block(key: u64, j0: u64, j1: u64) -> u64 {
    let mut state = key.wrapping_add((j0 + 1).wrapping_mul(GAMMA));
    let mut hits = 0u64;
    for _ in j0..j1 {
        hits += u64::from(inside(mix64(state)));
        state = state.wrapping_add(GAMMA);
    }
    hits
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
unsafe fn count_avx512(key: u64, j0: u64, j1: u64) -> u64 {
    count_in_block(key, j0, j1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_avx2(key: u64, j0: u64, j1: u64) -> u64 {
    count_in_block(key, j0, j1)
}

unsafe fn count_baseline(key: u64, j0: u64, j1: u64) -> u64 {
    count_in_block(key, j0, j1)
}

/// The instruction set the kernel runs with on this CPU.
pub fn isa() -> &'static str {
    best().0
}

fn best() -> (&'static str, BlockFn) {
    static BEST: OnceLock<(&'static str, BlockFn)> = OnceLock::new();
    *BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var("HPCML_PI_ISA").as_deref() != Ok("baseline") {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512bw")
                    && std::env::var("HPCML_PI_ISA").as_deref() != Ok("avx2")
                {
                    return ("avx512", count_avx512 as BlockFn);
                }
                if is_x86_feature_detected!("avx2") {
                    return ("avx2", count_avx2 as BlockFn);
                }
            }
        }
        ("baseline", count_baseline as BlockFn)
    })
}

/// Hits among global samples `start..end` for `seed`, on the calling thread.
/// `done` is advanced block by block so another thread can show progress.
pub fn count_hits(seed: u64, start: u64, end: u64, done: Option<&AtomicU64>) -> u64 {
    let f = best().1;
    let sk = seed_key(seed);
    let mut hits = 0;
    let mut i = start;
    while i < end {
        let b = i >> BLOCK_BITS;
        let block_end = ((b + 1) << BLOCK_BITS).min(end);
        let j0 = i & (BLOCK - 1);
        let j1 = j0 + (block_end - i);
        // SAFETY: `best` only returns a function whose target features this CPU has.
        hits += unsafe { f(block_key(sk, b), j0, j1) };
        if let Some(d) = done {
            d.fetch_add(block_end - i, Ordering::Relaxed);
        }
        i = block_end;
    }
    hits
}

/// Hits among `start..end` split over `threads` threads; the count does not depend
/// on the split.
pub fn count_hits_threaded(seed: u64, start: u64, end: u64, threads: usize, done: Option<&AtomicU64>) -> u64 {
    let threads = threads.max(1);
    if threads == 1 {
        return count_hits(seed, start, end, done);
    }
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (a, b) = crate::cluster::share(end - start, threads, t);
                s.spawn(move || count_hits(seed, start + a, start + b, done))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::super::stream::draw;
    use super::*;

    fn reference(seed: u64, start: u64, end: u64) -> u64 {
        (start..end).filter(|&i| inside(draw(seed, i))).count() as u64
    }

    #[test]
    fn vector_kernel_matches_the_definition() {
        for (seed, start, end) in [(1, 0, 200_000), (7, 65_530, 65_541), (9, 3 * BLOCK - 3, 5 * BLOCK + 17), (3, 5, 5)]
        {
            assert_eq!(count_hits(seed, start, end, None), reference(seed, start, end), "seed {seed} {start}..{end}");
        }
    }

    #[test]
    fn every_isa_gives_the_same_count() {
        let key = block_key(seed_key(11), 3);
        let base = unsafe { count_baseline(key, 17, BLOCK) };
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                assert_eq!(unsafe { count_avx2(key, 17, BLOCK) }, base);
            }
            if is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
            {
                assert_eq!(unsafe { count_avx512(key, 17, BLOCK) }, base);
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_the_count() {
        let n = 3_000_017;
        let one = count_hits_threaded(5, 0, n, 1, None);
        for t in [2, 3, 8] {
            assert_eq!(count_hits_threaded(5, 0, n, t, None), one, "{t} threads");
        }
        let done = AtomicU64::new(0);
        count_hits_threaded(5, 10, n, 3, Some(&done));
        assert_eq!(done.load(Ordering::Relaxed), n - 10);
    }

    #[test]
    fn estimate_is_within_a_few_standard_errors() {
        let n = 20_000_000u64;
        let p = std::f64::consts::PI / 4.0;
        let sigma = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
        for seed in [1u64, 2, 3, 42, 12345] {
            let est = 4.0 * count_hits_threaded(seed, 0, n, 2, None) as f64 / n as f64;
            let z = (est - std::f64::consts::PI).abs() / sigma;
            assert!(z < 4.5, "seed {seed}: estimate {est} is {z:.1} standard errors off");
        }
    }

    #[test]
    fn generator_is_uniform_and_uncorrelated() {
        // Chi-square over 64 bins of x, of y, and over an 8x8 grid of (x, y);
        // 1% critical value for 63 degrees of freedom is 92.0.
        let n = 1_000_000u64;
        let mut bx = [0u64; 64];
        let mut by = [0u64; 64];
        let mut bxy = [0u64; 64];
        for i in 0..n {
            let z = draw(77, i);
            let x = z >> 33;
            let y = z & super::super::stream::MASK31;
            bx[(x >> 25) as usize] += 1;
            by[(y >> 25) as usize] += 1;
            bxy[((x >> 28) * 8 + (y >> 28)) as usize] += 1;
        }
        let chi = |bins: &[u64; 64]| {
            let e = n as f64 / 64.0;
            bins.iter().map(|&o| (o as f64 - e).powi(2) / e).sum::<f64>()
        };
        for (name, bins) in [("x", &bx), ("y", &by), ("x,y", &bxy)] {
            let c = chi(bins);
            assert!(c < 92.0, "{name}: chi-square {c:.1} over 63 degrees of freedom");
        }
        // Consecutive samples must not be correlated (lag-1 correlation of x).
        let xs: Vec<f64> = (0..n).map(|i| (draw(77, i) >> 33) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        let cov = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>();
        assert!((cov / var).abs() < 5.0 / (n as f64).sqrt(), "lag-1 correlation {}", cov / var);
    }
}
