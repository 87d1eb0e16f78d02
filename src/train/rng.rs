//! Counter-based randomness for training: the shuffle of epoch `e` and the seed
//! of step `s` are pure functions of the run's seed, so an interrupted and
//! resumed run draws exactly what an uninterrupted one would.

use std::ops::Range;

/// SplitMix64's finaliser: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast generator for shuffles (SplitMix64).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for
    /// the data set sizes we shuffle).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed derived from the run's seed and a stream name and number, e.g.
/// `derive(seed, "dropout", step)`.
pub fn derive(seed: u64, stream: &str, n: u64) -> u64 {
    let mut h = mix64(seed ^ 0x5851_f42d_4c95_7f2d);
    for b in stream.bytes() {
        h = mix64(h ^ u64::from(b));
    }
    mix64(h ^ mix64(n.wrapping_add(1)))
}

/// The order in which epoch `epoch` visits `n` examples (Fisher-Yates).
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(derive(seed, "shuffle", epoch));
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// An inverted-dropout mask for rows `rows` of a `[batch, width]` activation:
/// each element is 0 with probability `drop`, else `1 / (1 - drop)`. Element
/// `(row, col)` is a pure function of `(key, row, col)`, with `row` the example's
/// index in the global batch: a rank holding rows 32..64 draws exactly what one
/// process holding the whole batch draws for them, so data-parallel training
/// with dropout matches a single process. Make `key` per step and layer, e.g.
/// `derive(seed, "dropout", step)`.
pub fn dropout_mask(key: u64, rows: Range<usize>, width: usize, drop: f64) -> Vec<f32> {
    let keep = 1.0 - drop;
    let scale = if keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 };
    let mut out = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let mut g = SplitMix64::new(mix64(key ^ mix64(row as u64 + 1)));
        out.extend((0..width).map(|_| if g.unit() < keep { scale } else { 0.0 }));
    }
    out
}

/// Seeds libtorch's generators (CPU and CUDA) for one step, so dropout masks
/// depend on `(seed, step)` only.
pub fn seed_torch_for_step(seed: u64, step: u64) {
    tch::manual_seed((derive(seed, "torch", step) >> 1) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_that_depend_on_seed_and_epoch() {
        let a = epoch_order(1, 0, 1000);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(1, 0, 1000));
        assert_ne!(a, epoch_order(1, 1, 1000));
        assert_ne!(a, epoch_order(2, 0, 1000));
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn dropout_rows_do_not_depend_on_the_shard() {
        let key = derive(66478, "dropout", 12);
        let whole = dropout_mask(key, 0..64, 512, 0.5);
        let (a, b) = (dropout_mask(key, 0..21, 512, 0.5), dropout_mask(key, 21..64, 512, 0.5));
        assert_eq!(whole, [a, b].concat());
        assert!(whole.iter().all(|&m| m == 0.0 || m == 2.0));
        let kept = whole.iter().filter(|&&m| m > 0.0).count() as f64 / whole.len() as f64;
        assert!((kept - 0.5).abs() < 0.02, "{kept}");
        assert_ne!(whole, dropout_mask(derive(66478, "dropout", 13), 0..64, 512, 0.5));
        assert!(dropout_mask(key, 0..2, 8, 0.0).iter().all(|&m| m == 1.0));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.below(7) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|s| *s));
        let u = r.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
