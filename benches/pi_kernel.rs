//! The pi kernel alone: samples per second on one thread and on all cores.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hpcml::pi::kernel::{count_hits, count_hits_threaded};

fn kernel(c: &mut Criterion) {
    let n: u64 = 1 << 26;
    let mut g = c.benchmark_group("pi_kernel");
    g.throughput(Throughput::Elements(n));
    g.sample_size(20);
    g.bench_function("1_thread", |b| b.iter(|| count_hits(std::hint::black_box(1), 0, n, None)));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    g.bench_function(format!("{cores}_threads"), |b| {
        b.iter(|| count_hits_threaded(std::hint::black_box(1), 0, n, cores, None))
    });
    g.finish();
}

criterion_group!(benches, kernel);
criterion_main!(benches);
