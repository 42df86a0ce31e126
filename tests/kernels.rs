//! The layer kernel's variants (src/sim/kernel.rs): every WGSL variant
//! validates with naga; on an adapter (lavapipe in CI) each equals the CPU
//! twin for one layer, agrees with it statistically over 20 layers, and
//! gives the same bits for the same seed; the int64 generator equals
//! src/rng.rs bit for bit; the same for the backward step's variants
//! (tiled, split-K, wide, wide256, ± int64) against `LayerWeights::transposed` and the
//! CPU backward pass. Without an adapter the GPU tests skip, unless
//! QUANTDEPTH_REQUIRE_GPU=1 (CI), where they fail.

use quantdepth::sim::gpu::variant::{self as kernel, KernelVariant, Tiling};

/// The backward step's variants for small batches ([`KernelVariant::backward`]'s
/// values; the wide ones are `WIDE_BACKWARD_VARIANTS`).
const BACKWARD_VARIANTS: [KernelVariant; 4] = [
    KernelVariant::Tiled,
    KernelVariant::SplitK,
    KernelVariant::TiledInt64,
    KernelVariant::SplitKInt64,
];

#[test]
fn every_variant_validates_with_naga() {
    let mut modules: Vec<(String, String)> = Vec::new();
    for v in KernelVariant::ALL {
        for tb in [16, 32, 64] {
            modules.push((format!("{v} TB={tb}"), kernel::layer_source(v, tb)));
        }
    }
    modules.push(("combine".into(), kernel::combine_source(false)));
    modules.push(("combine int64".into(), kernel::combine_source(true)));
    for v in BACKWARD_VARIANTS {
        for tb in [16, 32, 64] {
            modules.push((
                format!("backward {v} TB={tb}"),
                kernel::backward_source(v, tb),
            ));
        }
    }
    modules.push((
        "backward combine".into(),
        kernel::backward_combine_source(false),
    ));
    modules.push((
        "backward combine int64".into(),
        kernel::backward_combine_source(true),
    ));
    for (name, src) in modules {
        let module = common::validate(&name, &src);
        if name.contains("int64") {
            // Without SHADER_INT64 the u64 product must be refused.
            let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SHADER_INT64;
            assert!(
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                    .validate(&module)
                    .is_err(),
                "{name} validated without SHADER_INT64"
            );
        }
    }
}

use quantdepth::rng::{philox4x32_10, Stream};
use quantdepth::setup::NetworkChoice;
use quantdepth::sim::cpu::{self, CpuBackend};
use quantdepth::sim::gpu::autotune::{Tuner, CACHE_FILE};
use quantdepth::sim::gpu::KernelChoice;
use quantdepth::sim::gpu::{shaders, AdapterPolicy, GpuBackend};
use quantdepth::sim::{Backend, Inputs, SimActivation, SimSpec, Weights};
use std::sync::{Arc, Mutex};

mod common;

fn backend() -> Option<GpuBackend> {
    let b = common::or_skip(GpuBackend::new(AdapterPolicy::PreferHardware), "GPU test")?;
    eprintln!(
        "kernel variant tests on {} ({:?})",
        b.context().describe(),
        b.kernel_caps()
    );
    Some(b)
}

fn spec(width: usize, depth: usize, samples: usize, inputs: Inputs, weights: Weights) -> SimSpec {
    let mut ch = NetworkChoice::uniform(8);
    ch.sigma_b = Some(0.1);
    let r = ch.resolve().unwrap();
    let mut s = SimSpec::of_network(&r, width, depth, samples, 23, inputs);
    s.weights = weights;
    s
}

