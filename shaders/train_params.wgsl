// The parameters of one training dispatch, field for field as
// `TrainParams` in src/train/gpu/params.rs. The product kernels compute
// C (m × n) = A (m × k) · B (k × n), A[i][j] at i·rsa + j·csa, B[i][j]
// at i·rsb + j·csb, C row-major.
struct TrainParams {
    m: u32,
    n: u32,
    k: u32,
    rsa: u32,
    csa: u32,
    rsb: u32,
    csb: u32,
    apply_phi: u32,
    states: u32,
    classes: u32,
    batch: u32,
    accumulate: u32,
    inv_spacing: f32,
    half_states: f32,
    amplitude: f32,
    level_step: f32,
    ste_slope: f32,
    ste_threshold: f32,
    lr: f32,
    momentum: f32,
    inv_batch: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: TrainParams;
