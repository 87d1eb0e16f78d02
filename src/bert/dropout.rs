//! Dropout whose masks are pure functions of (seed, step, site, example,
//! position), not draws from a generator's running state.
//!
//! Two things follow. A resumed run draws exactly the masks an uninterrupted
//! one would. And the mask of an example does not depend on which rank holds
//! it or how long its batch is padded, so 2 ranks train exactly like 1 rank
//! with the same global batch, dropout included.
//!
//! It is also much cheaper on the CPU than libtorch's `bernoulli_` (about a
//! tenth of a MiniLM training step there): one multiply-xorshift hash per
//! element, vectorised, written straight into the mask tensor. On a GPU the
//! masks would have to cross the bus, so GPUs use libtorch's own fused dropout
//! (seeded per step: still exact on resume).

use std::sync::OnceLock;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::train::rng::{derive, mix64};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Where in the model a dropout sits; each has its own stream.
#[derive(Clone, Copy, Debug)]
pub enum Site {
    Embeddings,
    AttentionProbs(usize),
    AttentionOutput(usize),
    FeedForwardOutput(usize),
    Head,
    /// RoBERTa's head drops its input too, before the dense layer.
    HeadInput,
}

impl Site {
    fn id(self) -> u64 {
        match self {
            Site::Embeddings => 1,
            Site::Head => 2,
            Site::HeadInput => 3,
            Site::AttentionProbs(l) => 16 + 4 * l as u64,
            Site::AttentionOutput(l) => 17 + 4 * l as u64,
            Site::FeedForwardOutput(l) => 18 + 4 * l as u64,
        }
    }
}

/// How a forward pass drops: not at all (evaluation), with libtorch's
/// generator (GPUs), or with counter-based masks keyed by each example's
/// index in the training set (CPUs).
pub enum Dropout<'a> {
    Off,
    Torch,
    Keyed(&'a DropoutKeys),
}

impl Dropout<'_> {
    pub fn is_on(&self) -> bool {
        !matches!(self, Dropout::Off)
    }

    /// `x` with dropout `p` at `site`. `x` is `[batch, positions, features]`
    /// (float32), positions starting at 0.
    pub fn apply(&self, x: &Tensor, p: f64, site: Site) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.shallow_clone());
        }
        match self {
            Dropout::Off => Ok(x.shallow_clone()),
            Dropout::Torch => Ok(x.f_dropout(p, true)?),
            Dropout::Keyed(keys) => {
                let size = x.size();
                let (b, t, c) = (size[0], size[1], size[2]);
                let mask = keys.mask(&[b, t, c], p, site, x.device(), |_, _| 0)?;
                Ok(x.f_mul(&mask)?)
            }
        }
    }

    /// Attention probabilities `[batch, heads, queries, keys]` with dropout
    /// `p`; `query_positions[i]` is the sequence position of query row `i`.
    pub fn apply_attention(&self, probs: &Tensor, p: f64, site: Site, query_positions: &[i64]) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(probs.shallow_clone());
        }
        match self {
            Dropout::Off => Ok(probs.shallow_clone()),
            Dropout::Torch => Ok(probs.f_dropout(p, true)?),
            Dropout::Keyed(keys) => {
                let size = probs.size();
                let stride = keys.max_positions as u64;
                let mask = keys.mask(&size, p, site, probs.device(), |head, row| {
                    let q = query_positions.get(row as usize).map(|&p| p as u64).unwrap_or(row);
                    (head * stride + q) * stride
                })?;
                Ok(probs.f_mul(&mask)?)
            }
        }
    }
}

/// The keys of one training step: the step's stream and the training-set
/// index of every example in this rank's batch.
pub struct DropoutKeys {
    step: u64,
    examples: Vec<u64>,
    /// Counters are laid out as if every sequence had this many positions, so
    /// they don't move with the padded length of a batch.
    max_positions: i64,
}

impl DropoutKeys {
    pub fn new(seed: u64, step: u64, examples: Vec<u64>, max_positions: i64) -> DropoutKeys {
        DropoutKeys { step: derive(seed, "dropout", step), examples, max_positions }
    }

    /// A `[examples, a, rows, row_len]` (or `[examples, rows, row_len]`) mask of
    /// 0 and `1/(1-p)`. Row `r` of slice `a` of example `e` uses counters
    /// `first(a, r) + 0..row_len` of the stream `(step, site, e)`. For 3-d
    /// shapes `first` gets `(0, r)`; the default layout is `r * row_len`.
    fn mask(
        &self,
        shape: &[i64],
        p: f64,
        site: Site,
        device: Device,
        first: impl Fn(u64, u64) -> u64,
    ) -> Result<Tensor> {
        let mask = Tensor::f_empty(shape, (Kind::Float, Device::Cpu))?;
        let numel = mask.numel();
        let row_len = *shape.last().unwrap_or(&1) as usize;
        let (slices, rows) = match shape.len() {
            3 => (1u64, shape[1] as u64),
            4 => (shape[1] as u64, shape[2] as u64),
            n => anyhow::bail!("dropout mask of {n} dimensions"),
        };
        let four_d = shape.len() == 4;
        let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        let scale = (1.0 / (1.0 - p)) as f32;
        // SAFETY: `mask` is a fresh contiguous CPU float tensor of `numel`
        // elements that nothing else references until we return it.
        let out = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, numel) };
        let fill = kernel();
        let mut chunks = out.chunks_exact_mut(row_len.max(1));
        for &example in self.examples.iter().take(shape[0] as usize) {
            let key = mix64(self.step ^ mix64(site.id().wrapping_mul(GAMMA) ^ mix64(example)));
            for a in 0..slices {
                for r in 0..rows {
                    let start = if four_d { first(a, r) } else { r * row_len as u64 };
                    if let Some(chunk) = chunks.next() {
                        // SAFETY: `fill` was chosen for features this CPU has.
                        unsafe { fill(chunk, key, start, threshold, scale) };
                    }
                }
            }
        }
        crate::device::upload(&mask, device)
    }
}