/// B = 5 (a circle of 5 points) or B = 130 (65 pairs).
fn inputs(batch: usize) -> Inputs {
    match batch {
        5 => Inputs::Circle { points: 5 },
        _ => Inputs::Pairs {
            c0: vec![0.5],
            pairs: batch / 2,
        },
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// One layer of every applicable variant of `tiling` equals the CPU twin
/// to f32 rounding (|Δ| ≤ 1e-5·rms) at sizes off the tiles (n = 200, 333;
/// B = 5, 130), for Gaussian and Rademacher weights; the same seed gives the
/// same bits (three layers, run twice); and an `-int64` variant gives
/// bitwise the output of its 32-bit twin (the generator is exact either
/// way, and the arithmetic after it is the same).
fn one_layer_equals_cpu(tiling: Tiling) {
    let Some(mut b) = backend() else { return };
    let caps = b.kernel_caps();
    let mut ran = Vec::new();
    for (width, batch, weights) in [
        (200, 5, Weights::Gaussian),
        (333, 130, Weights::Gaussian),
        (333, 5, Weights::Rademacher),
        (200, 130, Weights::Rademacher),
    ] {
        let one = spec(width, 1, 1, inputs(batch), weights);
        let x = one.input_vectors(0);
        assert_eq!(x.len(), batch);
        let act = SimActivation::from_activation(&one.activation);
        let a: Vec<f32> = cpu::feature_major(&x, width)
            .iter()
            .map(|&v| act.eval(v))
            .collect();
        let mut want = vec![0f32; width * batch];
        cpu::ensemble_layer_with_stats(
            weights,
            &a,
            width,
            batch,
            &Stream::new(one.seed, 0),
            1,
            one.sigma_w,
            one.sigma_b,
            &mut want,
            None,
        );
        let three = SimSpec {
            depth: 3,
            ..one.clone()
        };
        let mut outputs = Vec::new();
        for v in kernel::applicable(width, batch, &caps)
            .into_iter()
            .filter(|v| v.tiling() == tiling)
        {
            b.set_kernel(KernelChoice::Forced(v), None);
            let got = b.propagate(&one, &x, 0).unwrap();
            common::assert_within_rounding(
                &format!("{v} n {width} B {batch} {weights}"),
                &got,
                &want,
            );
            let deep = b.propagate(&three, &x, 0).unwrap();
            assert_eq!(
                bits(&deep),
                bits(&b.propagate(&three, &x, 0).unwrap()),
                "{v} n {width} B {batch}: same seed, different bits"
            );
            assert_eq!(b.kernels_used(), [v]);
            assert_eq!(b.info().kernel.as_deref(), Some(v.name()));
            outputs.push((v, bits(&deep)));
            ran.push(v);
        }
        assert_int64_equals_twin(&format!("n {width} B {batch}"), &outputs);
    }
    assert_every_variant_ran(
        "",
        KernelVariant::ALL
            .into_iter()
            .filter(|v| v.tiling() == tiling),
        &ran,
        caps.int64,
    );
}

/// Each `-int64` variant's result among `outputs` equals its 32-bit
/// twin's exactly (the generator is exact either way); `what` names the case.
fn assert_int64_equals_twin<T: PartialEq>(what: &str, outputs: &[(KernelVariant, T)]) {
    for (v, out) in outputs.iter().filter(|(v, _)| v.int64()) {
        let twin = v.without_int64();
        let twin_out = &outputs.iter().find(|(w, _)| *w == twin).unwrap().1;
        assert!(out == twin_out, "{v} differs from {twin} at {what}");
    }
}

/// Every one of `variants` ran (is in `ran`), except the `-int64` ones on
/// an adapter without SHADER_INT64; `stage` prefixes the messages.
fn assert_every_variant_ran(
    stage: &str,
    variants: impl IntoIterator<Item = KernelVariant>,
    ran: &[KernelVariant],
    int64: bool,
) {
    for v in variants {
        if v.int64() && !int64 {
            eprintln!("{stage}{v} not tested: this adapter has no SHADER_INT64");
        } else {
            assert!(ran.contains(&v), "{stage}{v} never applied");
        }
    }
}

/// `tiled` and `tiled-int64` (layer.wgsl) against the CPU layer.
#[test]
fn layer_tiled_variants_gpu_equal_cpu() {
    one_layer_equals_cpu(Tiling::Tiled);
}

/// `splitk` and `splitk-int64` (layer.wgsl with SPLIT, then
/// layer_combine.wgsl) against the CPU layer.
#[test]
fn layer_combine_splitk_variants_gpu_equal_cpu() {
    one_layer_equals_cpu(Tiling::SplitK);
}

/// `wide` and `wide-int64` (layer_wide.wgsl) against the CPU layer.
#[test]
fn layer_wide_variants_gpu_equal_cpu() {
    one_layer_equals_cpu(Tiling::Wide);
}

/// `wide256` and `wide256-int64` (layer_wide.wgsl at 256 columns) against the CPU layer.
#[test]
fn layer_wide256_variants_gpu_equal_cpu() {
    one_layer_equals_cpu(Tiling::Wide256);
}

/// A device like a large GPU's limits (128 MiB bindings), ± SHADER_INT64.
fn caps(int64: bool) -> kernel::DeviceCaps {
    kernel::DeviceCaps {
        int64,
        max_invocations: 256,
        max_workgroup_storage: 32 * 1024,
        max_storage_binding: 128 << 20,
        max_workgroups_per_dim: 65535,
    }
}

/// Stacking applies from 2 networks at B ≤ 64 within one storage
/// binding, and takes enough networks for ≈ 8,192 workgroups.
#[test]
fn stacking_needs_two_samples_a_small_batch_and_memory() {
    let c = caps(true);
    // One network (or B = 65): no stacked candidate.
    assert!(!kernel::applicable_to(333, 5, 1, &c).contains(&KernelVariant::Stacked));
    assert!(!KernelVariant::Stacked.applicable_to(333, 65, 10, &c));
    assert!(!KernelVariant::Stacked.applicable(333, 5, &c));
    assert_eq!(
        kernel::applicable_to(333, 5, 3, &caps(false)),
        [
            KernelVariant::Tiled,
            KernelVariant::SplitK,
            KernelVariant::Stacked
        ]
    );
    assert!(KernelVariant::StackedInt64.applicable_to(333, 64, 2, &c));
    assert!(!KernelVariant::StackedInt64.applicable_to(333, 64, 2, &caps(false)));
    // n = 16384, B = 16: 256 tiled workgroups → 32 networks reach 8,192.
    assert_eq!(kernel::stack_count(16384, 16, 100, &c), 32);
    assert_eq!(kernel::stack_count(16384, 16, 5, &c), 5);
    assert_eq!(kernel::stack_count(1024, 65, 100, &c), 0);
    // n = 4096, B = 64: 64 tiled workgroups → 128 networks, as many
    // as 128 MiB holds; a binding of 2 stacks allows 2, one float less 1.
    assert_eq!(kernel::stack_count(4096, 64, 1000, &c), 128);
    let mut tight = c;
    tight.max_storage_binding = 2 * 4096 * 64 * 4;
    assert_eq!(kernel::stack_count(4096, 64, 100, &tight), 2);
    tight.max_storage_binding -= 4;
    assert!(!KernelVariant::Stacked.applicable_to(4096, 64, 100, &tight));
    assert_eq!(
        KernelVariant::Stacked.stacked_workgroups(333, 5, 1 << 20, 3),
        (1, 6, 3)
    );
    assert_eq!(
        KernelVariant::Tiled.stacked_workgroups(333, 5, 1 << 20, 3),
        (1, 6, 1)
    );
}

/// A run's stacks differ by at most one network; records name the stack.
#[test]
fn stacks_are_balanced_and_records_name_the_variant() {
    assert_eq!(kernel::balanced_stack(100, 32), 25);
    assert_eq!(kernel::balanced_stack(5, 2), 2);
    assert_eq!(kernel::balanced_stack(1, 2), 1);
    assert_eq!(kernel::balanced_stack(7, 100), 7);
    // Every stack of a run holds ⌊left/k⌋ or ⌈left/k⌉ samples, at most `most`.
    for (total, most) in [(5, 2), (33, 32), (100, 7), (9, 4)] {
        let (mut left, mut sizes) = (total, Vec::new());
        while left > 0 {
            let s = kernel::balanced_stack(left, most);
            assert!(s >= 1 && s <= most && s <= left);
            sizes.push(s);
            left -= s;
        }
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "{total}/{most}: {sizes:?}");
    }
    assert_eq!(KernelVariant::Stacked.label(4), "stacked (S=4)");
    assert_eq!(KernelVariant::Tiled.label(4), "tiled");
    for v in KernelVariant::ALL {
        assert_eq!(KernelVariant::from_record(&v.label(3)), Some(v));
        assert_eq!(KernelVariant::from_record(v.name()), Some(v));
    }
    assert_eq!(KernelVariant::from_record("tiled (S=3)"), None);
    assert_eq!(KernelVariant::from_record("stacked (S=x)"), None);
    assert_eq!(KernelVariant::from_record("stacked (S=2) + tiled"), None);
}

/// The stacked variants' inputs: B = 5 (a circle) or B = 16 (8 pairs).
fn stack_inputs(batch: usize) -> Inputs {
    match batch {
        5 => Inputs::Circle { points: 5 },
        _ => Inputs::Pairs {
            c0: vec![0.5],
            pairs: batch / 2,
        },
    }
}

/// `stacked` and `stacked-int64` (layer.wgsl with STACK: S = 3 networks
/// per dispatch, sample on z): each network's pre-activations after three
/// layers are bitwise those of the tiled kernel run on that network alone
/// (same tiles, same loop order; σ_b = 0.1, so the per-sample bias is
/// checked too), Gaussian and Rademacher; one layer of each network equals
/// the CPU twin with that network's stream to f32 rounding (|Δ| ≤ 1e-5·rms)
/// at n = 200, 333 and B = 5, 16; the same seed gives the same bits.
#[test]
fn layer_stacked_variants_gpu_equal_tiled_and_cpu() {
    let Some(mut b) = backend() else { return };
    let caps = b.kernel_caps();
    let mut ran = Vec::new();
    for (width, batch, weights) in [
        (333, 5, Weights::Gaussian),
        (333, 5, Weights::Rademacher),
        (200, 16, Weights::Gaussian),
        (200, 16, Weights::Rademacher),
    ] {
        let three = spec(width, 3, 3, stack_inputs(batch), weights);
        let one = SimSpec {
            depth: 1,
            ..three.clone()
        };
        assert_eq!(three.sigma_b, 0.1);
        let x: Vec<Vec<Vec<f64>>> = (0..3).map(|k| three.input_vectors(k)).collect();
        assert_eq!(x[0].len(), batch);
        b.set_kernel(KernelChoice::Forced(KernelVariant::Tiled), None);
        let tiled: Vec<Vec<u32>> = (0..3u32)
            .map(|k| bits(&b.propagate(&three, &x[k as usize], k).unwrap()))
            .collect();
        assert_ne!(tiled[0], tiled[1], "two networks gave the same output");
        let act = SimActivation::from_activation(&one.activation);
        for v in [KernelVariant::Stacked, KernelVariant::StackedInt64] {
            if !v.applicable_to(width, batch, 3, &caps) {
                continue;
            }
            b.set_kernel(KernelChoice::Forced(v), None);
            let what = format!("{v} n {width} B {batch} {weights}");
            let deep = b.propagate_stack(&three, &x, 0).unwrap();
            assert_eq!(deep.len(), 3);
            for (k, h) in deep.iter().enumerate() {
                assert!(
                    bits(h) == tiled[k],
                    "{what}: network {k} differs from tiled"
                );
            }
            let again = b.propagate_stack(&three, &x, 0).unwrap();
            assert!(deep == again, "{what}: same seed, different bits");
            assert_eq!(b.kernels_used(), [v]);
            assert_eq!(b.info().kernel, Some(format!("{v} (S=3)")));
            let got = b.propagate_stack(&one, &x, 0).unwrap();
            for (k, xs) in x.iter().enumerate() {
                let a: Vec<f32> = cpu::feature_major(xs, width)
                    .iter()
                    .map(|&v| act.eval(v))
                    .collect();
                let mut want = vec![0f32; width * batch];
                cpu::ensemble_layer_with_stats(
                    weights,
                    &a,
                    width,
                    batch,
                    &Stream::new(one.seed, k as u32),
                    1,
                    one.sigma_w,
                    one.sigma_b,
                    &mut want,
                    None,
                );
                common::assert_within_rounding(&format!("{what} network {k}"), &got[k], &want);
            }
            ran.push(v);
        }
    }
    assert_every_variant_ran(
        "",
        [KernelVariant::Stacked, KernelVariant::StackedInt64],
        &ran,
        caps.int64,
    );
}

/// `sim::simulate` with `stacked` forced, at most 2 networks per dispatch
/// (5 samples: stacks of 2, 2 and 1), gives bitwise the statistics of
/// `tiled` (each network's layers are the tiled kernel's bits, and the
/// aggregate commits samples in order), Gaussian and Rademacher, pairs and
/// a circle; the record names the stack. Cancelled in the second stack's
/// second layer, it keeps exactly the 2 samples of the first stack, bitwise
/// those of a 2-sample tiled run.
#[test]
fn simulate_stacked_equals_tiled_bitwise() {
    use quantdepth::sim::{simulate, Control};
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(mut b) = backend() else { return };
    for (inputs, weights) in [
        (
            Inputs::Pairs {
                c0: vec![0.3, 0.9],
                pairs: 2,
            },
            Weights::Gaussian,
        ),
        (Inputs::Circle { points: 5 }, Weights::Rademacher),
    ] {
        let s = spec(333, 6, 5, inputs, weights);
        b.set_kernel(KernelChoice::Forced(KernelVariant::Tiled), None);
        let tiled = common::run(&mut b, &s);
        b.set_kernel(KernelChoice::Forced(KernelVariant::Stacked), None);
        b.set_stack_limit(Some(2));
        assert_eq!(b.samples_per_pass(&s, 5), 2);
        assert_eq!(b.samples_per_pass(&s, 1), 1);
        let stacked = common::run(&mut b, &s);
        assert!(stacked.complete && stacked.stats.samples == 5);
        assert_eq!(stacked.backend.kernel.as_deref(), Some("stacked (S=2)"));
        assert!(
            stacked.stats == tiled.stats,
            "{weights}: stacked statistics differ from tiled"
        );
        if weights == Weights::Gaussian {
            // Cancel at the 11th network-layer: the first stack (2 × 6) is
            // done at 12, so set it at 14 (second stack, layer 1 of both).
            let cancel = AtomicBool::new(false);
            let progress = |done: u64| {
                if done == 14 {
                    cancel.store(true, Ordering::Relaxed);
                }
            };
            let ctl = Control {
                progress: &progress,
                cancel: &cancel,
            };
            let part = simulate(&mut b, &s, &ctl).unwrap();
            assert!(!part.complete);
            assert_eq!(part.stopped.as_deref(), Some("interrupted"));
            b.set_kernel(KernelChoice::Forced(KernelVariant::Tiled), None);
            let two = common::run(
                &mut b,
                &SimSpec {
                    samples: 2,
                    ..s.clone()
                },
            );
            assert!(
                part.stats == two.stats,
                "the kept samples are not the first stack's"
            );
        }
        b.set_stack_limit(None);
    }
}

/// The tuner offers the stacked variants only for a stack of networks at
/// a small batch: one sample or B = 66 → not timed; 3 samples at B = 6 →
/// timed, under a cache key of its own (` S=3`).
#[test]
fn tuner_offers_stacked_only_to_several_networks_at_small_batch() {
    let Some(mut b) = backend() else { return };
    let dir = temp_dir("stack-tune");
    let pairs = |p| Inputs::Pairs {
        c0: vec![0.5],
        pairs: p,
    };
    for (samples, p, offered) in [(1, 3, false), (3, 33, false), (3, 3, true)] {
        let s = spec(96, 1, samples, pairs(p), Weights::Gaussian);
        let seen = notices(&mut b, &dir);
        assert!(common::run(&mut b, &s).complete);
        let seen = seen.lock().unwrap();
        let timing: Vec<&String> = seen.iter().filter(|m| m.starts_with("tuning")).collect();
        assert_eq!(timing.len(), 1, "samples {samples} B {}: {seen:?}", 2 * p);
        assert_eq!(
            timing[0].contains("stacked"),
            offered,
            "samples {samples} B {}: {}",
            2 * p,
            timing[0]
        );
    }
    let text = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
    assert!(text.contains("n=96 B=6 S=3 gaussian"), "{text}");
    assert!(text.contains("n=96 B=6 gaussian"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Twenty layers: every variant's statistics agree with the CPU backend's
/// within 5 combined standard errors (the variants use the same weights, so
/// only f32 rounding, amplified by the chaotic dynamics, separates them).
#[test]
fn twenty_layer_statistics_of_every_variant_agree_with_cpu() {
    let Some(mut b) = backend() else { return };
    let caps = b.kernel_caps();
    let c0 = vec![0.3, 0.9];
    for (batch, pairs) in [(8, 2), (132, 33)] {
        let s = spec(
            200,
            20,
            12,
            Inputs::Pairs {
                c0: c0.clone(),
                pairs,
            },
            Weights::Gaussian,
        );
        assert_eq!(s.measurements().batch, batch);
        let c = common::run(&mut CpuBackend, &s);
        for v in kernel::applicable_to(200, batch, s.samples, &caps) {
            b.set_kernel(KernelChoice::Forced(v), None);
            let g = common::run(&mut b, &s);
            let record = g.backend.kernel.as_deref().unwrap();
            assert_eq!(KernelVariant::from_record(record), Some(v), "{record}");
            for (pg, pc) in g.stats.pairs.iter().zip(&c.stats.pairs) {
                for (eg, ec) in pg.layers.iter().zip(&pc.layers).skip(1) {
                    common::assert_layer_within_5se(&format!("{v} B {batch}"), eg, ec);
                }
            }
        }
    }
}

/// The u64 Philox multiply (shaders/mul64.wgsl in rng_check.wgsl) equals
/// src/rng.rs bit for bit over 2^16 counters.
#[test]
fn int64_generator_equals_rust_bit_for_bit() {
    let Some(b) = backend() else { return };
    if !b.kernel_caps().int64 {
        eprintln!("skipping: {} has no SHADER_INT64", b.context().describe());
        return;
    }
    let ctx = b.context();
    let count: u32 = 1 << 16;
    let (key, row, layer, sample) = ([0x0bad_cafeu32, 0x1234_5678u32], 9u32, 3u32, 2u32);
    let (w, _) = common::rng_check(
        ctx,
        "rng_check int64",
        shaders::with_mul64(&shaders::rng_check()),
        key,
        (row, layer, sample),
        count,
    );
    for i in 0..count as usize {
        let want = philox4x32_10([i as u32, row, layer, sample], key);
        assert_eq!(&w[4 * i..4 * i + 4], &want, "counter {i}");
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-kernels-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs the CLI on `args` (split at whitespace) then `extra`, with the
/// kernel tuning cache in `cache`: (exit code, stdout, stderr).
fn quantdepth(
    cache: &std::path::Path,
    args: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args(args.split_whitespace())
        .args(extra)
        .env("QUANTDEPTH_CACHE_DIR", cache)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn notices(b: &mut GpuBackend, dir: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    b.set_kernel(KernelChoice::Auto, None);
    b.set_tuner(
        Tuner::new(Some(dir.to_path_buf()))
            .with_notify(Box::new(move |m| sink.lock().unwrap().push(m.to_string()))),
    );
    seen
}

/// The tuner on the device: a forced variant runs and writes no cache; a
/// forced variant that does not apply is an error naming those that do;
/// `auto` tunes once, caches, and a fresh backend reads the cache; a
/// corrupt cache file is reported and replaced and the run succeeds; an
/// entry for another driver version is a miss (tuned again).
#[test]
fn tuner_choice_and_cache_on_the_device() {
    let Some(mut b) = backend() else { return };
    let s = spec(
        160,
        2,
        1,
        Inputs::Pairs {
            c0: vec![0.5],
            pairs: 3,
        },
        Weights::Gaussian,
    );
    let dir = temp_dir("tune");
    b.set_kernel(
        KernelChoice::Forced(KernelVariant::SplitK),
        Some(dir.clone()),
    );
    let o = common::run(&mut b, &s);
    assert_eq!(o.backend.kernel.as_deref(), Some("splitk"));
    assert!(
        !dir.join(CACHE_FILE).exists(),
        "a forced variant wrote the cache"
    );
    b.set_kernel(KernelChoice::Forced(KernelVariant::Wide), Some(dir.clone()));
    let e = b
        .propagate(&s, &s.input_vectors(0), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--kernel = wide") && e.contains("tiled, splitk"),
        "{e}"
    );

    let seen = notices(&mut b, &dir);
    let o = common::run(&mut b, &s);
    let chosen = o.backend.kernel.clone().unwrap();
    let cands: Vec<&str> = kernel::applicable(160, 6, &b.kernel_caps())
        .iter()
        .map(|v| v.name())
        .collect();
    assert!(
        cands.contains(&chosen.as_str()),
        "{chosen} not in {cands:?}"
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with("tuning"))
            .count(),
        1
    );
    let text = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
    assert!(
        text.contains(&format!("\"variant\": \"{chosen}\"")),
        "{text}"
    );

    // A fresh backend reads the cache: no tuning.
    let Some(mut b2) = backend() else { return };
    let seen2 = notices(&mut b2, &dir);
    assert_eq!(
        common::run(&mut b2, &s).backend.kernel.as_deref(),
        Some(chosen.as_str())
    );
    assert!(
        seen2.lock().unwrap().is_empty(),
        "{:?}",
        seen2.lock().unwrap()
    );

    // Another driver version in the cache is a miss.
    let info = &b2.context().info;
    std::fs::write(
        dir.join(CACHE_FILE),
        text.replace(&info.driver_info, &format!("{} (older)", info.driver_info)),
    )
    .unwrap();
    let seen3 = notices(&mut b2, &dir);
    common::run(&mut b2, &s);
    assert_eq!(
        seen3
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with("tuning"))
            .count(),
        1
    );

    // A corrupt file: one warning, the run succeeds, the file is replaced.
    std::fs::write(dir.join(CACHE_FILE), "{\"format\": 1, \"entries\": [").unwrap();
    let seen4 = notices(&mut b2, &dir);
    assert!(common::run(&mut b2, &s).complete);
    let warnings: Vec<String> = seen4
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with("warning"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `quantdepth simulate --kernel`: a forced variant runs and is named in
/// the JSON output (and no cache is written); `auto` tunes, caches in
/// `$QUANTDEPTH_CACHE_DIR` and names what it chose; a variant that does not
/// apply is refused naming those that do; an unknown name lists them all.
/// With `--backward` the backward step follows `--kernel`: `splitk`
/// changes the result's bits against `tiled` (another summation order), and
/// each `-int64` form prints exactly its 32-bit twin's JSON.
#[test]
fn cli_kernel_flag_forces_tunes_and_reports_the_variant() {
    let Some(b) = backend() else { return };
    let dir = temp_dir("cli");
    let run_with = |kernel: &str, extra: &[&str]| {
        let args = format!(
            "simulate --backend gpu --states 4 --c0 0.5 --pairs 3 --width 160 --depth 2 \
             --samples 2 --json --kernel {kernel}"
        );
        quantdepth(&dir, &args, extra)
    };
    let run = |kernel: &str| run_with(kernel, &[]);
    let kernel_of = |out: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["meta"]["backend"]["kernel"].as_str().unwrap().to_string()
    };
    let (code, out, err) = run("splitk");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(kernel_of(&out), "splitk");
    assert!(err.contains("layer kernel splitk (forced)"), "{err}");
    assert!(!dir.join(CACHE_FILE).exists());
    let (code, out, err) = run("auto");
    assert_eq!(code, Some(0), "{err}");
    let chosen = kernel_of(&out);
    assert!(
        err.contains("tuning the GPU layer kernel for n = 160, B = 6"),
        "{err}"
    );
    // The record names a stacked choice with its stack, "stacked (S=2)";
    // the cache holds the variant's name.
    let name = chosen.split(" (").next().unwrap();
    let cached = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
    assert!(
        cached.contains(&format!("\"variant\": \"{name}\"")),
        "{cached}"
    );
    let (code, _, err) = run("wide");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--kernel = wide: wide needs B ≥ 65")
            && err.contains("these apply: tiled, splitk"),
        "{err}"
    );
    let (code, _, err) = run("fastest");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("auto or one of tiled, splitk, wide"), "{err}");
    let backward = |kernel: &str| {
        let (code, out, err) = run_with(kernel, &["--backward"]);
        assert_eq!(code, Some(0), "backward --kernel {kernel}: {err}");
        out
    };
    let (tiled, splitk) = (backward("tiled"), backward("splitk"));
    assert_ne!(
        tiled, splitk,
        "--kernel splitk did not reach the backward pass"
    );
    if b.kernel_caps().int64 {
        assert_eq!(backward("tiled-int64"), tiled);
        assert_eq!(backward("splitk-int64"), splitk);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `quantdepth simulate --kernel stacked`: with 3 samples it runs (JSON
/// `"kernel": "stacked (S=3)"`) and prints the curves of `--kernel tiled`
/// bit for bit; with one sample, or at B = 66, it is refused naming the
/// variants that apply; with `--backward` the backward step is the tiled
/// one (the same output as `--kernel tiled`).
#[test]
fn cli_kernel_stacked_is_forced_or_refused() {
    let Some(_b) = backend() else { return };
    let dir = temp_dir("cli-stack");
    let run = |kernel: &str, samples: &str, pairs: &str, extra: &[&str]| {
        let args = format!(
            "simulate --backend gpu --states 4 --c0 0.5 --pairs {pairs} --width 160 --depth 3 \
             --samples {samples} --json --kernel {kernel}"
        );
        quantdepth(&dir, &args, extra)
    };
    let json = |out: &str| serde_json::from_str::<serde_json::Value>(out).unwrap();
    let (code, stacked, err) = run("stacked", "3", "3", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, tiled, err) = run("tiled", "3", "3", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (stacked, tiled) = (json(&stacked), json(&tiled));
    assert_eq!(stacked["meta"]["backend"]["kernel"], "stacked (S=3)");
    assert_eq!(stacked["meta"]["samples"], 3);
    assert!(
        stacked["curves"] == tiled["curves"],
        "stacked curves differ from tiled"
    );
    let (code, _, err) = run("stacked", "1", "3", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--kernel = stacked: stacked needs B ≤ 64, at least 2 network samples")
            && err.contains("1 network sample(s)")
            && err.contains("these apply: tiled, splitk"),
        "{err}"
    );
    let (code, _, err) = run("stacked", "3", "33", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("at n = 160, B = 66, 3 network sample(s)"),
        "{err}"
    );
    let (code, back_stacked, err) = run("stacked", "2", "3", &["--backward"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, back_tiled, err) = run("tiled", "2", "3", &["--backward"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(back_stacked, back_tiled);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every layer variant's backward form: split-K stays split-K, `wide` and
/// `wide256` run the wide backward step of their own tile width (one
/// generated weight tile for 128/256 columns), `stacked` the tiled step
/// (one network at a time), and the multiply follows.
#[test]
fn backward_variant_follows_the_forward_variant() {
    for v in KernelVariant::ALL {
        let back = v.backward();
        assert!(
            BACKWARD_VARIANTS.contains(&back) || WIDE_BACKWARD_VARIANTS.contains(&back),
            "{v} → {back}"
        );
        assert_eq!(back.int64(), v.int64(), "{v}");
        if matches!(v.tiling(), Tiling::SplitK | Tiling::Wide | Tiling::Wide256) {
            assert_eq!(back, v);
        }
    }
    assert_eq!(
        KernelVariant::Wide256Int64.backward(),
        KernelVariant::Wide256Int64
    );
    assert_eq!(KernelVariant::Wide.backward(), KernelVariant::Wide);
    assert_eq!(KernelVariant::Stacked.backward(), KernelVariant::Tiled);
    assert_eq!(
        KernelVariant::StackedInt64.backward(),
        KernelVariant::TiledInt64
    );
}

/// One backward step (backward.wgsl; with SPLIT, then layer_combine.wgsl
/// with BACKWARD) of every backward variant against its CPU twin,
/// `LayerWeights::transposed` then the STE mask, at sizes off the tiles
/// (n = 200, 333; B = 6, 10): see [`backward_step_equals_cpu`].
#[test]
fn backward_step_of_every_variant_gpu_equals_cpu() {
    let pairs = |pairs| Inputs::Pairs {
        c0: vec![0.5],
        pairs,
    };
    backward_step_equals_cpu(
        &[
            (200, pairs(3), Weights::Gaussian),
            (333, pairs(5), Weights::Gaussian),
            (200, pairs(5), Weights::Gaussian),
            (333, pairs(3), Weights::Gaussian),
        ],
        &BACKWARD_VARIANTS,
    );
}

/// One backward step of each of `variants` that applies, for each case
/// (n, inputs, weights), against its CPU twin, `LayerWeights::transposed`
/// then the STE mask: |Δ| ≤ 1e-5·rms (the sums differ in order only, f32
/// rounding ~1e-7 relative per term); the same inputs give the same bits
/// twice; an `-int64` variant gives bitwise its 32-bit twin's δ (the
/// generator is exact either way); every variant ran in some case. The
/// pre-activations h are normals, so the mask at t = 1 zeroes about a third
/// of the entries.
fn backward_step_equals_cpu(cases: &[(usize, Inputs, Weights)], variants: &[KernelVariant]) {
    use quantdepth::sim::layer::LayerWeights;
    use quantdepth::theory::backward::Ste;
    let Some(mut b) = backend() else { return };
    let caps = b.kernel_caps();
    let ste = Ste::new(1.3, 1.0).unwrap();
    let mut ran = Vec::new();
    for (width, inputs, weights) in cases {
        let (width, weights) = (*width, *weights);
        let s = spec(width, 2, 1, inputs.clone(), weights);
        let batch = s.measurements().batch;
        let stream = Stream::new(s.seed, 0);
        let (mut delta, mut h) = (vec![0f32; width * batch], vec![0f32; width * batch]);
        Stream::new(5, 1).fill_row(1, 0, &mut delta);
        Stream::new(5, 1).fill_row(2, 0, &mut h);
        let mut want = vec![0f32; width * batch];
        LayerWeights::of(&s, &stream, 2).transposed(&delta, batch, &mut want);
        let (t, slope) = (ste.threshold as f32, ste.slope as f32);
        for (d, &x) in want.iter_mut().zip(&h) {
            *d = if x.abs() <= t { slope * *d } else { 0.0 };
        }
        let zeros = want.iter().filter(|v| **v == 0.0).count();
        assert!(
            zeros > width * batch / 5 && zeros < width * batch / 2,
            "{zeros} masked"
        );
        let mut outputs = Vec::new();
        for &v in variants
            .iter()
            .filter(|v| v.applicable(width, batch, &caps))
        {
            b.set_kernel(KernelChoice::Forced(v), None);
            let got = b.backward_step(&s, &ste, v, &delta, &h, 0).unwrap();
            let what = format!("backward {v} n {width} B {batch} {weights}");
            common::assert_within_rounding(&what, &got, &want);
            let again = b.backward_step(&s, &ste, v, &delta, &h, 0).unwrap();
            assert_eq!(
                bits(&got),
                bits(&again),
                "{what}: same inputs, different bits"
            );
            outputs.push((v, bits(&got)));
            ran.push(v);
        }
        assert_int64_equals_twin(&format!("backward n {width} B {batch}"), &outputs);
    }
    assert_every_variant_ran("backward ", variants.iter().copied(), &ran, caps.int64);
}

/// Ten layers forward and backward (`simulate_backward`) with the backward
/// step of each variant at n = 200, B = 8: see
/// [`backward_statistics_agree_with_cpu`].
#[test]
fn backward_statistics_of_every_variant_agree_with_cpu() {
    backward_statistics_agree_with_cpu(200, 2, &BACKWARD_VARIANTS);
}

/// Ten layers forward and backward (`simulate_backward`, width n, 8
/// networks, c⁰ ∈ {0.5, 0.9} × `pairs` pairs) with the backward step of each
/// of `variants` that applies: the gradient-norm ratios and gradient
/// correlations within 5 combined SE of the CPU backend's (the variants use
/// the same weights; only f32 rounding separates them), and an `-int64`
/// variant's whole result identical to its 32-bit twin's; every variant
/// ran (the `-int64` ones where the adapter has SHADER_INT64).
fn backward_statistics_agree_with_cpu(n: usize, pairs: usize, variants: &[KernelVariant]) {
    use quantdepth::sim::backward::simulate_backward;
    use quantdepth::theory::backward::{unit_slope, Ste};
    use std::sync::atomic::AtomicBool;
    let Some(mut b) = backend() else { return };
    let caps = b.kernel_caps();
    let mut ch = NetworkChoice::uniform(4);
    ch.sigma_b = Some(0.1);
    let r = ch.resolve().unwrap();
    let s = SimSpec::of_network(
        &r,
        n,
        10,
        8,
        29,
        Inputs::Pairs {
            c0: vec![0.5, 0.9],
            pairs,
        },
    );
    let batch = s.measurements().batch;
    let ste = Ste::new(1.05 * unit_slope(&r.network, r.q_star, 1.0).unwrap(), 1.0).unwrap();
    let cancel = AtomicBool::new(false);
    let c = simulate_backward(&s, &ste, &cancel, None).unwrap();
    let mut results = Vec::new();
    for &v in variants.iter().filter(|v| v.applicable(n, batch, &caps)) {
        b.set_kernel(KernelChoice::Forced(v), None);
        let g = simulate_backward(&s, &ste, &cancel, Some(&b)).unwrap();
        assert_eq!(b.kernels_used(), [v]);
        let what = format!("backward {v} B {batch}");
        common::assert_backward_within_5se(&what, &g, &c, s.depth);
        results.push((v, g));
    }
    assert_int64_equals_twin("backward, the whole result", &results);
    let ran: Vec<KernelVariant> = results.iter().map(|(v, _)| *v).collect();
    assert_every_variant_ran("backward ", variants.iter().copied(), &ran, caps.int64);
}

/// The wide backward step's variants ([`KernelVariant::backward`] of the
/// wide tilings: layer_wide.wgsl with BACKWARD).
const WIDE_BACKWARD_VARIANTS: [KernelVariant; 4] = [
    KernelVariant::Wide,
    KernelVariant::Wide256,
    KernelVariant::WideInt64,
    KernelVariant::Wide256Int64,
];

/// The wide backward step's WGSL validates with naga, and its `-int64`
/// forms need SHADER_INT64; it keeps the forward kernel's tile (TB, TJ)
/// and its 4·TB/64 named accumulators.
#[test]
fn wide_backward_variants_validate_with_naga() {
    for v in WIDE_BACKWARD_VARIANTS {
        let src = kernel::backward_source(v, 64);
        assert!(src.contains("const BACKWARD: bool = true;"), "{v}");
        let tb = if v.tiling() == Tiling::Wide { 128 } else { 256 };
        assert!(src.contains(&format!("const TB: u32 = {tb}u;")), "{v}");
        assert!(src.contains(&format!("var acc3{} ", tb / 64 - 1)), "{v}");
        let module = common::validate(&format!("backward {v}"), &src);
        let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SHADER_INT64;
        let refused = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .is_err();
        assert_eq!(refused, v.int64(), "{v}: validated without SHADER_INT64");
    }
}

/// One wide backward step (layer_wide.wgsl with BACKWARD) of `wide`,
/// `wide256` and their `-int64` forms against the CPU twin at sizes off
/// the tiles (n = 200, 333; B = 130, 257), Gaussian and Rademacher weights:
/// |Δ| ≤ 1e-5·rms, the same bits twice, `-int64` bitwise its twin
/// ([`backward_step_equals_cpu`]).
#[test]
fn backward_step_of_wide_variants_gpu_equals_cpu() {
    let pairs = Inputs::Pairs {
        c0: vec![0.5],
        pairs: 65,
    };
    let circle = Inputs::Circle { points: 257 };
    backward_step_equals_cpu(
        &[
            (200, pairs.clone(), Weights::Gaussian),
            (333, circle.clone(), Weights::Gaussian),
            (333, pairs, Weights::Rademacher),
            (200, circle, Weights::Rademacher),
        ],
        &WIDE_BACKWARD_VARIANTS,
    );
}

/// Ten layers forward and backward with the wide backward steps at
/// n = 100 (off the 64-row tiles), B = 132 (33 pairs × two c⁰): within 5
/// combined SE of the CPU's ([`backward_statistics_agree_with_cpu`]); every
/// wide variant ran.
#[test]
fn backward_statistics_of_wide_variants_agree_with_cpu() {
    backward_statistics_agree_with_cpu(100, 33, &WIDE_BACKWARD_VARIANTS);
}

/// `quantdepth simulate --backend gpu --backward --json` at B = 130 (65
/// pairs) with `--kernel wide` and `--kernel wide256` runs (the wide
/// backward step) and agrees with `--kernel tiled`: every layer's gradient
/// norm ratio and gradient correlation, and the NTK, within 5 combined SE
/// (the same weights; the variants differ in f32 rounding at most).
#[test]
fn cli_backward_with_wide_kernels_agrees_with_tiled() {
    let Some(_b) = backend() else { return };
    let dir = temp_dir("cli-wide-backward");
    let run = |kernel: &str| -> serde_json::Value {
        let args = "simulate --backend gpu --states 4 --c0 0.5 --pairs 65 --width 160 --depth 3 \
                    --samples 4 --json --backward --kernel";
        let (code, out, err) = quantdepth(&dir, args, &[kernel]);
        assert_eq!(code, Some(0), "--kernel {kernel}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let tiled = run("tiled");
    for kernel in ["wide", "wide256"] {
        let wide = run(kernel);
        let close = |x: &serde_json::Value, y: &serde_json::Value, what: &str| {
            let (mx, my) = (x["mean"].as_f64().unwrap(), y["mean"].as_f64().unwrap());
            let se = x["se"].as_f64().unwrap().hypot(y["se"].as_f64().unwrap());
            assert!(
                (mx - my).abs() <= 5.0 * se,
                "{kernel} {what}: {mx} against tiled {my} (SE {se})"
            );
        };
        let (cw, ct) = (&wide["curves"][0], &tiled["curves"][0]);
        let layers = ct["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 4);
        for (l, lt) in layers.iter().enumerate() {
            let lw = &cw["layers"][l];
            close(
                &lw["grad_corr"],
                &lt["grad_corr"],
                &format!("layer {l} grad corr"),
            );
            if !lt["norm_ratio"].is_null() {
                close(
                    &lw["norm_ratio"],
                    &lt["norm_ratio"],
                    &format!("layer {l} norm ratio"),
                );
            }
        }
        close(&cw["ntk_aa"], &ct["ntk_aa"], "NTK (a, a)");
        close(&cw["ntk_ab"], &ct["ntk_ab"], "NTK (a, b)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--kernel` takes a variant as a results folder records it
/// (`stacked (S=3)`, copied from meta.json), and nothing else in that form.
#[test]
fn kernel_choice_takes_the_recorded_form() {
    assert_eq!(
        KernelChoice::parse("--kernel", "stacked (S=3)").unwrap(),
        KernelChoice::Forced(KernelVariant::Stacked)
    );
    for bad in ["wide (S=3)", "stacked (S=0)", "stacked (S=3"] {
        let e = KernelChoice::parse("--kernel", bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auto or one of tiled"), "{bad}: {e}");
    }
}

/// A forced variant that does not fit a later point of a sweep (split-K at
/// n = 64, where it needs n > 96) stops the run at that point with the
/// variant's requirement, not as a numerical failure; `run --resume` then
/// keeps the recorded variant where it applies and tunes where it does
/// not, completes the folder, and meta.json keeps the first session's
/// record beside the resumed one's.
#[test]
fn resume_after_a_forced_kernel_stops_tunes_the_rest_and_keeps_the_record() {
    let Some(_b) = backend() else { return };
    let dir = temp_dir("resume-kernel");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("rk.toml");
    std::fs::write(
        &cfg,
        "name = \"rk\"\nseed = 1\nbackend = \"gpu\"\n[network]\nsigma_w = \"opt\"\ndepth = 4\n\
         samples = 3\n[inputs]\nkind = \"pairs\"\nc0 = [0.6]\npairs = 4\n[sweep]\nstates = [4]\n\
         width = [256, 64]\n[outputs]\nplots = false\n",
    )
    .unwrap();
    let out = dir.join("out");
    let run = |args: &[&str]| {
        let (code, _, err) = quantdepth(&dir.join("cache"), "", args);
        (code, err)
    };
    let (code, err) = run(&[
        "run",
        cfg.to_str().unwrap(),
        "--kernel",
        "splitk",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("point 1 (") && err.contains("splitk needs") && !err.contains("numerical"),
        "{err}"
    );
    let folder = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let meta = |f: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(f.join("meta.json")).unwrap()).unwrap()
    };
    assert_eq!(meta(&folder)["kernel"], "splitk");
    let (code, err) = run(&["run", "--resume", folder.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("splitk (as recorded in the results folder"),
        "{err}"
    );
    let m = meta(&folder);
    assert_eq!(m["status"], "complete");
    let kernel = m["kernel"].as_str().unwrap();
    assert!(kernel.starts_with("splitk; after resume: "), "{kernel}");
    let _ = std::fs::remove_dir_all(&dir);
}
