// The layer's epilogue, shared by layer.wgsl, layer_wide.wgsl and
// layer_combine.wgsl; composed by the host after rng.wgsl and params.wgsl.
// It reads the including kernel's `p` and writes its `h_out`.
// Twin of the bias and scale in `layer` (src/sim/layer.rs).

// The bias σ_b·ζ_i of row i = `row`: lane i mod 4 of the normals of Philox
// block (i/4, BIAS_ROW, layer, sample); 0 when σ_b = 0. `layer_bias` is
// network p.sample's, `layer_bias_of` that of `sample` (the stacked layer).
fn layer_bias(row: u32) -> f32 {
    return layer_bias_of(p.sample, row);
}

fn layer_bias_of(sample: u32, row: u32) -> f32 {
    var bias = 0.0;
    if (p.b_scale != 0.0) {
        let zb = normals(vec2<u32>(p.key0, p.key1), sample, p.layer, BIAS_ROW, row / 4u);
        bias = p.b_scale * zb[row % 4u];
    }
    return bias;
}

// v's four lanes to h_out[base .. base+3], the lanes whose column
// col .. col+3 lies inside the batch (col < p.batch).
fn store_quad(base: u32, col: u32, v: vec4<f32>) {
    if (col < p.batch) { h_out[base] = v.x; }
    if (col + 1u < p.batch) { h_out[base + 1u] = v.y; }
    if (col + 2u < p.batch) { h_out[base + 2u] = v.z; }
    if (col + 3u < p.batch) { h_out[base + 3u] = v.w; }
}
