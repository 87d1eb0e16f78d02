//! How fast each device could go, so a measured rate reads as "% of peak", and
//! which kernel libtorch picks for a type on a device (or why there is none).
//!
//! CPU peak per rank = cores x clock x FLOPs per cycle per core, where
//! - cores: the physical cores the rank uses (its threads, at most the node's
//!   cores shared among its ranks);
//! - clock: the highest of a measured clock (a chain of dependent integer adds,
//!   one per cycle, timed on this core) and cpufreq's maximum, i.e. the boost
//!   clock, so the estimate is an upper bound;
//! - FLOPs per cycle from the vector units: two FMA pipes x lanes x 2. 64 f32
//!   FLOPs/cycle with AVX-512 (32 on AMD Zen 4, whose 512-bit ops run on 256-bit
//!   pipes; also 32 on the few Intel parts with one 512-bit FMA pipe, where this
//!   overestimates), 32 with AVX2+FMA. bf16: twice f32 with AVX512-BF16
//!   (`vdpbf16ps` does two multiply-adds per f32 lane), 1024 per cycle with AMX;
//!   f16 likewise with AVX512-FP16 / AMX-FP16.
//!
//! GPU peaks are NVIDIA's dense (no sparsity) datasheet figures at boost clock
//! for the GPUs TACC-style clusters carry; `--peak-gflops` overrides any of it.

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::dtype::Dtype;
use crate::device::CpuFeatures;

/// A peak rate and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    pub gflops: f64,
    pub source: String,
}

/// What the vector units of [`CpuFeatures`] mean for GEMM.
impl CpuFeatures {
    /// AMD Zen 4 (family 19h with AVX-512): 512-bit ops on 256-bit pipes.
    fn half_width_avx512(&self) -> bool {
        self.vendor == "AuthenticAMD" && self.family == 0x19
    }

    /// The vector extensions that matter for GEMM, for the header.
    pub fn summary(&self) -> String {
        let names = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"];
        let have: Vec<&str> = names.iter().copied().filter(|f| self.has(f)).collect();
        if have.is_empty() {
            "no x86 vector extensions listed".to_string()
        } else {
            have.join(" ")
        }
    }

    /// f32 FLOPs per cycle per core; `None` off x86, where we make no estimate.
    pub fn f32_flops_per_cycle(&self) -> Option<f64> {
        if !self.is_x86() {
            return None;
        }
        Some(if self.has("avx512f") {
            if self.half_width_avx512() {
                32.0
            } else {
                64.0
            }
        } else if self.has("avx2") && self.has("fma") {
            32.0
        } else if self.has("avx") {
            16.0
        } else {
            8.0
        })
    }

    pub fn flops_per_cycle(&self, dtype: Dtype) -> Option<f64> {
        let f32 = self.f32_flops_per_cycle()?;
        match dtype {
            Dtype::F32 => Some(f32),
            Dtype::Tf32 => None,
            Dtype::Bf16 if self.has("amx_bf16") => Some(1024.0),
            Dtype::Bf16 if self.has("avx512_bf16") => Some(2.0 * f32),
            Dtype::F16 if self.has("amx_fp16") => Some(1024.0),
            Dtype::F16 if self.has("avx512_fp16") => Some(2.0 * f32),
            Dtype::Bf16 | Dtype::F16 => Some(f32),
        }
    }

    /// The kernel libtorch's CPU matmul uses for `dtype` here (as oneDNN and MKL
    /// verbose logs name them), or why this cell is not worth running.
    pub fn kernel(&self, dtype: Dtype, has_mkl: bool) -> Result<String, String> {
        let x86 = self.is_x86();
        match dtype {
            Dtype::F32 if has_mkl => Ok("MKL sgemm".into()),
            Dtype::F32 => Ok("BLAS sgemm".into()),
            Dtype::Tf32 => Err("tf32 is a CUDA tensor-core mode: libtorch's CPU matmul has no TF32 path, and timing \
                                plain f32 under that name would mislead; use f32 on the CPU"
                .into()),
            Dtype::Bf16 if self.has("amx_bf16") => Ok("oneDNN AMX-bf16".into()),
            Dtype::Bf16 if self.has("avx512_bf16") => Ok("oneDNN avx512_bf16".into()),
            Dtype::Bf16 if self.avx512_core() => Ok("oneDNN avx512 (bf16 via f32)".into()),
            Dtype::F16 if self.has("amx_fp16") => Ok("oneDNN AMX-fp16".into()),
            Dtype::F16 if self.has("avx512_fp16") => Ok("oneDNN avx512_fp16".into()),
            Dtype::Bf16 | Dtype::F16 if !x86 => Ok(format!("libtorch {dtype}")),
            Dtype::Bf16 => Err("no bf16 GEMM on this CPU: without AVX-512 libtorch falls back to a scalar loop \
                                (about 1 GFLOPS); use f32"
                .into()),
            Dtype::F16 => Err("no f16 GEMM on this CPU: without AVX512-FP16 or AMX-FP16 libtorch falls back to a \
                               scalar loop (about 1 GFLOPS); use bf16 or f32"
                .into()),
        }
    }
}

