//! Training throughput: multiply-adds per second of one SGD step (forward,
//! backward through the transposed weights, weight gradient and update;
//! 3·B·Σ fan_in·fan_out − B·784·n per step: the first layer's input gradient
//! is never computed) on the CPU, and on a hardware GPU when
//! there is one, beside the simulator's forward rate (n²·B per layer, weights
//! generated) at the same width and batch.
//!
//!     cargo bench --bench train [-- --widths 512,1024 --batch 32 --depth 8]

use quantdepth::rng::Stream;
use quantdepth::sim::gpu::AdapterPolicy;
use quantdepth::train::gpu::GpuTrainBackend;
use quantdepth::train::model::{theory_init, ModelSpec, Params, Phi, Preset};
use quantdepth::train::{CpuTrainBackend, TrainBackend};
use std::time::Instant;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn spec(width: usize, depth: usize) -> ModelSpec {
    let init = theory_init(4, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).expect("N = 4");
    ModelSpec {
        input_dim: 784,
        width,
        depth,
        classes: 10,
        phi: Phi::Uniform {
            states: 4,
            spacing: init.spacing,
            amplitude: 1.0,
        },
        ste_slope: init.ste_slope,
        ste_threshold: 1.0,
        sigma_w: init.sigma_w,
        sigma_b: 0.0,
        quantize_logits: false,
    }
}

/// MAC/s of `steps` training steps (after 2 warm-up steps), best of 3.
fn train_rate(b: &mut dyn TrainBackend, spec: &ModelSpec, batch: usize, steps: usize) -> f64 {
    let p = Params::init(spec, 1);
    b.load(spec, &p).expect("load");
    let mut x = vec![0f32; spec.input_dim * batch];
    Stream::new(5, 0).fill_row(0, 0, &mut x);
    let y: Vec<u8> = (0..batch).map(|j| (j % 10) as u8).collect();
    for _ in 0..2 {
        b.step(&x, &y, 1e-3, 0.5).expect("step");
    }
    b.take_loss().expect("sync");
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..steps {
            b.step(&x, &y, 1e-3, 0.5).expect("step");
        }
        b.take_loss().expect("sync");
        let macs = spec.step_macs() * batch as f64 * steps as f64;
        best = best.max(macs / t.elapsed().as_secs_f64());
    }
    best
}

/// The simulator's forward rate: n²·B multiply-adds per generated layer.
fn sim_rate(n: usize, batch: usize, layers: usize) -> f64 {
    let stream = Stream::new(3, 0);
    let mut act = vec![0f32; n * batch];
    stream.fill_row(9, 0, &mut act);
    let mut out = vec![0f32; n * batch];
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        for l in 0..layers {
            quantdepth::sim::cpu::layer(&act, n, batch, &stream, l as u32, 1.0, 0.0, &mut out);
        }
        best = best.max((n * n * batch * layers) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let widths: Vec<usize> = arg("--widths", "512,1024")
        .split(',')
        .map(|s| s.trim().parse().expect("--widths: whole numbers"))
        .collect();
    let batch: usize = arg("--batch", "32").parse().expect("--batch");
    let depth: usize = arg("--depth", "8").parse().expect("--depth");
    let mut gpu = GpuTrainBackend::new(AdapterPolicy::HardwareOnly).ok();
    if let Some(g) = &gpu {
        println!("GPU: {}", g.context().describe());
    } else {
        println!("GPU: no hardware adapter; CPU only");
    }
    println!(
        "{:>6} {:>6} {:>6} {:>16} {:>16} {:>16}",
        "n", "B", "L", "train cpu MAC/s", "simulate MAC/s", "train gpu MAC/s"
    );
    for &n in &widths {
        let s = spec(n, depth);
        let steps = (2e9 / (s.step_macs() * batch as f64)).clamp(2.0, 200.0) as usize;
        let cpu = train_rate(&mut CpuTrainBackend::default(), &s, batch, steps);
        let sim = sim_rate(n, batch, 4);
        let g = gpu
            .as_mut()
            .map(|g| format!("{:.3e}", train_rate(g, &s, batch, steps * 10)))
            .unwrap_or_else(|| "-".into());
        println!("{n:>6} {batch:>6} {depth:>6} {cpu:>16.3e} {sim:>16.3e} {g:>16}");
    }
}