type FillFn = unsafe fn(&mut [f32], u64, u64, u32, f32);

#[inline(always)]
fn fill_row(out: &mut [f32], key: u64, first: u64, threshold: u32, scale: f32) {
    for (i, o) in out.iter_mut().enumerate() {
        let u = (mix64(key ^ (first + i as u64).wrapping_mul(GAMMA)) >> 32) as u32;
        *o = if u >= threshold { scale } else { 0.0 };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
unsafe fn fill_avx512(out: &mut [f32], key: u64, first: u64, threshold: u32, scale: f32) {
    fill_row(out, key, first, threshold, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(out: &mut [f32], key: u64, first: u64, threshold: u32, scale: f32) {
    fill_row(out, key, first, threshold, scale)
}

unsafe fn fill_baseline(out: &mut [f32], key: u64, first: u64, threshold: u32, scale: f32) {
    fill_row(out, key, first, threshold, scale)
}

/// The widest version of the fill loop this CPU runs; all give the same bits.
fn kernel() -> FillFn {
    static BEST: OnceLock<FillFn> = OnceLock::new();
    *BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
            {
                return fill_avx512 as FillFn;
            }
            if is_x86_feature_detected!("avx2") {
                return fill_avx2 as FillFn;
            }
        }
        fill_baseline as FillFn
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones(shape: &[i64]) -> Tensor {
        Tensor::ones(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn drops_about_p_and_scales_the_rest() {
        let keys = DropoutKeys::new(7, 3, (0..16).collect(), 512);
        let y = Dropout::Keyed(&keys).apply(&ones(&[16, 128, 384]), 0.1, Site::Embeddings).unwrap();
        let kept = y.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.9).abs() < 0.002, "{kept}");
        let max = y.max().double_value(&[]);
        assert!((max - 1.0 / 0.9).abs() < 1e-6);
        let total = y.sum(Kind::Double).double_value(&[]);
        assert!((total / (16.0 * 128.0 * 384.0) - 1.0).abs() < 0.01);
    }

    #[test]
    fn masks_follow_the_example_not_the_batch_or_its_padding() {
        let all = DropoutKeys::new(1, 5, vec![10, 11, 12, 13], 512);
        let part = DropoutKeys::new(1, 5, vec![12, 13], 512);
        let a = Dropout::Keyed(&all).apply(&ones(&[4, 20, 8]), 0.3, Site::AttentionOutput(2)).unwrap();
        let b = Dropout::Keyed(&part).apply(&ones(&[2, 12, 8]), 0.3, Site::AttentionOutput(2)).unwrap();
        assert!(a.narrow(0, 2, 2).narrow(1, 0, 12).equal(&b));
        let pa = Dropout::Keyed(&all).apply_attention(&ones(&[4, 3, 20, 20]), 0.3, Site::AttentionProbs(0), &[]);
        let pb = Dropout::Keyed(&part).apply_attention(&ones(&[2, 3, 12, 12]), 0.3, Site::AttentionProbs(0), &[]);
        assert!(pa.unwrap().narrow(0, 2, 2).narrow(2, 0, 12).narrow(3, 0, 12).equal(&pb.unwrap()));
        // The [CLS]-only query row of the last layer sees row 0's mask.
        let cls = Dropout::Keyed(&part).apply_attention(&ones(&[2, 3, 1, 12]), 0.3, Site::AttentionProbs(0), &[0]);
        let full = Dropout::Keyed(&part).apply_attention(&ones(&[2, 3, 12, 12]), 0.3, Site::AttentionProbs(0), &[]);
        assert!(cls.unwrap().equal(&full.unwrap().narrow(2, 0, 1)));
        // Other sites, steps and seeds draw other masks.
        let c = Dropout::Keyed(&all).apply(&ones(&[4, 20, 8]), 0.3, Site::FeedForwardOutput(2)).unwrap();
        assert!(!a.equal(&c));
        let later = DropoutKeys::new(1, 6, vec![10, 11, 12, 13], 512);
        let d = Dropout::Keyed(&later).apply(&ones(&[4, 20, 8]), 0.3, Site::AttentionOutput(2)).unwrap();
        assert!(!a.equal(&d));
    }

    #[test]
    fn off_and_zero_p_are_identity() {
        let x = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu));
        assert!(Dropout::Off.apply(&x, 0.5, Site::Head).unwrap().equal(&x));
        let keys = DropoutKeys::new(1, 1, vec![0, 1], 512);
        assert!(Dropout::Keyed(&keys).apply(&x, 0.0, Site::Head).unwrap().equal(&x));
    }
}
