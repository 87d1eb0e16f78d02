//! Compute precision. Master weights, optimizer state, reductions, softmax and
//! losses stay in fp32; with bf16 the heavy ops (matmuls, convolutions) take
//! bf16 inputs, as autocast does. Models call [`Precision::cast`] on the inputs
//! of those ops; the cast is differentiable, so gradients reach the fp32 weights.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    Fp32,
    Bf16,
}

impl Precision {
    /// The dtype heavy ops compute in.
    pub fn kind(&self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// `t` in the compute dtype (floating tensors only; a no-op for fp32).
    pub fn cast(&self, t: &Tensor) -> Tensor {
        match self {
            Precision::Bf16 if t.kind() != Kind::BFloat16 && t.is_floating_point() => t.to_kind(Kind::BFloat16),
            _ => t.shallow_clone(),
        }
    }

    /// What runs the bf16 math on the CPU, for logs (`None` for fp32).
    pub fn cpu_engine(&self) -> Option<&'static str> {
        if *self == Precision::Fp32 {
            return None;
        }
        let cpu = crate::device::CpuFeatures::detect();
        Some(if cpu.has("amx_bf16") {
            "AMX (oneDNN)"
        } else if cpu.has("avx512_bf16") {
            "AVX512-BF16 (oneDNN)"
        } else {
            "emulated (no bf16 instructions on this CPU: slower than fp32)"
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision '{s}': use fp32 or bf16")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}
