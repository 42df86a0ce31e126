// Each workgroup computes a 16 × 16 tile of the gradient with respect to the
// previous layer's pre-activations: G_prev = (Wᵀ · G) ⊙ s·1{|H_prev| ≤ t}
// (the transposed product through the stored W, the STE mask fused).
// CPU twin: `Trainer::backward` (src/train/cpu.rs).
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;      // W, read transposed
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;      // G (fan_out × B)
@group(0) @binding(3) var<storage, read> h_prev: array<f32>;     // H of the layer below
@group(0) @binding(4) var<storage, read_write> g_out: array<f32>;

// The epilogue of train_gemm.wgsl's `main`: the STE mask.
fn store(row: u32, col: u32, acc: f32) {
    let i = row * p.n + col;
    g_out[i] = select(0.0, acc * p.ste_slope, abs(h_prev[i]) <= p.ste_threshold);
}
