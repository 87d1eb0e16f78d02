//! matmul-scaling: GEMM throughput over sizes, types and devices, per rank and
//! per node, with a table, JSON/CSV records and a log-log plot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hpcml::device::DeviceRequest;
use hpcml::matmul::config::{self, PeakOverride};
use hpcml::matmul::{self, dtype, output, Dtype, Event, MatmulConfig};

/// Times n x n matrix products (torch.matmul through libtorch) over sizes,
/// element types and devices, like the tutorial's pytorch_matmul_scaling_test.py,
/// and checks every product against an f64 reference. Under mpiexec, ibrun or
/// srun every rank takes its own GPU (local_rank % GPUs) or its share of the CPU
/// cores, all ranks run in lock-step, and rank 0 prints per-rank and summed rows.
///
/// % of peak: --peak-gflops, else NVIDIA's dense datasheet figure for known GPUs
/// (A100, H100, H200, GH200, V100), else for the CPU cores x clock x FLOPs per
/// cycle: the rank's physical cores, the boost clock (measured with a chain of
/// dependent adds, or cpufreq's maximum), and 2 FMA pipes x vector lanes x 2
/// (64 f32 FLOPs/cycle with AVX-512, 32 on AMD Zen 4 or with AVX2; bf16 twice
/// that with AVX512-BF16, 1024 with AMX).
#[derive(Parser, Debug)]
#[command(name = "matmul-scaling", version)]
struct Args {
    /// Matrix sizes n, comma-separated; 4k = 4096.
    #[arg(long, value_parser = config::parse_sizes, default_value = "2048,4096,8192", allow_negative_numbers = true)]
    sizes: ::std::vec::Vec<usize>,
    /// Use the GPU if one is visible (the default), else the CPU.
    #[arg(long, overrides_with = "no_gpu")]
    gpu: bool,
    /// Use the CPU even if a GPU is visible.
    #[arg(long = "no-gpu", overrides_with = "gpu")]
    no_gpu: bool,
    /// Devices to run on in turn, e.g. cpu,cuda to compare them (cuda: the rank's
    /// local GPU; cuda:N; auto). Replaces --gpu/--no-gpu.
    #[arg(long, value_name = "LIST", value_parser = parse_devices, conflicts_with_all = ["gpu", "no_gpu"])]
    device: Option<::std::vec::Vec<DeviceRequest>>,
    /// Element types, comma-separated: f32, tf32 (f32 on TF32 tensor cores; CUDA
    /// only), bf16, f16.
    #[arg(long, value_name = "LIST", value_parser = dtype::parse_dtypes, default_value = "f32")]
    dtype: ::std::vec::Vec<Dtype>,
    /// Timed products per cell (the median is reported, with min and max).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000), allow_negative_numbers = true)]
    repeats: u32,
    /// Untimed products before them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100_000), allow_negative_numbers = true)]
    warmup: u32,
    /// CPU threads per rank [default: the physical cores this rank may use, divided among the ranks of its node bound to the same ones].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096), allow_negative_numbers = true)]
    threads: Option<u16>,
    /// Peak GFLOPS per rank for % of peak: one figure, or per type like
    /// bf16=989000,f32=67000 [default: known GPUs, or estimated for the CPU].
    #[arg(long, value_name = "X", value_parser = config::parse_peak, allow_negative_numbers = true)]
    peak_gflops: Option<PeakOverride>,
    /// Skip (with an error for that cell) any size whose A, B and C need more GiB
    /// than this per rank [default on CPU: the node's available memory / its ranks].
    #[arg(long, value_name = "GIB", value_parser = config::parse_gib, allow_negative_numbers = true)]
    max_memory_gb: Option<f64>,
    /// Seed of the random matrices.
    #[arg(long, default_value_t = 1, value_parser = hpcml::cli::parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// Also write the run as a JSON record to this path.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write one CSV row per rank and cell (and per node/job sum) here.
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Where to save the log-log scaling plot (PNG).
    #[arg(long, value_name = "PATH", default_value = "scaling_plot.png")]
    plot: PathBuf,
    /// Don't write the plot.
    #[arg(long, conflicts_with = "plot")]
    no_plot: bool,
}

fn parse_devices(text: &str) -> Result<Vec<DeviceRequest>, String> {
    text.split(',').map(str::parse::<DeviceRequest>).collect()
}

fn main() -> ExitCode {
    hpcml::cli::main("matmul-scaling", |cluster, args: Args| {
        let devices = match (args.device, args.no_gpu) {
            (Some(list), _) => list,
            (None, true) => vec![DeviceRequest::Cpu],
            (None, false) => vec![DeviceRequest::Auto],
        };
        let cfg = MatmulConfig {
            sizes: args.sizes,
            dtypes: args.dtype,
            devices,
            warmup: args.warmup as usize,
            repeats: args.repeats as usize,
            threads: args.threads.map(usize::from),
            peak: args.peak_gflops.unwrap_or_default(),
            max_memory_gib: args.max_memory_gb,
            seed: args.seed,
        };
        let outcome = matmul::run(cluster, &cfg, |event| {
            let lines = match event {
                Event::Setup { system, ranks } => output::header(system, ranks, &cfg),
                Event::Start { cell, kernel } => output::start(cell, kernel),
                Event::Done(summary) => output::done(summary),
            };
            for line in lines {
                cluster.say(line);
            }
        })?;
        let written = match &outcome.run {
            Some(run) => {
                let plot = (!args.no_plot).then_some(args.plot.as_path());
                report(cluster, run, args.json.as_deref(), args.csv.as_deref(), plot)
            }
            None => Ok(()),
        };
        cluster.agree(written)?;
        outcome.verdict(cluster)
    })
}

/// Rank 0's table and files. A plot needs one successful cell; without one the
/// run's verdict says why, so no plot is not an error of its own.
fn report(
    cluster: &hpcml::cluster::Cluster,
    run: &matmul::MatmulRun,
    json: Option<&std::path::Path>,
    csv: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    cluster.say("");
    cluster.say(output::table(run));
    if let Some(path) = json {
        hpcml::report::write_json(path, run)?;
        cluster.say(format!("JSON record written to '{}'", path.display()));
    }
    if let Some(path) = csv {
        hpcml::report::write_csv(path, &output::csv_rows(run))?;
        cluster.say(format!("CSV rows written to '{}'", path.display()));
    }
    if let Some(path) = plot {
        if run.cells_ok > 0 {
            output::plot(run, path)?;
            cluster.say(format!("Scaling plot saved as '{}'", path.display()));
        } else {
            cluster.say("No successful tests to plot.");
        }
    }
    Ok(())
}
