//! The optimal scan over the paper's set of N (THEORY.md §6):
//! {3..64, 125, 128, 255, 256, 512, 515, 1024, 1025}, 70 values.

use criterion::{criterion_group, criterion_main, Criterion};
use quantdepth::theory::optimal::uniform_optimum;
use std::hint::black_box;

fn paper_states() -> Vec<usize> {
    let mut ns: Vec<usize> = (3..=64).collect();
    ns.extend([125, 128, 255, 256, 512, 515, 1024, 1025]);
    ns
}

fn optimal_scan(c: &mut Criterion) {
    let ns = paper_states();
    c.bench_function("optimal_scan_paper_70_states", |b| {
        b.iter(|| {
            for &n in &ns {
                black_box(uniform_optimum(black_box(n), 6.0).unwrap());
            }
        })
    });
}

criterion_group!(benches, optimal_scan);
criterion_main!(benches);
