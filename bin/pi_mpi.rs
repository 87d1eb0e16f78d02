//! pi-mpi: Monte Carlo estimate of pi across MPI ranks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hpcml::device::DeviceRequest;
use hpcml::pi::{self, PiConfig};

/// Monte Carlo estimate of pi across MPI ranks: exactly SAMPLES samples in total,
/// bit-identical for a seed whatever the number of ranks and threads.
#[derive(Parser, Debug)]
#[command(name = "pi-mpi", version)]
struct Args {
    /// Total samples over all ranks: 10000000, 1e9 or 10_000_000.
    #[arg(value_parser = parse_samples, allow_negative_numbers = true)]
    samples: u64,
    /// Seed of the random stream.
    #[arg(long, default_value_t = 1, value_parser = hpcml::cli::parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// CPU threads per rank [default: the physical cores this rank may use, divided among the ranks of its node bound to the same ones].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    threads: Option<u16>,
    /// Where to draw samples: cpu, cuda (the rank's local GPU), cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceRequest,
    /// GPU samples per chunk (bounds GPU memory).
    #[arg(long, value_parser = parse_chunk, default_value = "33554432", hide = true)]
    chunk: u64,
    /// Also write the run as a JSON record to this path.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn parse_samples(s: &str) -> Result<u64, String> {
    hpcml::cli::parse_count("SAMPLES", s)
}

fn parse_chunk(s: &str) -> Result<u64, String> {
    hpcml::cli::parse_count("--chunk", s)
}

fn main() -> ExitCode {
    hpcml::cli::main("pi-mpi", |cluster, args: Args| {
        let cfg = PiConfig {
            samples: args.samples,
            seed: args.seed,
            threads: args.threads.map(usize::from),
            device: args.device,
            chunk: args.chunk,
        };
        let Some(run) = pi::run(cluster, &cfg)? else {
            return Ok(());
        };
        for line in pi::output::lines(&run) {
            cluster.say(line);
        }
        if let Some(path) = &args.json {
            hpcml::report::write_json(path, &run)?;
        }
        Ok(())
    })
}