/// The kernel cuBLAS runs for `dtype` (TF32 is switched on for that cell only).
pub fn gpu_kernel(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "cuBLAS f32 (CUDA cores)",
        Dtype::Tf32 => "cuBLAS TF32 tensor cores",
        Dtype::Bf16 => "cuBLAS bf16 tensor cores",
        Dtype::F16 => "cuBLAS f16 tensor cores",
    }
}

/// The CPU side of a peak estimate for one rank.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpuClock {
    /// Physical cores the rank computes on.
    pub cores: usize,
    pub ghz: f64,
    /// "measured" or "cpufreq max".
    pub source: String,
}

impl CpuClock {
    /// The rank's cores (its threads, at most `share`, its share of the
    /// node's physical cores) and the highest clock we can find; `None` if no
    /// clock is known.
    pub fn detect(threads: usize, share: usize) -> Option<CpuClock> {
        let cores = threads.clamp(1, share.max(1));
        let cpufreq = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|khz| khz / 1e6);
        let measured = measure_clock_ghz();
        let (ghz, source) = match (measured, cpufreq) {
            (Some(m), Some(c)) if c >= m => (c, "cpufreq max"),
            (Some(m), _) => (m, "measured"),
            (None, Some(c)) => (c, "cpufreq max"),
            (None, None) => return None,
        };
        Some(CpuClock { cores, ghz, source: source.into() })
    }

    pub fn peak(&self, features: &CpuFeatures, dtype: Dtype) -> Option<Peak> {
        let per_cycle = features.flops_per_cycle(dtype)?;
        Some(Peak {
            gflops: self.cores as f64 * self.ghz * per_cycle,
            source: format!(
                "estimate: {} core(s) x {:.2} GHz ({}) x {per_cycle:.0} {dtype} FLOP/cycle",
                self.cores, self.ghz, self.source
            ),
        })
    }
}

/// The clock this core runs at now, in GHz: a chain of dependent adds (one per
/// cycle on every x86 core since the Pentium 4) timed for a few milliseconds,
/// best of several tries so a descheduled try does not count. The addend is a
/// register, not an immediate: Intel cores since Golden Cove fold `add reg, imm`
/// at rename, and such a chain ran at 20 adds per ns on a 3.5 GHz Xeon.
#[cfg(target_arch = "x86_64")]
pub fn measure_clock_ghz() -> Option<f64> {
    const ADDS_PER_ITER: u64 = 64;
    fn chain(iters: u64) -> f64 {
        let t = Instant::now();
        // SAFETY: register-only arithmetic on two scratch registers.
        unsafe {
            std::arch::asm!(
                "2:",
                ".rept 64",
                "add {x}, {one}",
                ".endr",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) 0u64 => _,
                n = inout(reg) iters.max(1) => _,
                one = in(reg) 1u64,
                options(nomem, nostack),
            );
        }
        t.elapsed().as_secs_f64()
    }
    // Let the core leave its idle clock before measuring.
    chain(200_000);
    let iters = 40_000;
    let best = (0..12).map(|_| chain(iters)).fold(f64::INFINITY, f64::min);
    let ghz = (ADDS_PER_ITER * iters) as f64 / best / 1e9;
    (0.2..10.0).contains(&ghz).then_some(ghz)
}

/// No portable cycle-exact chain off x86: the clock comes from cpufreq alone.
#[cfg(not(target_arch = "x86_64"))]
pub fn measure_clock_ghz() -> Option<f64> {
    None
}

/// Dense datasheet peaks in TFLOPS (f32, tf32, bf16, f16) by GPU name; the
/// first entry whose key the name contains wins, so specific names come first.
const GPU_PEAKS_TFLOPS: &[(&str, [Option<f64>; 4])] = &[
    ("GH200", [Some(67.0), Some(494.7), Some(989.4), Some(989.4)]),
    ("H200 NVL", [Some(60.0), Some(417.5), Some(835.5), Some(835.5)]),
    ("H200", [Some(67.0), Some(494.7), Some(989.4), Some(989.4)]),
    ("H100 NVL", [Some(60.0), Some(417.5), Some(835.5), Some(835.5)]),
    ("H100 PCIe", [Some(51.2), Some(378.0), Some(756.0), Some(756.0)]),
    ("H100", [Some(67.0), Some(494.7), Some(989.4), Some(989.4)]),
    ("A100", [Some(19.5), Some(156.0), Some(312.0), Some(312.0)]),
    ("V100", [Some(15.7), None, None, Some(125.0)]),
];

