//! The element types a GEMM is timed in, and what each one means for memory and
//! for how close to an exact product the answer must be.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    /// float32 storage, multiplied on TF32 tensor cores (CUDA only).
    Tf32,
    Bf16,
    F16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Tf32 => "tf32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }

    /// Bytes per element as stored.
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F32 | Dtype::Tf32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
        }
    }

    pub fn kind(self) -> tch::Kind {
        match self {
            Dtype::F32 | Dtype::Tf32 => tch::Kind::Float,
            Dtype::Bf16 => tch::Kind::BFloat16,
            Dtype::F16 => tch::Kind::Half,
        }
    }

    /// The largest error a correct kernel may show against an exact (f64) product
    /// of the same inputs, as a fraction of `sum_k |a_ik| |b_kj|` (which bounds
    /// every rounding the product can suffer). Several times the unit roundoff
    /// of the coarsest step each type takes: the f32 accumulation, TF32's 10-bit
    /// inputs, bf16's and f16's rounded outputs (and the reduced-precision split-K
    /// reductions cuBLAS allows them by default). A broken kernel (wrong tile,
    /// garbage, transposed operand) is off by order one.
    pub fn tolerance(self) -> f64 {
        match self {
            Dtype::F32 => 1e-4,
            Dtype::Tf32 => 4e-3,
            Dtype::Bf16 => 3e-2,
            Dtype::F16 => 1e-2,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" | "float" => Ok(Dtype::F32),
            "tf32" => Ok(Dtype::Tf32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Dtype::F16),
            _ => Err(format!("unknown type '{}': use f32, tf32, bf16 or f16", s.trim())),
        }
    }
}

/// `f32,bf16` -> the types in the order given, each once.
pub fn parse_dtypes(text: &str) -> Result<Vec<Dtype>, String> {
    let mut out: Vec<Dtype> = Vec::new();
    for part in text.split(',') {
        if part.trim().is_empty() {
            return Err(format!("empty entry in '{text}': use a list like f32,bf16"));
        }
        let d: Dtype = part.parse()?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases_in_order_once() {
        assert_eq!(parse_dtypes("f32"), Ok(vec![Dtype::F32]));
        assert_eq!(
            parse_dtypes("bf16, FP32,half,tf32,float32"),
            Ok(vec![Dtype::Bf16, Dtype::F32, Dtype::F16, Dtype::Tf32])
        );
        for bad in ["", "f64", "f32,,bf16", "int8", "bf16,"] {
            let e = parse_dtypes(bad).expect_err(bad);
            assert!((e.contains("unknown type") || e.contains("empty entry")) && !e.contains('\n'), "{e}");
        }
        assert!(parse_dtypes("f64").unwrap_err().contains("'f64'"));
    }

    #[test]
    fn sizes_and_tolerances_follow_the_type() {
        assert_eq!(Dtype::Tf32.bytes(), 4);
        assert_eq!(Dtype::Bf16.bytes(), 2);
        assert_eq!(Dtype::Tf32.kind(), tch::Kind::Float);
        assert!(Dtype::F32.tolerance() < Dtype::Tf32.tolerance());
        assert!(Dtype::F16.tolerance() < Dtype::Bf16.tolerance());
        assert_eq!(serde_json::to_string(&Dtype::Bf16).unwrap(), "\"bf16\"");
    }
}
