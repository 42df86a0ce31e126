// Each workgroup computes a 16 × 16 tile of the gradient with respect to the
// previous layer's pre-activations: G_prev = (Wᵀ · G) ⊙ s·1{|H_prev| ≤ t}
// (the transposed product through the stored W, the STE mask fused).
// CPU twin: `Trainer::backward`.
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;      // W, read transposed
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;      // G (fan_out × B)
@group(0) @binding(3) var<storage, read> h_prev: array<f32>;     // H of the layer below
@group(0) @binding(4) var<storage, read_write> g_out: array<f32>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    let acc = tile_product(lid, row, col);
    if (row < p.m && col < p.n) {
        let i = row * p.n + col;
        g_out[i] = select(0.0, acc * p.ste_slope, abs(h_prev[i]) <= p.ste_threshold);
    }
}
