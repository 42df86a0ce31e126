// The per-layer parameters shared by layer.wgsl and stats.wgsl, one
// 256-byte-aligned entry per layer in a uniform buffer bound with a dynamic
// offset. `weights`: 0 gaussian, 1 rademacher, 2 hadamard. Mirrors `GpuParams` in src/sim/gpu/params.rs field for field.

struct Params {
    layer: u32,
    sample: u32,
    key0: u32,
    key1: u32,
    n: u32,
    batch: u32,
    kind: u32,
    states: u32,
    inv_spacing: f32,
    half_states: f32,
    w_scale: f32,
    b_scale: f32,
    slot: u32,
    quantities: u32,
    groups: u32,
    rows_per_group: u32,
    ste_slope: f32,
    ste_threshold: f32,
    weights: u32,
    pad1: u32,
}
