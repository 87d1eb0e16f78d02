//! The random stream behind every sample: counter-based, so sample `i` of the
//! global range is a pure function of `(seed, i)`. Ranks and threads may take any
//! slices of the range and the hit count, hence the estimate, stays bit-identical.
//!
//! The range is cut into blocks of [`BLOCK`] samples. Block `b` gets its own key
//! `k_b = mix(seed_key ^ b * C)`, and sample `j` of the block is SplitMix64's
//! `j`-th output from state `k_b`: `mix(k_b + (j + 1) * GAMMA)`. SplitMix64 passes
//! BigCrush, jumps to any position in O(1), and its two 64-bit multiplies per
//! sample vectorise (AVX-512 `vpmullq`), so the generator runs near one sample per
//! cycle. The same integer arithmetic runs on a GPU through libtorch (see `gpu`).
//!
//! A sample is the point `(x, y)` with `x` = the top 31 bits and `y` = the low 31
//! bits of the output; it is inside the quarter circle when `x^2 + y^2 < 2^62`,
//! exact in 64-bit integers.

/// Samples per block (2^16).
pub const BLOCK_BITS: u32 = 16;
pub const BLOCK: u64 = 1 << BLOCK_BITS;

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
/// Spreads block numbers before mixing them with the seed.
pub const BLOCK_MULT: u64 = 0xd1b5_4a32_d192_ed03;
pub const MIX1: u64 = 0xbf58_476d_1ce4_e5b9;
pub const MIX2: u64 = 0x94d0_49bb_1331_11eb;
pub const MASK31: u64 = (1 << 31) - 1;
/// Radius squared of the quarter circle on the 31-bit grid.
pub const R2: u64 = 1 << 62;

/// SplitMix64's finaliser (Stafford's variant 13): a bijective 64-bit mix.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// The key every block's stream is derived from.
#[inline]
pub fn seed_key(seed: u64) -> u64 {
    mix64(seed.wrapping_add(GAMMA))
}

/// The key of block `b`'s stream.
#[inline]
pub fn block_key(seed_key: u64, b: u64) -> u64 {
    mix64(seed_key ^ b.wrapping_mul(BLOCK_MULT))
}

/// The raw 64-bit output for global sample `i`.
#[inline]
pub fn draw(seed: u64, i: u64) -> u64 {
    let key = block_key(seed_key(seed), i >> BLOCK_BITS);
    mix64(key.wrapping_add(((i & (BLOCK - 1)) + 1).wrapping_mul(GAMMA)))
}

/// Whether a raw output lands inside the quarter circle.
#[inline(always)]
pub fn inside(z: u64) -> bool {
    let x = z >> 33;
    let y = z & MASK31;
    x * x + y * y < R2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_splitmix64() {
        // SplitMix64 seeded with 0 yields 0xe220a8397b1dcdaf first (Vigna's reference).
        assert_eq!(mix64(GAMMA), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn blocks_and_seeds_give_different_streams() {
        assert_ne!(draw(1, 0), draw(2, 0));
        assert_ne!(draw(1, 0), draw(1, BLOCK));
        assert_ne!(draw(1, 5), draw(1, 6));
    }

    #[test]
    fn corners_of_the_grid() {
        assert!(inside(0));
        // x = y = 2^31 - 1: far outside.
        assert!(!inside(u64::MAX));
        // x = 2^31 - 1, y = 0: just inside (x^2 < 2^62).
        assert!(inside(MASK31 << 33));
    }
}
