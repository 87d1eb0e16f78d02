//! What a run is asked to do, the parsers for what users type, and the
//! arithmetic every cell is reported with (FLOPs, memory).

use serde::{Deserialize, Serialize};

use super::dtype::Dtype;
use crate::cli::parse_count;
use crate::device::DeviceRequest;

/// The largest matrix side accepted: 2^20 (a 2^20 x 2^20 f32 matrix is 4 TiB).
pub const MAX_SIZE: u64 = 1 << 20;

/// Bytes in a GiB: memory figures follow the tutorial, which divides by 1024^3.
pub const GIB: f64 = (1u64 << 30) as f64;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatmulConfig {
    /// Matrix sides n (each cell multiplies two n x n matrices).
    pub sizes: Vec<usize>,
    pub dtypes: Vec<Dtype>,
    /// Where to run, each in turn (the same list on every rank).
    #[serde(with = "device_list")]
    pub devices: Vec<DeviceRequest>,
    pub warmup: usize,
    pub repeats: usize,
    /// CPU threads per rank; `None`: the rank's share of its cores (`Cluster::default_threads`).
    pub threads: Option<usize>,
    pub peak: PeakOverride,
    /// Cells whose A, B and C need more than this many GiB fail with a clear
    /// error instead of being tried; `None`: the memory the host has free, shared
    /// among the node's ranks, on CPU, and no limit on a GPU (libtorch reports a
    /// GPU's out-of-memory itself, which a cell survives).
    pub max_memory_gib: Option<f64>,
    /// Seed of the random operands (the same on every rank).
    pub seed: u64,
}

mod device_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::device::DeviceRequest;

    pub fn serialize<S: Serializer>(v: &[DeviceRequest], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|d| d.to_string()).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceRequest>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().map(|n| n.parse().map_err(serde::de::Error::custom)).collect()
    }
}

/// Floating-point operations of one n x n by n x n product: n^3 multiply-adds.
pub fn flops(n: usize) -> f64 {
    2.0 * (n as f64).powi(3)
}

/// Bytes a cell holds on its device: A, B and C (the tutorial counted two).
pub fn memory_bytes(n: usize, dtype: Dtype) -> u64 {
    3 * (n as u64) * (n as u64) * dtype.bytes()
}

/// `2048,4096,8192`, `4k` (= 4096), `1e3`, `16_384`: the sides in the order
/// given, each once.
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    for part in text.split(',') {
        let n = parse_size(part.trim())?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn parse_size(t: &str) -> Result<usize, String> {
    let hint = || format!("'{t}' is not a matrix size: use whole numbers like 4096 or 4k (= 4096), comma-separated");
    if t.is_empty() {
        return Err(hint());
    }
    let (digits, scale) = match t.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (t, 1),
    };
    // Commas separate sizes here, so they can't be digit groups.
    let too_large = || format!("'{t}' is too large for a matrix size: at most {MAX_SIZE} (1024k)");
    let n = parse_count("--sizes", digits).map_err(|e| if e.contains("too large") { too_large() } else { hint() })?;
    match n.checked_mul(scale) {
        Some(v) if v <= MAX_SIZE => Ok(v as usize),
        _ => Err(too_large()),
    }
}

/// Peak throughput the user gave for a rank's device, in GFLOPS: one figure for
/// every type, or one per type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeakOverride {
    pub all: Option<f64>,
    pub per_dtype: Vec<(Dtype, f64)>,
}

impl PeakOverride {
    pub fn get(&self, dtype: Dtype) -> Option<f64> {
        self.per_dtype.iter().find(|(d, _)| *d == dtype).map(|(_, v)| *v).or(self.all)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.per_dtype.is_empty()
    }
}

/// `989000` (every type) or `bf16=989000,f32=67000` (GFLOPS per rank).
pub fn parse_peak(text: &str) -> Result<PeakOverride, String> {
    let mut out = PeakOverride::default();
    for part in text.split(',').map(str::trim) {
        match part.split_once('=') {
            Some((d, v)) => {
                let d: Dtype = d.parse()?;
                out.per_dtype.retain(|(x, _)| *x != d);
                out.per_dtype.push((d, parse_gflops(v)?));
            }
            None => out.all = Some(parse_gflops(part)?),
        }
    }
    Ok(out)
}

fn parse_gflops(t: &str) -> Result<f64, String> {
    match t.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{}' is not a peak: give GFLOPS per rank, like 989000 or bf16=989000,f32=67000", t.trim())),
    }
}

/// `--max-memory-gb`: a positive number of GiB.
pub fn parse_gib(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{}' is not a memory size: give GiB, like 16 or 0.5", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_the_forms_people_write() {
        assert_eq!(parse_sizes("2048,4096,8192"), Ok(vec![2048, 4096, 8192]));
        assert_eq!(parse_sizes("4k, 1K ,512"), Ok(vec![4096, 1024, 512]));
        assert_eq!(parse_sizes("1e3,16_384"), Ok(vec![1000, 16384]));
        assert_eq!(parse_sizes("64,64,128"), Ok(vec![64, 128]));
        assert_eq!(parse_sizes("1024k"), Ok(vec![1 << 20]));
    }

    #[test]
    fn nonsense_sizes_say_what_to_type() {
        for bad in ["", "0", "-5", "4x", "k", "4kb", "1.5", "2048,,4096", "4096,", "0k", "abc", "1e-3"] {
            let e = parse_sizes(bad).expect_err(bad);
            assert!(!e.contains('\n'), "{bad}: {e}");
            assert!(e.contains("4k (= 4096)"), "{bad}: {e}");
        }
        for big in ["1025k", "2000000", "99999999999999999999"] {
            assert!(parse_sizes(big).unwrap_err().contains("too large"), "{big}");
        }
    }

    #[test]
    fn flops_and_memory_arithmetic() {
        assert_eq!(flops(1), 2.0);
        assert_eq!(flops(4096), 2.0 * 4096f64 * 4096.0 * 4096.0);
        assert_eq!(flops(8192), 1_099_511_627_776.0);
        // Three matrices: 4096^2 f32 each is 64 MiB.
        assert_eq!(memory_bytes(4096, Dtype::F32), 3 * 64 * 1024 * 1024);
        assert_eq!(memory_bytes(4096, Dtype::Bf16), 3 * 32 * 1024 * 1024);
        assert_eq!(memory_bytes(8192, Dtype::Tf32) as f64 / GIB, 0.75);
        // No overflow at the largest size.
        assert_eq!(memory_bytes(1 << 20, Dtype::F32), 3 << 42);
    }

    #[test]
    fn peaks_for_all_types_or_each() {
        assert_eq!(parse_peak("989000").unwrap().get(Dtype::F16), Some(989000.0));
        let p = parse_peak("bf16=989e3, f32=67000").unwrap();
        assert_eq!(p.get(Dtype::Bf16), Some(989000.0));
        assert_eq!(p.get(Dtype::F32), Some(67000.0));
        assert_eq!(p.get(Dtype::Tf32), None);
        let p = parse_peak("100,tf32=500").unwrap();
        assert_eq!((p.get(Dtype::F32), p.get(Dtype::Tf32)), (Some(100.0), Some(500.0)));
        for bad in ["", "0", "-1", "fast", "bf16=", "x=5", "inf", "NaN"] {
            let e = parse_peak(bad).expect_err(bad);
            assert!(e.contains("is not a peak") || e.contains("unknown type"), "{bad}: {e}");
        }
        assert!(parse_gib("0.5").is_ok());
        assert!(parse_gib("0").unwrap_err().contains("not a memory size"));
    }
}
