//! Where work runs: `cpu`, `cuda`, `cuda:N` or `auto`; which GPU a rank takes on a
//! multi-GPU node; how many CPU threads each rank may use; what the hardware is;
//! how the host's heap serves tensors ([`host_memory`]).

use std::fmt;
use std::str::FromStr;

use anyhow::Result;

pub mod cpu_features;
pub mod host_memory;

pub use cpu_features::CpuFeatures;

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

/// Resolves `--threads` (0 or absent: `default`, the rank's share of its
/// node's cores, [`Cluster::default_threads`](crate::cluster::Cluster::default_threads))
/// and applies it to libtorch.
pub fn apply_threads(requested: Option<usize>, default: usize) -> usize {
    let n = match requested {
        Some(n) if n > 0 => n,
        _ => default.max(1),
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

/// Memory the kernel says can be allocated without swapping (`MemAvailable`), in
/// bytes; `None` where /proc/meminfo says nothing.
pub fn host_memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Name and memory of a GPU as the driver reports them. `index` is the CUDA
/// index this process sees; it is mapped through `CUDA_VISIBLE_DEVICES`, because
/// `nvidia-smi` numbers all of the node's GPUs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    pub name: String,
    pub memory_bytes: u64,
}

/// What `nvidia-smi` says about the process's GPU `index`; `None` where there is
/// no `nvidia-smi` or it answers nothing usable (the caller prints "unknown").
pub fn gpu_info(index: usize) -> Option<GpuInfo> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let id = match visible.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(list) => list.split(',').nth(index)?.trim().to_string(),
        None => index.to_string(),
    };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader,nounits", "-i", &id])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    parse_gpu_query(&String::from_utf8_lossy(&out.stdout))
}

/// `NVIDIA H100 80GB HBM3, 81559` (memory in MiB) -> name and bytes.
fn parse_gpu_query(text: &str) -> Option<GpuInfo> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (name, mib) = line.rsplit_once(',')?;
    let mib: u64 = mib.trim().parse().ok()?;
    Some(GpuInfo { name: name.trim().to_string(), memory_bytes: mib * 1024 * 1024 })
}

