//! Is the product right? A cell's speed is only reported once its output agrees
//! with an f64 product of the same inputs: every entry up to n = 512, and beyond
//! that a 16 x 16 grid of entries (first and last rows and columns, so edge tiles
//! are covered, plus spread ones). That costs O(n) per entry, nothing next to
//! the GEMM, and checks the very product that was timed.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::cell::{CellError, Failure};
use super::dtype::Dtype;

/// Up to this side the whole product is checked.
const FULL_CHECK_MAX: usize = 512;
/// Rows (and columns) sampled above it.
const SAMPLES: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Entries of C compared.
    pub entries: usize,
    /// Largest |C - C_f64| / sum_k |a_ik||b_kj| over them.
    pub max_error: f64,
    pub tolerance: f64,
}

/// Row/column indices to compare: all of them for small n, else the first,
/// the last and evenly spread ones in between (deterministic, so every rank
/// and every run checks the same entries).
pub fn indices(n: usize) -> Vec<i64> {
    if n <= FULL_CHECK_MAX {
        return (0..n as i64).collect();
    }
    let last = (n - 1) as i64;
    let mut v: Vec<i64> = (0..SAMPLES as i64).map(|i| i * last / (SAMPLES as i64 - 1)).collect();
    // Off the regular grid too, so a fault with the grid's stride can't hide.
    for (i, x) in v.iter_mut().enumerate().skip(1).take(SAMPLES - 2) {
        *x = (*x + 7 * i as i64 + 3).min(last - 1);
    }
    v.dedup();
    v
}

/// Compares `c` (= a b, as the kernel computed it) with the f64 product of the
/// same `a` and `b`.
pub fn verify(a: &Tensor, b: &Tensor, c: &Tensor, dtype: Dtype) -> Result<Check, CellError> {
    let n = usize::try_from(c.size()[0]).unwrap_or(0);
    let idx = indices(n);
    let on = |t: &Tensor| t.f_to_device(Device::Cpu).and_then(|t| t.f_to_kind(Kind::Double));
    let sel = Tensor::f_from_slice(&idx)?.f_to_device(c.device())?;
    let rows = on(&a.f_index_select(0, &sel)?)?;
    let cols = on(&b.f_index_select(1, &sel)?)?;
    let got = on(&c.f_index_select(0, &sel)?.f_index_select(1, &sel)?)?;
    let exact = rows.f_mm(&cols)?;
    let scale = rows.f_abs()?.f_mm(&cols.f_abs()?)?.f_clamp_min(f64::MIN_POSITIVE)?;
    let finite = got.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0;
    let max_error = got.f_sub(&exact)?.f_abs()?.f_div(&scale)?.f_max()?.f_double_value(&[])?;
    let tolerance = dtype.tolerance();
    let check = Check { entries: idx.len() * idx.len(), max_error, tolerance };
    if !finite {
        return Err(CellError::new(Failure::WrongResult, "wrong result: the product holds NaN or infinite values"));
    }
    // NaN errors fail too.
    if max_error.is_nan() || max_error > tolerance {
        return Err(CellError::new(
            Failure::WrongResult,
            format!(
                "wrong result: the product is off an f64 reference by {max_error:.2e} (relative to sum |a||b|), \
                 more than the {tolerance:.0e} {dtype} allows; no speed is reported for a broken kernel"
            ),
        ));
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_products_are_checked_whole_large_ones_on_a_grid() {
        assert_eq!(indices(3), vec![0, 1, 2]);
        assert_eq!(indices(512).len(), 512);
        let v = indices(8192);
        assert_eq!(v.len(), SAMPLES);
        assert_eq!((v[0], v[SAMPLES - 1]), (0, 8191));
        assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
        let v = indices(513);
        assert!(v.windows(2).all(|w| w[0] < w[1]) && *v.last().unwrap() == 512, "{v:?}");
    }

    fn operands(n: i64, kind: Kind) -> (Tensor, Tensor) {
        tch::manual_seed(3);
        (Tensor::randn([n, n], (kind, Device::Cpu)), Tensor::randn([n, n], (kind, Device::Cpu)))
    }

    #[test]
    fn a_right_product_passes_in_every_type() {
        for (dtype, n) in [(Dtype::F32, 600), (Dtype::Bf16, 300), (Dtype::F32, 64)] {
            let (a, b) = operands(n, dtype.kind());
            let c = a.matmul(&b);
            let check = verify(&a, &b, &c, dtype).unwrap();
            assert!(check.max_error < dtype.tolerance() / 4.0, "{dtype} {n}: {check:?}");
            let side = indices(n as usize).len();
            assert_eq!(check.entries, side * side);
        }
    }

    #[test]
    fn a_broken_product_is_caught() {
        let (a, b) = operands(700, Kind::BFloat16);
        // A transposed operand, one wrong entry on an edge, NaN: all must fail.
        let transposed = a.matmul(&b.tr());
        let e = verify(&a, &b, &transposed, Dtype::Bf16).unwrap_err();
        assert_eq!(e.failure, Failure::WrongResult);
        assert!(e.message.contains("wrong result") && e.message.contains("bf16"), "{}", e.message);
        let corner = a.matmul(&b);
        let _ = corner.get(699).get(699).fill_(1e4);
        assert!(verify(&a, &b, &corner, Dtype::Bf16).is_err());
        let nan = a.matmul(&b);
        let _ = nan.get(0).get(0).fill_(f64::NAN);
        assert!(verify(&a, &b, &nan, Dtype::Bf16).unwrap_err().message.contains("NaN"));
    }
}
