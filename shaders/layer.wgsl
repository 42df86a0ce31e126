// Each workgroup computes a 64-row × TB-column tile of the next layer's
// pre-activations, H_next[i][b] = (σ_w/√n)·Σ_j z_ij·φ(H[j][b]) + σ_b·ζ_i: it
// generates the standard normals z it needs, 64 rows × 32 columns at a time,
// into workgroup memory (the weight matrix is never stored), applies φ to
// the activation tile as it loads it, and accumulates 4 rows × 4 columns per
// thread in four named vec4 registers. Twin of `layer` in src/sim/cpu.rs.
// With p.weights = 1 the weights are Rademacher signs instead, one Philox
// call per tile row (32 signs of its 128), unpacked to ±1 (twin of the
// Rademacher layer in src/sim/cpu.rs).
// Activations are feature-major: H[j·B + b]. Prepended with rng.wgsl,
// params.wgsl, phi.wgsl, weight_tile.wgsl, input_tile.wgsl and
// layer_store.wgsl.
// Split-K (the `splitk` variant, src/sim/gpu/variant.rs): with SPLIT = true
// the grid's third axis splits the input dimension into S = (z count)
// slices of whole 32-unit tiles, so S workgroups share one output tile
// (more workgroups for small batches); workgroup (x, y, z) writes its
// unscaled partial sums Σ_{j in slice z} z_ij·φ(H[j][b]) to slot z of
// h_out (S × n × B), and layer_combine.wgsl adds the S slots in a fixed
// order and applies σ_w/√n and the bias. With one slice (z count 1) the
// loop over j is the unsplit kernel's.
// Stacked (the `stacked` variant): with STACK = true the grid's third axis
// is the network sample instead: workgroup (x, y, z) computes the tiled
// kernel's tile (x, y) of network sample p.sample + z, its activations at
// offset z·n·B of h_in and h_out (S × n × B), its weights and bias from
// that sample's stream; the loop over j is the tiled kernel's, so each
// sample's output has the tiled kernel's bits.

const KIND_UNIFORM: u32 = 0u;
const KIND_STEPS: u32 = 1u;
const KIND_TANH: u32 = 2u;
const KIND_HARD_TANH: u32 = 3u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
// Levels y_0..y_{N-1}, then (for general quantizers) thresholds g_1..g_{N-1}.
@group(0) @binding(3) var<storage, read> table: array<f32>;

// Columns of the batch per workgroup (16, 32 or 64; the host picks the
// variant by replacing this line).
const TB: u32 = 64u;
// Partial sums for split-K (the host sets it by replacing this line).
const SPLIT: bool = false;
// Network samples on the grid's z axis (the host sets it by replacing this line).
const STACK: bool = false;
const TI: u32 = 64u;
const TJ: u32 = 32u;
const WX: u32 = TB / 4u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;

var<workgroup> w_tile: array<f32, 2048>;        // TI × TJ weights, row-major (weight_tile.wgsl)
var<workgroup> a_tile: array<vec4<f32>, 512>;   // TJ × TB/4 activations

// Offset of this workgroup's network sample in h_in and h_out (STACK),
// set at kernel start; 0 otherwise.
var<private> stack_base: u32;

// The input tile's elements: φ of the layer's input (input_tile.wgsl).
fn tile_input(i: u32) -> f32 {
    return phi(h_in[stack_base + i]);
}

// φ(x): shaders/phi.wgsl, composed by the host.
@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = p.n;
    let batch = p.batch;
    let row0 = wid.y * TI;
    let col0 = wid.x * TB;
    let tx = lid.x;
    let ty = lid.y;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Slice z of the reduced dimension (input_tile.wgsl; all of it when
    // the grid has one slice, or z is the network sample).
    var kslice = slice_range(n, TJ, nwg.z, wid.z);
    var sample = p.sample;
    if (STACK) {
        kslice = slice_range(n, TJ, 1u, 0u);
        sample = p.sample + wid.z;
        stack_base = wid.z * n * batch;
    }
    for (var j0 = kslice.x; j0 < kslice.y; j0 = j0 + TJ) {
        // Weights: TI rows × TJ columns of W, network `sample`
        // (shaders/weight_tile.wgsl).
        fill_weight_tile_of(sample, li, THREADS, row0, TI, j0, TJ);
        // Activations φ(H) for TJ units × TB inputs (input_tile.wgsl).
        fill_input_tile(li, THREADS, j0, TJ, col0, TB / 4u);
        workgroupBarrier();
        let r0 = (ty * 4u) * TJ;
        for (var kk = 0u; kk < TJ; kk = kk + 1u) {
            let a = a_tile[kk * (TB / 4u) + tx];
            acc0 = acc0 + w_tile[r0 + kk] * a;
            acc1 = acc1 + w_tile[r0 + TJ + kk] * a;
            acc2 = acc2 + w_tile[r0 + 2u * TJ + kk] * a;
            acc3 = acc3 + w_tile[r0 + 3u * TJ + kk] * a;
        }
        workgroupBarrier();
    }
    let col = col0 + tx * 4u;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = row0 + ty * 4u + r;
        if (row >= n) { break; }
        var acc = acc0;
        if (r == 1u) { acc = acc1; }
        if (r == 2u) { acc = acc2; }
        if (r == 3u) { acc = acc3; }
        if (SPLIT) {
            store_quad((wid.z * n + row) * batch + col, col, acc);
            continue;
        }
        store_quad(stack_base + row * batch + col, col,
                   p.w_scale * acc + vec4<f32>(layer_bias_of(sample, row)));
    }
}
