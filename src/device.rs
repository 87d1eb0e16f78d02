//! Where work runs: `cpu`, `cuda`, `cuda:N` or `auto`; which GPU a rank takes on a
//! multi-GPU node; how many CPU threads each rank may use; what the hardware is.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;

use crate::bail_usage;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    /// Any GPU (`cuda`: the rank's local GPU) or a given one (`cuda:N`).
    Cuda(Option<usize>),
    /// A GPU when one is visible, else the CPU.
    Auto,
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(None)),
            "auto" => Ok(Self::Auto),
            _ => {
                if let Some(n) = t.strip_prefix("cuda:").or_else(|| t.strip_prefix("gpu:")) {
                    if let Ok(i) = n.parse::<usize>() {
                        return Ok(Self::Cuda(Some(i)));
                    }
                }
                Err(format!("unknown device '{s}': use cpu, cuda, cuda:N or auto"))
            }
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(i)) => write!(f, "cuda:{i}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Where this rank's work actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    #[cfg(feature = "torch")]
    pub fn tch(&self) -> tch::Device {
        match self {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(*i),
        }
    }

    /// Waits for queued GPU work so timings are honest; nothing to do on CPU.
    pub fn synchronize(&self) {
        #[cfg(feature = "torch")]
        if let Device::Cuda(i) = self {
            tch::Cuda::synchronize(*i as i64);
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Number of CUDA GPUs this process can see (0 in a build without torch).
pub fn gpu_count() -> usize {
    #[cfg(feature = "torch")]
    {
        if tch::Cuda::is_available() {
            return tch::Cuda::device_count().max(0) as usize;
        }
    }
    0
}

/// Turns a request into a device for the rank with node-local rank `local_rank`:
/// plain `cuda` maps ranks round-robin onto the node's GPUs.
pub fn resolve(request: DeviceRequest, local_rank: usize) -> Result<Device> {
    let gpus = gpu_count();
    pick(request, local_rank, gpus)
}

fn pick(request: DeviceRequest, local_rank: usize, gpus: usize) -> Result<Device> {
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto if gpus == 0 => Ok(Device::Cpu),
        DeviceRequest::Auto | DeviceRequest::Cuda(None) if gpus > 0 => Ok(Device::Cuda(local_rank % gpus)),
        DeviceRequest::Cuda(Some(i)) if i < gpus => Ok(Device::Cuda(i)),
        DeviceRequest::Cuda(Some(i)) if gpus > 0 => {
            bail_usage!("--device cuda:{i}: this node has {gpus} GPU(s) (cuda:0..cuda:{}); pick one of those or use --device cuda", gpus - 1)
        }
        _ if !cfg!(feature = "torch") => {
            bail_usage!("--device {request}: this build has no GPU support (built without the torch feature); use --device cpu")
        }
        _ => bail_usage!(
            "--device {request}: no CUDA GPU is visible (check the node has one, `--nv` for Apptainer, `--gpus all` for Docker); use --device cpu or auto"
        ),
    }
}

/// CPU threads per rank when the user gives none: the cores of this node shared
/// evenly among its ranks, so two ranks on one node don't fight over the same cores.
pub fn default_threads(local_size: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / local_size.max(1)).max(1)
}

/// Resolves `--threads` (0 or absent = default share) and applies it to libtorch.
pub fn apply_threads(requested: Option<usize>, local_size: usize) -> usize {
    let n = match requested {
        Some(n) if n > 0 => n,
        _ => default_threads(local_size),
    };
    #[cfg(feature = "torch")]
    {
        tch::set_num_threads(n as i32);
    }
    n
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// CPU time (user + system, all threads) this process has used, in seconds,
/// from /proc/self/stat; `None` where there is no procfs. Beside wall time it
/// tells how much of a timing was this process's own work on a busy machine.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) closed by ')':
    // utime and stime are the 12th and 13th, in clock ticks (USER_HZ = 100).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Whether the CPU advertises a feature flag (as /proc/cpuinfo spells it, e.g.
/// `avx512_bf16`, `amx_bf16`).
pub fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("flags") || l.starts_with("Features"))
                .map(|l| l.split_whitespace().any(|f| f == flag))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceRequest::Cuda(None)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(Some(3))));
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        let err = "tpu".parse::<DeviceRequest>().unwrap_err();
        assert!(err.contains("tpu") && err.contains("cpu, cuda"));
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn ranks_map_round_robin_onto_gpus() {
        assert_eq!(pick(DeviceRequest::Cuda(None), 5, 4).unwrap(), Device::Cuda(1));
        assert_eq!(pick(DeviceRequest::Auto, 2, 4).unwrap(), Device::Cuda(2));
        assert_eq!(pick(DeviceRequest::Auto, 2, 0).unwrap(), Device::Cpu);
        assert_eq!(pick(DeviceRequest::Cuda(Some(1)), 0, 2).unwrap(), Device::Cuda(1));
    }

    #[test]
    fn missing_gpu_is_a_usage_error() {
        let e = pick(DeviceRequest::Cuda(None), 0, 0).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("--device cpu"));
        let e = pick(DeviceRequest::Cuda(Some(3)), 0, 2).unwrap_err();
        assert!(e.to_string().contains("2 GPU"));
    }

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until the counter has moved by 0.2 s (clock ticks are 10 ms):
        // it must, well before the wall-time cap, however busy the machine.
        let before = process_cpu_seconds().expect("procfs");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while process_cpu_seconds().unwrap_or(before) - before < 0.2 {
            assert!(start.elapsed().as_secs() < 60, "CPU time did not advance");
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(std::hint::black_box(1));
            }
        }
        std::hint::black_box(x);
    }

    #[test]
    fn threads_share_the_node() {
        let all = default_threads(1);
        assert!(all >= 1);
        assert_eq!(default_threads(all * 4), 1);
    }
}
