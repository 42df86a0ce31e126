// Second pass of the split-K layer (layer.wgsl with SPLIT): each invocation
// adds the S partial sums of one pre-activation in slot order 0..S−1 (a
// fixed order: the same seed gives the same bits), then applies σ_w/√n and
// the bias σ_b·ζ_i as layer.wgsl does. S is the partial buffer's length
// over n·B (the host sizes it exactly). Prepended with rng.wgsl,
// params.wgsl and layer_store.wgsl (`layer_bias`); binding 3 (the
// quantizer table) is in the layout but unused.
// With BACKWARD = true it is the second pass of the split-K backward step
// (backward.wgsl with SPLIT) instead: binding 3 holds the forward
// pre-activations h^l, and the sum becomes s·1{|h^l| ≤ t}·(σ_w/√n)·sum
// as backward.wgsl computes it.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
// The quantizer table (layer, unused) or h^l (BACKWARD).
@group(0) @binding(3) var<storage, read> h_l: array<f32>;

// The backward step's combine (the host sets it by replacing this line).
const BACKWARD: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let total = p.n * p.batch;
    if (i >= total) { return; }
    let slices = arrayLength(&partial) / total;
    var sum = 0.0;
    for (var s = 0u; s < slices; s = s + 1u) {
        sum = sum + partial[s * total + i];
    }
    if (BACKWARD) {
        let inside = abs(h_l[i]) <= p.ste_threshold;
        h_out[i] = select(0.0, p.ste_slope * p.w_scale * sum, inside);
    } else {
        h_out[i] = p.w_scale * sum + layer_bias(i / p.batch);
    }
}
