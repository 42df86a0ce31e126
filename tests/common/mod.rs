//! Pieces shared by the GPU test files (each declares `mod common;`): the
//! rule for a missing adapter, a quiet simulation run, naga validation, the
//! GPU-against-CPU statistics bounds (forward and backward), and a run of the generator check
//! kernel; and a synthetic training data folder ([`data`]).
// Each test crate uses the part it needs.
#![allow(dead_code)]

pub mod data;

use quantdepth::sim::backward::BackwardCurve;
use quantdepth::sim::gpu::GpuContext;
use quantdepth::sim::stats::PairLayer;
use quantdepth::sim::Estimate;
use quantdepth::sim::{self, Backend, Control, SimOutcome, SimSpec};
use std::sync::atomic::AtomicBool;

/// Whether a missing GPU adapter fails the test (QUANTDEPTH_REQUIRE_GPU=1,
/// set by .ci/run) instead of skipping it.
pub fn gpu_required() -> bool {
    std::env::var("QUANTDEPTH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU backend `made`, or `None` with a message naming `what` is
/// skipped when no adapter is usable — a panic instead where
/// [`gpu_required`].
pub fn or_skip<T, E: std::fmt::Display>(made: Result<T, E>, what: &str) -> Option<T> {
    match made {
        Ok(b) => Some(b),
        Err(e) if gpu_required() => {
            panic!("QUANTDEPTH_REQUIRE_GPU=1 but no usable GPU adapter: {e}")
        }
        Err(e) => {
            // Written to stderr directly, past the test harness's capture, so a
            // user sees why the GPU tests did nothing.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping {what} (set QUANTDEPTH_REQUIRE_GPU=1 to fail instead): {e}"
            );
            None
        }
    }
}

/// `spec` simulated on `b`, without progress output or cancellation.
pub fn run(b: &mut dyn Backend, spec: &SimSpec) -> SimOutcome {
    let cancel = AtomicBool::new(false);
    sim::simulate(
        b,
        spec,
        &Control {
            progress: &|_| {},
            cancel: &cancel,
        },
    )
    .unwrap()
}

/// `src` (the WGSL of `name`) parsed and validated by naga with every
/// capability; a failure names `name`.
pub fn validate(name: &str, src: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    module
}

/// One layer's ĉ and q̂ from the GPU (`g`) and the CPU (`c`), independent
/// estimates of the same means, agree within 5 combined standard errors
/// (√(se_g² + se_c²)); `what` names the case in a failure.
pub fn assert_layer_within_5se(what: &str, g: &PairLayer, c: &PairLayer) {
    for (name, eg, ec) in [("ĉ", g.c, c.c), ("q̂", g.q, c.q)] {
        let se = (eg.se.unwrap().powi(2) + ec.se.unwrap().powi(2)).sqrt();
        assert!(
            (eg.mean - ec.mean).abs() <= 5.0 * se,
            "{what} layer {}: {name} gpu {} cpu {}",
            g.layer,
            eg.mean,
            ec.mean
        );
    }
}

/// A GPU result `got` equals its CPU twin `want` to f32 rounding:
/// max |Δ| ≤ 1e-5·rms(want) (sums in another order differ by ~1e-7
/// relative per term); `what` names the case in a failure.
pub fn assert_within_rounding(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let rms = (want.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, c)| f64::from((g - c).abs()))
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-5 * rms,
        "{what}: max |Δ| = {worst:e}, rms {rms}"
    );
}

/// The backward pass's statistics from the GPU (`g`) and the CPU (`c`):
/// each layer's gradient-norm ratio and (below the output layer `depth`)
/// gradient correlation, and the NTK, within 5 combined standard errors;
/// `what` names the case in a failure.
pub fn assert_backward_within_5se(
    what: &str,
    g: &[BackwardCurve],
    c: &[BackwardCurve],
    depth: usize,
) {
    let close = |x: Estimate, y: Estimate, name: &str| {
        let se = (x.se.unwrap().powi(2) + y.se.unwrap().powi(2)).sqrt();
        assert!(
            (x.mean - y.mean).abs() <= 5.0 * se,
            "{what} {name}: gpu {} cpu {} (SE {se})",
            x.mean,
            y.mean
        );
    };
    assert_eq!(g.len(), c.len());
    for (cg, cc) in g.iter().zip(c) {
        for (lg, lc) in cg.layers.iter().zip(&cc.layers) {
            if let (Some(x), Some(y)) = (lg.norm_ratio, lc.norm_ratio) {
                close(x, y, &format!("c0 {} layer {} norm ratio", cg.c0, lg.layer));
            }
            if lg.layer < depth {
                close(
                    lg.grad_corr,
                    lc.grad_corr,
                    &format!("c0 {} layer {} gradient correlation", cg.c0, lg.layer),
                );
            }
        }
        close(cg.ntk_aa, cc.ntk_aa, "NTK (a, a)");
        close(cg.ntk_ab, cc.ntk_ab, "NTK (a, b)");
    }
}

/// The generator at one counter per invocation: `count` counters
/// (i, row, layer, sample), i = 0..count (a multiple of 64), under `key`,
/// evaluated by `src` (shaders/rng_check.wgsl as composed, with or without
/// the u64 multiply). Returns the 4·count raw words and the 4·count normals.
pub fn rng_check(
    ctx: &GpuContext,
    label: &str,
    src: String,
    key: [u32; 2],
    (row, layer, sample): (u32, u32, u32),
    count: u32,
) -> (Vec<u32>, Vec<f32>) {
    use wgpu::BufferUsages as U;
    let params: [u32; 8] = [key[0], key[1], row, layer, sample, count, 0, 0];
    let bytes = u64::from(count) * 16;
    let pbuf = ctx
        .buffer("check params", 32, U::UNIFORM | U::COPY_DST)
        .unwrap();
    let words = ctx
        .buffer("words", bytes, U::STORAGE | U::COPY_SRC)
        .unwrap();
    let gauss = ctx
        .buffer("normals", bytes, U::STORAGE | U::COPY_SRC)
        .unwrap();
    // Words, then normals.
    let read = ctx
        .buffer("read", 2 * bytes, U::MAP_READ | U::COPY_DST)
        .unwrap();
    ctx.queue
        .write_buffer(&pbuf, 0, bytemuck::cast_slice(&params));
    let module = ctx.shader(label, src).unwrap();
    let pipe = ctx
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipe.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: pbuf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: words.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: gauss.as_entire_binding(),
            },
        ],
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipe);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(count / 64, 1, 1);
    }
    enc.copy_buffer_to_buffer(&words, 0, &read, 0, bytes);
    enc.copy_buffer_to_buffer(&gauss, 0, &read, bytes, bytes);
    let mut all = ctx.submit_and_read(enc, &read, 2 * bytes).unwrap();
    let z = all.split_off(4 * count as usize);
    (all.iter().map(|x| x.to_bits()).collect(), z)
}
