//! The same stream as `stream`, computed with libtorch tensor ops so it runs on a
//! GPU in bounded chunks. libtorch has no unsigned 64-bit shifts, so logical
//! shifts are arithmetic shifts with the sign-extended bits masked off; products
//! wrap in two's complement as the CPU's do. The count is bit-identical to the
//! CPU kernel's (a test runs this path on the CPU device and compares).

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::stream::{seed_key, BLOCK_BITS, BLOCK_MULT, GAMMA, MASK31, MIX1, MIX2, R2};

/// Samples per chunk by default: 2^25 (a few 256 MiB int64 temporaries on the GPU).
pub const DEFAULT_CHUNK: u64 = 1 << 25;

fn lshr(z: &Tensor, s: i64) -> Result<Tensor> {
    Ok(z.f_bitwise_right_shift_tensor_scalar(s)?.f_bitwise_and(((1u64 << (64 - s)) - 1) as i64)?)
}

fn mix64(z: &Tensor) -> Result<Tensor> {
    let z = z.f_bitwise_xor_tensor(&lshr(z, 30)?)?.f_mul_scalar(MIX1 as i64)?;
    let z = z.f_bitwise_xor_tensor(&lshr(&z, 27)?)?.f_mul_scalar(MIX2 as i64)?;
    Ok(z.f_bitwise_xor_tensor(&lshr(&z, 31)?)?)
}

/// Hits among global samples `start..end` computed on `device`, `chunk` at a time.
pub fn count_hits(
    seed: u64,
    start: u64,
    end: u64,
    device: Device,
    chunk: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let sk = seed_key(seed) as i64;
    let mut hits: u64 = 0;
    let mut i = start;
    let chunk = chunk.max(1);
    while i < end {
        let n = chunk.min(end - i);
        let part = (|| -> Result<u64> {
            // Indices fit in i64 up to 2^63 samples; wrap like the CPU beyond.
            let idx = Tensor::f_arange(n as i64, (Kind::Int64, device))?.f_add_scalar(i as i64)?;
            let block = lshr(&idx, BLOCK_BITS as i64)?;
            let j = idx.f_bitwise_and(((1u64 << BLOCK_BITS) - 1) as i64)?;
            let key = mix64(&block.f_mul_scalar(BLOCK_MULT as i64)?.f_bitwise_xor(sk)?)?;
            let state = key.f_add(&j.f_add_scalar(1)?.f_mul_scalar(GAMMA as i64)?)?;
            let z = mix64(&state)?;
            let x = lshr(&z, 33)?;
            let y = z.f_bitwise_and(MASK31 as i64)?;
            let r = x.f_mul(&x)?.f_add(&y.f_mul(&y)?)?;
            let inside = r.f_lt(R2 as i64)?.f_sum(Kind::Int64)?;
            Ok(inside.f_int64_value(&[])? as u64)
        })()
        .with_context(|| format!("drawing samples {i}..{} on {device:?}", i + n))?;
        hits += part;
        i += n;
        progress(n);
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_path_matches_cpu_kernel_bit_for_bit() {
        for (seed, start, end, chunk) in [
            (1u64, 0u64, 300_000u64, 1u64 << 17),
            (7, 65_000, 200_123, 50_000),
            (u64::MAX, 1 << 40, (1 << 40) + 70_000, 1 << 20),
        ] {
            let cpu = super::super::kernel::count_hits(seed, start, end, None);
            let t = count_hits(seed, start, end, Device::Cpu, chunk, |_| {}).unwrap();
            assert_eq!(t, cpu, "seed {seed} {start}..{end}");
        }
    }
}
