//! One GPU backward step (`GpuBackend::backward_step`: δ^l from δ^{l+1}
//! through the generated weights, STE mask) per backward variant — tiled,
//! wide, wide256 — at n = 1024, B ∈ {130, 256}: multiply-adds per second
//! (n²·B per step). Wall clock around submit and read-back (the step's
//! buffers, upload and read-back included; the backward path records no
//! device timestamps). Skips without an adapter (lavapipe counts).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quantdepth::rng::Stream;
use quantdepth::setup::NetworkChoice;
use quantdepth::sim::gpu::variant::KernelVariant;
use quantdepth::sim::gpu::{AdapterPolicy, GpuBackend, KernelChoice};
use quantdepth::sim::{Inputs, SimSpec};
use quantdepth::theory::backward::Ste;

fn backward_steps(c: &mut Criterion) {
    let Ok(mut gpu) = GpuBackend::new(AdapterPolicy::PreferHardware) else {
        eprintln!("gpu_backward: no adapter, nothing to measure");
        return;
    };
    let r = NetworkChoice::uniform(4).resolve().expect("N = 4 resolves");
    let ste = Ste::new(1.0, 1.0).expect("a valid surrogate");
    let mut g = c.benchmark_group("gpu_backward_step");
    g.sample_size(10);
    for (n, pairs) in [(1024usize, 65usize), (1024, 128)] {
        let inputs = Inputs::Pairs {
            c0: vec![0.5],
            pairs,
        };
        let s = SimSpec::of_network(&r, n, 2, 1, 1, inputs);
        let batch = 2 * pairs;
        let (mut delta, mut h) = (vec![0f32; n * batch], vec![0f32; n * batch]);
        Stream::new(5, 1).fill_row(1, 0, &mut delta);
        Stream::new(5, 1).fill_row(2, 0, &mut h);
        g.throughput(Throughput::Elements((n * n * batch) as u64));
        for v in [
            KernelVariant::Tiled,
            KernelVariant::Wide,
            KernelVariant::Wide256,
        ] {
            gpu.set_kernel(KernelChoice::Forced(v), None);
            g.bench_function(format!("{v}_n{n}_b{batch}"), |b| {
                b.iter(|| gpu.backward_step(&s, &ste, v, &delta, &h, 0).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, backward_steps);
criterion_main!(benches);
