//! CPU simulator throughput: standard normals per second (weight
//! generation) and one layer's multiply-adds per second (n²·B per layer).
//! `quantdepth bench` reports the same figures beside an SGEMM yardstick.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quantdepth::rng::Stream;
use quantdepth::sim::cpu;
use quantdepth::sim::layer::LayerWeights;
use quantdepth::sim::Weights;
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

/// The packed product (`new`, [`LayerWeights::layer`]) against the
/// matrixmultiply path it replaced (`old`, [`LayerWeights::layer_reference`]),
/// old and new benchmarked one after the other at each size so that load on
/// the machine falls on both.
fn packed_vs_sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_layer_packed");
    g.sample_size(10);
    let sizes = [
        (Weights::Gaussian, 1024usize, 16usize),
        (Weights::Gaussian, 1024, 64),
        (Weights::Gaussian, 1024, 256),
        (Weights::Gaussian, 4096, 16),
        (Weights::Gaussian, 4096, 64),
        (Weights::Gaussian, 4096, 256),
        (Weights::Rademacher, 4096, 256),
    ];
    for (weights, n, batch) in sizes {
        let act: Vec<f32> = (0..n * batch)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.3)
            .collect();
        let mut out = vec![0f32; n * batch];
        let s = Stream::new(1, 0);
        let w = LayerWeights {
            ensemble: weights,
            stream: &s,
            layer: 1,
            n,
            sigma_w: 1.0,
            sigma_b: 0.1,
        };
        g.throughput(Throughput::Elements((n * n * batch) as u64));
        let name = format!("{}_n{n}_b{batch}", weights.name());
        g.bench_function(format!("{name}/old"), |b| {
            b.iter(|| w.layer_reference(black_box(&act), batch, &mut out, None))
        });
        g.bench_function(format!("{name}/new"), |b| {
            b.iter(|| w.layer(black_box(&act), batch, &mut out, None))
        });
    }
    g.finish();
}

criterion_group!(benches, normals, layers, packed_vs_sgemm);
criterion_main!(benches);
