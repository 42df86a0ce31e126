//! The training kernels (shaders/train_*.wgsl) against their CPU twin
//! (src/train/cpu.rs), on whatever adapter wgpu finds (lavapipe in CI).
//! Without an adapter these tests skip with a message, unless
//! QUANTDEPTH_REQUIRE_GPU=1 (set by .ci/run), where they fail.

use quantdepth::rng::Stream;
use quantdepth::sim::gpu::AdapterPolicy;
use quantdepth::train::gpu::{shaders, GpuTrainBackend};
use quantdepth::train::model::{theory_init, ModelSpec, Params, Phi, Preset};
use quantdepth::train::{CpuTrainBackend, TrainBackend};

fn backend() -> Option<GpuTrainBackend> {
    match GpuTrainBackend::new(AdapterPolicy::PreferHardware) {
        Ok(b) => {
            eprintln!("GPU training tests on {}", b.context().describe());
            Some(b)
        }
        Err(e) if std::env::var("QUANTDEPTH_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("QUANTDEPTH_REQUIRE_GPU=1 but no usable GPU adapter: {e}")
        }
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping GPU training test (set QUANTDEPTH_REQUIRE_GPU=1 to fail instead): {e}"
            );
            None
        }
    }
}

#[test]
fn every_training_wgsl_file_validates_with_naga() {
    for (name, src) in [
        ("train_forward.wgsl", shaders::product(shaders::FORWARD)),
        ("train_backward.wgsl", shaders::product(shaders::BACKWARD)),
        ("train_update.wgsl", shaders::product(shaders::UPDATE)),
        ("train_loss.wgsl", shaders::loss()),
    ] {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

/// A batch of `b` inputs (feature-major) with labels, from the project's RNG.
fn batch(spec: &ModelSpec, step: u32, b: usize) -> (Vec<f32>, Vec<u8>) {
    let s = Stream::new(1234, step);
    let mut x = vec![0f32; spec.input_dim * b];
    s.fill_row(0, 0, &mut x);
    let y = (0..b)
        .map(|j| ((j as u32 * 7 + step * 3) % spec.classes as u32) as u8)
        .collect();
    (x, y)
}

fn max_rel(a: &Params<f32>, b: &Params<f32>) -> (f64, f64) {
    let (mut diff, mut scale) = (0f64, 0f64);
    for (x, y) in a
        .weights
        .iter()
        .chain(&a.biases)
        .flatten()
        .zip(b.weights.iter().chain(&b.biases).flatten())
    {
        diff = diff.max((x - y).abs() as f64);
        scale = scale.max(x.abs() as f64);
    }
    (diff, scale)
}

/// CPU and GPU take the same 25 SGD steps from the same initialization and
/// batches: the losses and every weight agree to f32 tolerance. The two sum
/// in different orders (blocked GEMM vs 16-wide tiles), so they differ by
/// rounding: ~1e-7 relative per product, compounded over 25 steps of a
/// 4-layer network; 1e-4 relative is far above that and far below any real
/// error (a wrong transpose, mask or momentum changes weights by ~1e-2).
/// A quantizer threshold crossed differently would break agreement, which is
/// why the network is tiny (a few thousand pre-activations in all).
#[test]
fn cpu_and_gpu_training_agree_step_by_step() {
    let Some(mut gpu) = backend() else { return };
    for quantize_logits in [false, true] {
        let init = theory_init(4, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).unwrap();
        let spec = ModelSpec {
            input_dim: 20,
            width: 24,
            depth: 4,
            classes: 10,
            phi: Phi::Uniform {
                states: 4,
                spacing: init.spacing,
                amplitude: 1.0,
            },
            ste_slope: init.ste_slope,
            ste_threshold: 1.0,
            sigma_w: init.sigma_w,
            sigma_b: 0.1,
            quantize_logits,
        };
        let p0 = Params::init(&spec, 11);
        let mut cpu = CpuTrainBackend::default();
        cpu.load(&spec, &p0).unwrap();
        gpu.load(&spec, &p0).unwrap();
        let (lr, mu) = (0.05f32, 0.5f32);
        for step in 0..25u32 {
            let (x, y) = batch(&spec, step, 8);
            cpu.step(&x, &y, lr, mu).unwrap();
            gpu.step(&x, &y, lr, mu).unwrap();
            let (lc, nc) = cpu.take_loss().unwrap();
            let (lg, ng) = gpu.take_loss().unwrap();
            assert_eq!(nc, ng);
            assert!(
                (lc - lg).abs() <= 1e-4 * lc.abs(),
                "quantized logits {quantize_logits}, step {step}: loss cpu {lc} gpu {lg}"
            );
        }
        let (diff, scale) = max_rel(&cpu.params().unwrap(), &gpu.params().unwrap());
        assert!(
            diff <= 1e-4 * scale,
            "quantized logits {quantize_logits}: weights differ by {diff:e} (largest weight {scale})"
        );
        // Training moved the weights (an update that did nothing would pass the above).
        let (moved, _) = max_rel(&p0, &cpu.params().unwrap());
        assert!(moved > 1e-3, "weights moved by only {moved:e}");
        // Evaluation agrees too.
        let (x, y) = batch(&spec, 99, 40);
        let ec = cpu.evaluate(&x, &y).unwrap();
        let eg = gpu.evaluate(&x, &y).unwrap();
        assert_eq!(ec.correct, eg.correct);
        assert!((ec.loss_sum - eg.loss_sum).abs() <= 1e-4 * ec.loss_sum);
    }
}