/// The datasheet peak of a GPU called `name` for `dtype`, if we know it.
pub fn gpu_peak(name: &str, dtype: Dtype) -> Option<Peak> {
    let (key, peaks) = GPU_PEAKS_TFLOPS.iter().find(|(key, _)| name.contains(key))?;
    let i = match dtype {
        Dtype::F32 => 0,
        Dtype::Tf32 => 1,
        Dtype::Bf16 => 2,
        Dtype::F16 => 3,
    };
    peaks[i].map(|t| Peak { gflops: t * 1e3, source: format!("NVIDIA {key} datasheet, dense {dtype}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(vendor: &str, family: u32, flags: &str) -> CpuFeatures {
        CpuFeatures::from_cpuinfo(&format!(
            "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: \n"
        ))
    }

    #[test]
    fn flops_per_cycle_follow_the_vector_units() {
        let zen4 = cpu("AuthenticAMD", 25, "fma avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16");
        assert_eq!(zen4.flops_per_cycle(Dtype::F32), Some(32.0));
        assert_eq!(zen4.flops_per_cycle(Dtype::Bf16), Some(64.0));
        assert_eq!(zen4.flops_per_cycle(Dtype::Tf32), None);
        let zen5 = cpu("AuthenticAMD", 26, "fma avx2 avx512f avx512_bf16");
        assert_eq!(zen5.flops_per_cycle(Dtype::F32), Some(64.0));
        let spr =
            cpu("GenuineIntel", 6, "fma avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16 amx_bf16 avx512_fp16");
        assert_eq!(spr.flops_per_cycle(Dtype::F32), Some(64.0));
        assert_eq!(spr.flops_per_cycle(Dtype::Bf16), Some(1024.0));
        assert_eq!(spr.flops_per_cycle(Dtype::F16), Some(128.0));
        assert_eq!(cpu("GenuineIntel", 6, "fma avx2").flops_per_cycle(Dtype::Bf16), Some(32.0));
        assert_eq!(cpu("ARM", 0, "").flops_per_cycle(Dtype::F32), None);
    }

    #[test]
    fn kernels_and_unsupported_types_on_the_cpu() {
        let zen4 = cpu("AuthenticAMD", 25, "fma avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16");
        assert_eq!(zen4.kernel(Dtype::F32, true).unwrap(), "MKL sgemm");
        assert_eq!(zen4.kernel(Dtype::Bf16, true).unwrap(), "oneDNN avx512_bf16");
        assert!(zen4.kernel(Dtype::Tf32, true).unwrap_err().contains("CUDA"));
        assert!(zen4.kernel(Dtype::F16, true).unwrap_err().contains("use bf16"));
        let spr = cpu("GenuineIntel", 6, "avx512f avx512bw avx512vl avx512dq amx_bf16 amx_fp16");
        assert_eq!(spr.kernel(Dtype::Bf16, true).unwrap(), "oneDNN AMX-bf16");
        assert_eq!(spr.kernel(Dtype::F16, true).unwrap(), "oneDNN AMX-fp16");
        assert!(cpu("GenuineIntel", 6, "fma avx2").kernel(Dtype::Bf16, true).is_err());
        assert!(cpu("ARM", 0, "").kernel(Dtype::Bf16, false).is_ok());
    }

    #[test]
    fn cpu_peak_is_cores_times_clock_times_width() {
        let zen4 = cpu("AuthenticAMD", 25, "fma avx2 avx512f avx512_bf16");
        let clock = CpuClock { cores: 2, ghz: 3.0, source: "measured".into() };
        let p = clock.peak(&zen4, Dtype::Bf16).unwrap();
        assert_eq!(p.gflops, 384.0);
        assert!(p.source.contains("2 core(s) x 3.00 GHz (measured) x 64 bf16"), "{}", p.source);
        assert!(clock.peak(&zen4, Dtype::Tf32).is_none());
    }

    #[test]
    fn measured_clock_is_plausible() {
        if cfg!(target_arch = "x86_64") {
            let ghz = measure_clock_ghz().expect("a clock on x86");
            assert!((0.5..7.0).contains(&ghz), "{ghz} GHz");
        }
    }

    #[test]
    fn known_gpus_by_name() {
        assert_eq!(gpu_peak("NVIDIA H100 80GB HBM3", Dtype::Bf16).unwrap().gflops, 989_400.0);
        assert_eq!(gpu_peak("NVIDIA H100 PCIe", Dtype::Bf16).unwrap().gflops, 756_000.0);
        assert_eq!(gpu_peak("NVIDIA GH200 480GB", Dtype::Tf32).unwrap().gflops, 494_700.0);
        assert_eq!(gpu_peak("NVIDIA A100-SXM4-40GB", Dtype::F32).unwrap().gflops, 19_500.0);
        assert!(gpu_peak("Tesla V100-SXM2-32GB", Dtype::Bf16).is_none());
        assert!(gpu_peak("NVIDIA GeForce RTX 4090", Dtype::F32).is_none());
    }
}
