//! The training kernels (shaders/train_*.wgsl) against their CPU twin
//! (src/train/cpu.rs), on whatever adapter wgpu finds (lavapipe in CI).
//! Without an adapter these tests skip with a message, unless
//! QUANTDEPTH_REQUIRE_GPU=1 (set by .ci/run), where they fail.

use quantdepth::rng::Stream;
use quantdepth::sim::gpu::AdapterPolicy;
use quantdepth::train::cpu::{gemm, Trainer};
use quantdepth::train::gpu::{shaders, GpuTrainBackend, Tile};
use quantdepth::train::model::{theory_init, ModelSpec, Params, Phi, Preset};
use quantdepth::train::{CpuTrainBackend, TrainBackend};

mod common;

fn backend() -> Option<GpuTrainBackend> {
    let b = common::or_skip(
        GpuTrainBackend::new(AdapterPolicy::PreferHardware),
        "GPU training test",
    )?;
    eprintln!("GPU training tests on {}", b.context().describe());
    Some(b)
}

#[test]
fn every_training_wgsl_file_validates_with_naga() {
    common::validate("train_loss.wgsl", &shaders::loss());
    for tile in Tile::ALL {
        for (name, kernel) in [
            ("train_forward.wgsl", shaders::FORWARD),
            ("train_backward.wgsl", shaders::BACKWARD),
            ("train_update.wgsl", shaders::UPDATE),
        ] {
            common::validate(
                &format!("{name} {}", tile.name()),
                &shaders::product(kernel, tile),
            );
        }
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

/// A tiny network (20 inputs, 10 classes, width 24, N = 4) at the theory's
/// initialization: a few thousand pre-activations, so none lies within
/// rounding of a quantizer step and CPU and GPU take the same branches.
fn tiny_spec(depth: usize, sigma_b: f64, quantize_logits: bool) -> ModelSpec {
    let init = theory_init(4, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).unwrap();
    ModelSpec {
        input_dim: 20,
        width: 24,
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
        sigma_b,
        quantize_logits,
    }
}

/// Largest |a − b| over the largest |b|, with the entry where it is largest.
fn worst(a: &[f32], b: &[f32]) -> (f64, f64, usize) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &y| m.max(f64::from(y.abs())));
    let (k, d) = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .enumerate()
        .fold((0, 0f64), |m, (k, d)| if d > m.1 { (k, d) } else { m });
    (d, scale, k)
}

/// train_gemm.wgsl against its CPU twin `gemm`: the first layer of a
/// network with zero biases, whose pre-activations are the bare product
/// H = W·X (as
/// train_forward.wgsl runs the tiled product), for 13 inputs (off the
/// 16 × 16 tiles). Sums over 20 terms in different orders: each entry
/// within 1e-5 of the largest (f32 rounding is ~1e-7), where a wrong stride
/// or tile edge would be off by O(1).
#[test]
fn train_gemm_gpu_equals_cpu() {
    let Some(mut gpu) = backend() else { return };
    let spec = tiny_spec(2, 0.0, false);
    let p0 = Params::init(&spec, 5);
    gpu.load(&spec, &p0).unwrap();
    let b = 13;
    let (x, y) = batch(&spec, 0, b);
    gpu.evaluate(&x, &y).unwrap();
    let got = gpu.layer_outputs().unwrap().remove(0).0;
    let (fan_in, fan_out) = spec.layer_shape(0);
    let mut want = vec![0f32; fan_out * b];
    gemm(
        fan_out,
        fan_in,
        b,
        &p0.weights[0],
        (fan_in, 1),
        &x,
        (b, 1),
        &mut want,
    );
    let (d, scale, k) = worst(&got, &want);
    assert!(d <= 1e-5 * scale, "entry {k}: |Δ| {d:e}, largest {scale}");
}

/// train_forward.wgsl against its CPU twin `Trainer::forward`: every
/// layer's pre-activations H within 1e-5 of the layer's largest (one
/// differently ordered product per layer) and its quantized φ(H) on the
/// same level (within 1e-5; the GPU forms −A + k·step in f32, the CPU in
/// f64, while a different level is a step of 2/3 away: no pre-activation of
/// the tiny network sits within rounding of a step), with and without
/// quantized logits.
#[test]
fn train_forward_gpu_equals_cpu() {
    let Some(mut gpu) = backend() else { return };
    for quantize_logits in [false, true] {
        let spec = tiny_spec(3, 0.1, quantize_logits);
        let p0 = Params::init(&spec, 7);
        gpu.load(&spec, &p0).unwrap();
        let (x, y) = batch(&spec, 1, 11);
        gpu.evaluate(&x, &y).unwrap();
        let mut cpu = Trainer::new(&spec, p0);
        cpu.forward(&x, y.len());
        let layers = gpu.layer_outputs().unwrap();
        for (l, (h, a)) in layers.iter().enumerate() {
            let (d, scale, k) = worst(h, &cpu.pre_activations()[l]);
            assert!(
                d <= 1e-5 * scale,
                "quantized logits {quantize_logits}, layer {l}, entry {k}: H differs by {d:e} (largest {scale})"
            );
            if l + 1 < spec.depth || quantize_logits {
                let want = &cpu.activations()[l];
                let differ = a
                    .iter()
                    .zip(want)
                    .filter(|(p, q)| (*p - *q).abs() > 1e-5)
                    .count();
                assert_eq!(
                    differ, 0,
                    "quantized logits {quantize_logits}, layer {l}: φ(H) differs"
                );
            }
        }
    }
}

