// Each workgroup computes a 16 × 16 tile of one layer's pre-activations
// H = W · A_in + b (units × batch, W stored, fan_out × fan_in) and, fused,
// A_out = φ(H) with the uniform quantizer. CPU twin: `Trainer::forward`
// (src/train/cpu.rs).
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;      // W
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;      // A_in (fan_in × B)
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> a_out: array<f32>;

// φ(x) = −A + k·step, k = clamp(⌊x/Δ + N/2⌋, 0, N − 1).
fn phi(x: f32) -> f32 {
    let k = clamp(floor(x * p.inv_spacing + p.half_states), 0.0, f32(p.states - 1u));
    return -p.amplitude + k * p.level_step;
}

// The epilogue of train_gemm.wgsl's `main`: bias, then φ.
fn store(row: u32, col: u32, acc: f32) {
    let h = acc + bias[row];
    h_out[row * p.n + col] = h;
    if (p.apply_phi != 0u) {
        a_out[row * p.n + col] = phi(h);
    }
}
