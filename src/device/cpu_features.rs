//! What /proc/cpuinfo says about the CPU: vendor, family and feature flags.
//! Which kernels can run follows from them: oneDNN's bf16 paths, fbgemm's
//! int8 products, the GEMM peak ([`crate::matmul::peak`]).

use std::collections::BTreeSet;

#[derive(Clone, Debug, Default)]
pub struct CpuFeatures {
    pub vendor: String,
    pub family: u32,
    flags: BTreeSet<String>,
}

impl CpuFeatures {
    /// This machine's; no flags where /proc/cpuinfo cannot be read.
    pub fn detect() -> CpuFeatures {
        std::fs::read_to_string("/proc/cpuinfo").map(|t| CpuFeatures::from_cpuinfo(&t)).unwrap_or_default()
    }

    /// From the first processor's entry of a /proc/cpuinfo text (x86 lists
    /// `flags`, Arm `Features`).
    pub fn from_cpuinfo(text: &str) -> CpuFeatures {
        let mut out = CpuFeatures::default();
        for line in text.lines().take_while(|l| !l.trim().is_empty()) {
            let Some((key, value)) = line.split_once(':') else { continue };
            match key.trim() {
                "vendor_id" => out.vendor = value.trim().to_string(),
                "cpu family" => out.family = value.trim().parse().unwrap_or(0),
                "flags" | "Features" => out.flags = value.split_whitespace().map(str::to_string).collect(),
                _ => {}
            }
        }
        out
    }

    /// Whether the CPU lists `flag` (as /proc/cpuinfo spells it: `avx2`,
    /// `avx512_bf16`, `amx_bf16`).
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    pub fn is_x86(&self) -> bool {
        matches!(self.vendor.as_str(), "GenuineIntel" | "AuthenticAMD")
    }

    /// The AVX-512 subsets oneDNN's AVX-512 kernels need.
    pub fn avx512_core(&self) -> bool {
        self.has("avx512f") && self.has("avx512bw") && self.has("avx512vl") && self.has("avx512dq")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_processor_of_x86_and_arm() {
        let x86 = CpuFeatures::from_cpuinfo(
            "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: fpu avx2 fma\n\n\
             processor\t: 1\nflags\t\t: avx512f\n",
        );
        assert_eq!((x86.vendor.as_str(), x86.family), ("AuthenticAMD", 25));
        assert!(x86.is_x86() && x86.has("avx2") && x86.has("fma"));
        assert!(!x86.has("avx512f") && !x86.has("avx"), "flags are whole words of the first entry");
        let arm = CpuFeatures::from_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 sve\n");
        assert!(!arm.is_x86() && arm.has("bf16") && arm.has("sve"));
        assert!(!CpuFeatures::from_cpuinfo("").has("avx2"));
    }
}