/// train_loss.wgsl against its CPU twin `Trainer::loss`, after the same
/// forward pass: the summed cross-entropy of 40 inputs to 1e-5 relative
/// (f32 exponentials and sums of 10 classes) and the same count of correct
/// predictions, with and without quantized logits.
#[test]
fn train_loss_gpu_equals_cpu() {
    let Some(mut gpu) = backend() else { return };
    for quantize_logits in [false, true] {
        let spec = tiny_spec(3, 0.1, quantize_logits);
        let p0 = Params::init(&spec, 9);
        gpu.load(&spec, &p0).unwrap();
        let (x, y) = batch(&spec, 2, 40);
        let g = gpu.evaluate(&x, &y).unwrap();
        let mut cpu = Trainer::new(&spec, p0);
        cpu.forward(&x, y.len());
        let c = cpu.loss(&y);
        assert_eq!(g.correct, c.correct, "quantized logits {quantize_logits}");
        assert_eq!(g.ties, c.ties, "quantized logits {quantize_logits}");
        assert!(
            (g.loss_sum - c.loss_sum).abs() <= 1e-5 * c.loss_sum,
            "quantized logits {quantize_logits}: loss gpu {} cpu {}",
            g.loss_sum,
            c.loss_sum
        );
    }
}

/// train_backward.wgsl against its CPU twin `Trainer::backward`: one GPU
/// step with learning rate 1 and no momentum moves every weight by exactly
/// its gradient (w' = w − ΔW, one f32 rounding of |w| ~ 0.5, ~6e-8), so
/// w − w' is the GPU's ΔW = G·Aᵀ of each layer, whose G below the top comes
/// through the transposed, STE-masked backward product. Each layer's ΔW and
/// Δb within 1e-4 of the layer's largest CPU gradient (~1e-2): far above
/// rounding, far below a wrong transpose or mask.
#[test]
fn train_backward_gpu_equals_cpu() {
    let Some(mut gpu) = backend() else { return };
    for quantize_logits in [false, true] {
        let spec = tiny_spec(4, 0.1, quantize_logits);
        let p0 = Params::init(&spec, 13);
        gpu.load(&spec, &p0).unwrap();
        let (x, y) = batch(&spec, 3, 8);
        gpu.step(&x, &y, 1.0, 0.0).unwrap();
        let p1 = gpu.params().unwrap();
        let mut cpu = Trainer::new(&spec, p0.clone());
        cpu.forward(&x, y.len());
        cpu.loss(&y);
        cpu.backward(&x);
        let moved =
            |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(u, v)| u - v).collect() };
        for l in 0..spec.depth {
            for (what, before, after, want) in [
                ("ΔW", &p0.weights[l], &p1.weights[l], &cpu.grads.weights[l]),
                ("Δb", &p0.biases[l], &p1.biases[l], &cpu.grads.biases[l]),
            ] {
                let (d, scale, k) = worst(&moved(before, after), want);
                assert!(
                    d <= 1e-4 * scale,
                    "quantized logits {quantize_logits}, layer {l}, {what} entry {k}: differs by {d:e} (largest {scale})"
                );
            }
        }
    }
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
fn train_update_gpu_equals_cpu_step_by_step() {
    let Some(mut gpu) = backend() else { return };
    for quantize_logits in [false, true] {
        let spec = tiny_spec(4, 0.1, quantize_logits);
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

/// Steps `from..to` of batch 8 on `b` (learning rate 0.05, momentum 0.5).
fn steps(b: &mut dyn TrainBackend, spec: &ModelSpec, from: u32, to: u32) {
    for s in from..to {
        let (x, y) = batch(spec, s, 8);
        b.step(&x, &y, 0.05, 0.5).unwrap();
    }
}

/// A checkpoint's state (TrainBackend::save_state) restored into a freshly
/// loaded network continues to the same bits as training that never
/// stopped: 3 steps, save, load another network over it, restore, 4 more
/// steps equal 7 uninterrupted steps in weights, momentum and the loss
/// accumulated since the last report — on the GPU (its momentum read back
/// from the device) and on the CPU. A restore that lost the momentum or the
/// loss sums would differ (the momentum moves every later step).
#[test]
fn train_state_save_and_restore_continue_bit_for_bit() {
    let gpu = backend();
    let mut backends: Vec<Box<dyn TrainBackend>> = vec![Box::new(CpuTrainBackend::default())];
    if let Some(g) = gpu {
        backends.push(Box::new(g));
    }
    let spec = tiny_spec(4, 0.1, false);
    let p0 = Params::init(&spec, 5);
    for b in &mut backends {
        let b = b.as_mut();
        b.load(&spec, &p0).unwrap();
        steps(b, &spec, 0, 7);
        let want = b.save_state().unwrap();
        b.load(&spec, &p0).unwrap();
        steps(b, &spec, 0, 3);
        let mid = b.save_state().unwrap();
        assert!(
            mid.velocity.weights[1].iter().any(|v| *v != 0.0),
            "{}: no momentum after 3 steps",
            b.describe()
        );
        assert_eq!(mid.loss_inputs, 24);
        b.load(&spec, &Params::init(&spec, 6)).unwrap();
        steps(b, &spec, 10, 12);
        b.restore_state(&spec, &mid).unwrap();
        steps(b, &spec, 3, 7);
        let got = b.save_state().unwrap();
        assert!(
            got == want,
            "{}: the restored network differs",
            b.describe()
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.loss_sums), bits(&want.loss_sums));
        assert_eq!(got.loss_inputs, 56);
    }
}

/// Every product tile variant (train_gemm.wgsl's TM × TN outputs per
/// thread), forced on all three products, against the CPU twin on a
/// network of width 40 and batches of 37 and 40, so that every tile has
/// partial edges in both directions (40 and 37 are multiples of none of 16,
/// 32, 64) and the 32- and 64-wide tiles cover whole matrices: (a) every
/// layer's pre-activations within 1e-5 of the layer's largest; (b) one step
/// at learning rate 1 without momentum moves each weight by its gradient,
/// within 1e-4 of the layer's largest (as `train_backward_gpu_equals_cpu`);
/// (c) 10 steps with momentum end at the CPU's weights within 1e-4 relative
/// (as `train_update_gpu_equals_cpu_step_by_step`). A wrong edge, stride or
/// register index moves an output by O(1) of the largest.
#[test]
fn every_product_tile_equals_the_cpu_step() {
    let Some(mut gpu) = backend() else { return };
    let spec = ModelSpec {
        width: 40,
        ..tiny_spec(3, 0.1, false)
    };
    let p0 = Params::init(&spec, 21);
    for tile in Tile::ALL {
        gpu.set_tile(Some(tile));
        let name = tile.name();
        // (a) The forward products.
        gpu.load(&spec, &p0).unwrap();
        let (x, y) = batch(&spec, 4, 37);
        gpu.evaluate(&x, &y).unwrap();
        let mut cpu = Trainer::new(&spec, p0.clone());
        cpu.forward(&x, y.len());
        for (l, (h, _)) in gpu.layer_outputs().unwrap().iter().enumerate() {
            let (d, scale, k) = worst(h, &cpu.pre_activations()[l]);
            assert!(
                d <= 1e-5 * scale,
                "tile {name}, layer {l}, entry {k}: H differs by {d:e} (largest {scale})"
            );
        }
        // (b) The backward and weight-gradient products of one step.
        gpu.step(&x, &y, 1.0, 0.0).unwrap();
        let p1 = gpu.params().unwrap();
        cpu.loss(&y);
        cpu.backward(&x);
        for l in 0..spec.depth {
            let moved: Vec<f32> = p0.weights[l]
                .iter()
                .zip(&p1.weights[l])
                .map(|(u, v)| u - v)
                .collect();
            let (d, scale, k) = worst(&moved, &cpu.grads.weights[l]);
            assert!(
                d <= 1e-4 * scale,
                "tile {name}, layer {l}, ΔW entry {k}: differs by {d:e} (largest {scale})"
            );
        }
        // (c) Ten steps with momentum.
        let mut cpu = CpuTrainBackend::default();
        cpu.load(&spec, &p0).unwrap();
        gpu.load(&spec, &p0).unwrap();
        for s in 0..10u32 {
            let (x, y) = batch(&spec, s, 40);
            cpu.step(&x, &y, 0.05, 0.5).unwrap();
            gpu.step(&x, &y, 0.05, 0.5).unwrap();
        }
        let (diff, scale) = max_rel(&cpu.params().unwrap(), &gpu.params().unwrap());
        assert!(
            diff <= 1e-4 * scale,
            "tile {name}: weights differ by {diff:e} after 10 steps (largest {scale})"
        );
    }
}

/// The default tile of each product shape: the largest that fits inside
/// the product (a batch of 32 never gets a 64-column tile; a width-24
/// network keeps the plain 16 × 16 tile).
#[test]
fn default_tiles_follow_the_product_shape() {
    assert_eq!(Tile::for_shape(24, 8), Tile::T16x16);
    assert_eq!(Tile::for_shape(2048, 32), Tile::T64x32);
    assert_eq!(Tile::for_shape(2048, 2048), Tile::T64x64);
    assert_eq!(Tile::for_shape(40, 37), Tile::T32x32);
    assert_eq!(Tile::for_shape(64, 31), Tile::T16x16);
    for t in Tile::ALL {
        assert_eq!(Tile::from_name(&t.name()), Some(t));
        let (bm, bn) = t.shape();
        assert_eq!(t.groups(bm + 1, bn), (1, 2));
    }
}
