// Each workgroup computes a 64-unit × TB-column tile of the gradient one
// layer down, δ^l[j][b] = s·1{|h^l[j][b]| ≤ t}·(σ_w/√n)·Σ_i z_ij·δ^{l+1}[i][b]:
// it generates the standard normals z of layer l+1's weights (32 rows i at a
// time, for its 64 columns j) into workgroup memory — the same numbers the
// forward pass used, never stored — loads the matching δ tile, accumulates
// 4 units × 4 columns per thread in four named vec4 registers, and applies
// the straight-through mask at the stored forward pre-activations h^l.
// Twin of `LayerWeights::transposed` in src/sim/backward.rs (then the mask,
// as `cpu_sample` applies it). Prepended with rng.wgsl,
// params.wgsl, weight_tile.wgsl and input_tile.wgsl; p.layer is l + 1 (the weights' layer).
// Split-K (the backward form of the `splitk` variant): with SPLIT = true the
// grid's third axis splits the sum over i into S = (z count) slices of whole
// 32-unit tiles, as layer.wgsl's SPLIT does; workgroup (x, y, z) writes its
// unscaled partial sums to slot z of delta_out (S × n × B), and
// layer_combine.wgsl (with BACKWARD) adds the S slots in a fixed order, then
// applies s·σ_w/√n and the mask. With one slice the loop is the unsplit one.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> delta_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta_out: array<f32>;
@group(0) @binding(3) var<storage, read> h_l: array<f32>;

// Columns of the batch per workgroup (the host picks the variant by
// replacing this line).
const TB: u32 = 64u;
// Partial sums for split-K (the host sets it by replacing this line).
const SPLIT: bool = false;
const TI: u32 = 64u;
const TJ: u32 = 32u;
const WX: u32 = TB / 4u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;

var<workgroup> w_tile: array<f32, 2048>;        // TJ rows × TI units (weight_tile.wgsl)
var<workgroup> a_tile: array<vec4<f32>, 512>;   // TJ rows × TB/4 of δ^{l+1}

// The input tile's elements: δ^{l+1} (input_tile.wgsl).
fn tile_input(i: u32) -> f32 {
    return delta_in[i];
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = p.n;
    let batch = p.batch;
    let unit0 = wid.y * TI;
    let col0 = wid.x * TB;
    let tx = lid.x;
    let ty = lid.y;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Slice z of the reduced dimension (input_tile.wgsl; all of it when
    // the grid has one slice).
    let kslice = slice_range(n, TJ, nwg.z, wid.z);
    for (var i0 = kslice.x; i0 < kslice.y; i0 = i0 + TJ) {
        // Weights z[i][j] for TJ rows i × TI units j (shaders/weight_tile.wgsl).
        fill_weight_tile(li, THREADS, i0, TJ, unit0, TI);
        // δ^{l+1} for TJ rows × TB inputs (input_tile.wgsl).
        fill_input_tile(li, THREADS, i0, TJ, col0, TB / 4u);
        workgroupBarrier();
        let u = ty * 4u;
        for (var kk = 0u; kk < TJ; kk = kk + 1u) {
            let a = a_tile[kk * (TB / 4u) + tx];
            let w = kk * TI + u;
            acc0 = acc0 + w_tile[w] * a;
            acc1 = acc1 + w_tile[w + 1u] * a;
            acc2 = acc2 + w_tile[w + 2u] * a;
            acc3 = acc3 + w_tile[w + 3u] * a;
        }
        workgroupBarrier();
    }
    let col = col0 + tx * 4u;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let j = unit0 + ty * 4u + r;
        if (j >= n) { break; }
        var acc = acc0;
        if (r == 1u) { acc = acc1; }
        if (r == 2u) { acc = acc2; }
        if (r == 3u) { acc = acc3; }
        let base = j * batch + col;
        for (var k = 0u; k < 4u; k = k + 1u) {
            if (SPLIT && col + k < batch) {
                delta_out[(wid.z * n + j) * batch + col + k] = acc[k];
            } else if (col + k < batch) {
                let inside = abs(h_l[base + k]) <= p.ste_threshold;
                delta_out[base + k] = select(0.0, p.ste_slope * p.w_scale * acc[k], inside);
            }
        }
    }
}
