//! bert-classifier's attention for fp32 inference against libtorch's fused
//! kernel, on MiniLM's shapes (16 texts of 128 tokens, 12 heads of 32) with
//! query, key and value as views of one fused projection, as the layers make
//! them. libtorch's result is then laid out as `[batch, len, hidden]` for the
//! output projection, which `attend` writes directly.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hpcml::bert::attention;
use tch::{Device, Kind, Tensor};

fn attention(c: &mut Criterion) {
    let (batch, heads, len, dim) = (16i64, 12i64, 128i64, 32i64);
    let _guard = tch::no_grad_guard();
    let y = Tensor::randn([batch, len, 3 * heads * dim], (Kind::Float, Device::Cpu));
    let split = |i: i64| y.narrow(2, i * heads * dim, heads * dim).view([batch, len, heads, dim]).transpose(1, 2);
    let (q, k, v) = (split(0), split(1), split(2));
    let mut g = c.benchmark_group("attention_minilm_16x128");
    // Multiply-adds of q k^T and of the probabilities times v, two flops each.
    g.throughput(Throughput::Elements((4 * batch * heads * len * len * dim) as u64));
    g.sample_size(30);
    g.bench_function("libtorch_sdpa", |b| {
        b.iter(|| {
            let ctx = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
            ctx.transpose(1, 2).reshape([batch, len, heads * dim])
        })
    });
    if attention::serves(&q, &k, &v) {
        g.bench_function("hpcml_attend", |b| b.iter(|| attention::attend(&q, &k, &v, None)));
    }
    g.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
