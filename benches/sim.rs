//! CPU simulator throughput: standard normals per second (weight
//! generation) and one layer's multiply-adds per second (n²·B per layer).
//! `quantdepth bench` reports the same figures beside an SGEMM yardstick.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quantdepth::rng::Stream;
use quantdepth::sim::cpu;
use std::hint::black_box;

fn normals(c: &mut Criterion) {
    let s = Stream::new(1, 0);
    let mut row = vec![0f32; 4096];
    let mut g = c.benchmark_group("normals");
    g.throughput(Throughput::Elements(4096));
    g.bench_function("fill_row_4096", |b| {
        b.iter(|| s.fill_row(1, black_box(3), &mut row))
    });
    g.finish();
}

fn layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_layer");
    g.sample_size(10);
    for (n, batch) in [(1024usize, 16usize), (1024, 256), (4096, 16), (4096, 256)] {
        let act: Vec<f32> = (0..n * batch)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.3)
            .collect();
        let mut out = vec![0f32; n * batch];
        let s = Stream::new(1, 0);
        g.throughput(Throughput::Elements((n * n * batch) as u64));
        g.bench_function(format!("n{n}_b{batch}"), |b| {
            b.iter(|| cpu::layer(black_box(&act), n, batch, &s, 1, 1.0, 0.1, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, normals, layers);
criterion_main!(benches);