/// The version of the libtorch this process actually loaded, read beside the
/// library (a PyTorch wheel's `version.py`, a libtorch archive's `build-version`),
/// so it names what runs rather than what we were built against.
#[cfg(feature = "torch")]
pub fn libtorch_version() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("/libtorch_cpu."))?;
    let root = std::path::Path::new(lib).parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let version = text.lines().find_map(|l| l.strip_prefix("__version__ = "));
        if let Some(v) = version {
            return Some(v.trim().trim_matches(|c| c == '\'' || c == '"').to_string());
        }
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The CUDA runtime libtorch was built with, as `13.0`; `None` without CUDA.
#[cfg(feature = "torch")]
pub fn cuda_version() -> Option<String> {
    // Asking a CPU-only process for the CUDA runtime version throws inside libtorch.
    if gpu_count() == 0 {
        return None;
    }
    let v = tch::utils::version_cudart();
    (v > 0).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// Lets cuBLAS run float32 matmuls on TF32 tensor cores (PyTorch's
/// `torch.backends.cuda.matmul.allow_tf32`), or forbids it (libtorch's default).
/// tch has no binding for this switch, so we call libtorch's own setter.
#[cfg(feature = "torch")]
pub fn set_cuda_tf32(allow: bool) {
    // SAFETY: `at::globalContext()` returns a reference to a process-wide object
    // that lives as long as the library; the setter takes `this` and a bool and
    // does not throw. Only the legacy setter is used (never the newer
    // `setFloat32Precision`): it keeps both of libtorch's flags in step, and mixing
    // the two APIs makes libtorch's getter throw.
    unsafe { torch_ffi::set_allow_tf32_cublas(torch_ffi::global_context(), allow) }
}

/// Whether cuBLAS may use TF32 for float32 matmuls (see [`set_cuda_tf32`]).
#[cfg(feature = "torch")]
pub fn cuda_tf32() -> bool {
    // SAFETY: as in `set_cuda_tf32`; the getter only reads flags set by the setter.
    unsafe { torch_ffi::allow_tf32_cublas(torch_ffi::global_context()) }
}

/// Lets scaled-dot-product attention use cuDNN's kernels, or keeps it on the
/// flash and memory-efficient ones. cuDNN's build an execution plan for every
/// new input shape, tens of milliseconds each; with BERT's dynamic padding
/// nearly every evaluation batch is a new shape, and an H100 spent ten times
/// longer planning than computing. Off unless `HPCML_CUDNN_ATTENTION=1` (for
/// comparison).
#[cfg(feature = "torch")]
pub fn set_cudnn_attention_from_env() {
    let on = crate::cli::switched_on("HPCML_CUDNN_ATTENTION");
    // SAFETY: as in `set_cuda_tf32`: a process-wide object and a plain setter.
    unsafe { torch_ffi::set_sdp_use_cudnn(torch_ffi::global_context(), on) }
}

/// Whether attention may run on cuDNN (see [`set_cudnn_attention_from_env`]).
#[cfg(feature = "torch")]
pub fn cudnn_attention() -> bool {
    // SAFETY: as in `set_cuda_tf32`; the getter only reads a flag.
    unsafe { torch_ffi::user_enabled_cudnn_sdp(torch_ffi::global_context()) }
}

/// `t`, a CPU tensor, on `device` without stalling the host: on a GPU through
/// pinned memory and an asynchronous copy (src/device/upload.cpp says why). A
/// CPU `device` gets `t` itself; any other, a plain copy.
#[cfg(feature = "torch")]
pub fn upload(t: &tch::Tensor, device: tch::Device) -> Result<tch::Tensor> {
    match device {
        tch::Device::Cpu => Ok(t.shallow_clone()),
        tch::Device::Cuda(index) => crate::shim::new_tensor("copying a batch to the GPU", |out, err, len| {
            // SAFETY: `t` is a live tensor; the shim writes a new one into `out`.
            unsafe { torch_ffi::hpcml_upload(t.as_ptr(), index as std::ffi::c_int, out, err, len) }
        }),
        _ => Ok(t.f_to_device(device)?),
    }
}

/// libtorch C++ entry points tch does not wrap, by their Itanium-mangled names
/// (stable across the libtorch 2.x releases tch 0.26 supports), and the
/// upload shim.
#[cfg(feature = "torch")]
mod torch_ffi {
    use std::ffi::c_void;

    extern "C" {
        #[link_name = "_ZN2at13globalContextEv"]
        pub fn global_context() -> *mut c_void;
        #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
        pub fn set_allow_tf32_cublas(ctx: *mut c_void, allow: bool);
        #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
        pub fn allow_tf32_cublas(ctx: *const c_void) -> bool;
        pub fn hpcml_upload(
            t: *const torch_sys::C_tensor,
            index: std::ffi::c_int,
            out: *mut *mut torch_sys::C_tensor,
            err: *mut std::ffi::c_char,
            err_len: usize,
        ) -> std::ffi::c_int;
        #[link_name = "_ZN2at7Context14setSDPUseCuDNNEb"]
        pub fn set_sdp_use_cudnn(ctx: *mut c_void, on: bool);
        #[link_name = "_ZNK2at7Context19userEnabledCuDNNSDPEv"]
        pub fn user_enabled_cudnn_sdp(ctx: *const c_void) -> bool;
    }
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
    fn reads_available_host_memory() {
        assert!(host_memory_available().is_some_and(|b| b > 0));
    }

    #[test]
    fn reads_nvidia_smi_answers() {
        let g = parse_gpu_query("NVIDIA H100 80GB HBM3, 81559\n").unwrap();
        assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g.memory_bytes, 81559 * 1024 * 1024);
        assert_eq!(parse_gpu_query(""), None);
        assert_eq!(parse_gpu_query("No devices were found"), None);
    }

    #[cfg(feature = "torch")]
    #[test]
    fn knows_the_libtorch_it_runs_and_switches_tf32() {
        let v = libtorch_version().expect("libtorch version beside the loaded library");
        assert!(v.starts_with("2."), "{v}");
        assert!(!cuda_tf32(), "libtorch's default is no TF32");
        set_cuda_tf32(true);
        assert!(cuda_tf32());
        set_cuda_tf32(false);
        assert!(!cuda_tf32());
    }

    #[cfg(feature = "torch")]
    #[test]
    fn cudnn_attention_is_off_unless_asked_for() {
        assert!(cudnn_attention(), "libtorch's default lets attention use cuDNN");
        if std::env::var_os("HPCML_CUDNN_ATTENTION").is_none() {
            set_cudnn_attention_from_env();
            assert!(!cudnn_attention());
        }
    }
}
