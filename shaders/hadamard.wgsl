// The structured orthogonal layer H_next = σ_w·n^{-3/2}·H D₃ H D₂ H D₁ φ(H) + σ_b·ζ
// as three entry points, twins of src/sim/hadamard.rs:
//   `tile_stages`:   each workgroup takes T rows × 4 batch columns (T = min(n, 512)),
//             loads them (applying φ in round 0), negates the rows whose sign
//             in D_{round+1} is set, and runs the butterfly stages h = 1..T/2 of
//             the Walsh–Hadamard transform in workgroup memory;
//   `butterfly_stage`: each thread does one butterfly (x_i, x_{i+h}) ← (x_i + x_{i+h}, x_i − x_{i+h})
//             of one stage h ≥ T over the whole layer (one dispatch per stage);
//   `finish`: each thread scales one entry by σ_w·n^{-3/2} and adds its row's bias.
// Stages run in the order h = 1, 2, …, n/2 as on the CPU, so the transform is
// bitwise the CPU's. Signs: bit i mod 32 of word (i/32) mod 4 of Philox
// counter (i/128, round, layer, sample); set = −1. Activations are
// feature-major, H[i·B + b]. Prepended with rng.wgsl and params.wgsl.

struct Step {
    round: u32,    // 0, 1, 2: D₁, D₂, D₃
    mode: u32,     // tile_stages: 0 reads h_in and applies φ; 1 reads h_out
    h: u32,        // butterfly_stage: the stage's half-span
    tile: u32,     // T, rows per tile (a power of two)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(4) var<uniform> st: Step;

const TC: u32 = 4u;          // batch columns per tile
const MAX_T: u32 = 512u;     // rows per tile at most
const THREADS: u32 = 256u;

var<workgroup> buf: array<f32, 2048>;    // MAX_T × TC, row-major
var<workgroup> sign_words: array<u32, 16>;

// φ(x): shaders/phi.wgsl, composed by the host.

@compute @workgroup_size(256)
fn tile_stages(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let batch = p.batch;
    let t_rows = st.tile;
    let row0 = wid.y * t_rows;
    let col0 = wid.x * TC;
    let key = vec2<u32>(p.key0, p.key1);
    // The tile's signs: T/128 Philox calls (at least one), four words each.
    if (li < max(t_rows / 128u, 1u)) {
        let w = philox4x32_10(vec4<u32>(row0 / 128u + li, st.round, p.layer, p.sample), key);
        sign_words[4u * li] = w.x;
        sign_words[4u * li + 1u] = w.y;
        sign_words[4u * li + 2u] = w.z;
        sign_words[4u * li + 3u] = w.w;
    }
    workgroupBarrier();
    for (var t = li; t < t_rows * TC; t = t + THREADS) {
        let r = t / TC;
        let col = col0 + t % TC;
        var v = 0.0;
        if (col < batch) {
            let idx = (row0 + r) * batch + col;
            if (st.mode == 0u) { v = phi(h_in[idx]); } else { v = h_out[idx]; }
            // Row row0 + r; row0 is a multiple of 128 when T ≥ 128, and 0 otherwise.
            let local = (row0 % 128u) + r;
            let bit = (sign_words[local / 32u] >> (local % 32u)) & 1u;
            v = select(v, -v, bit == 1u);
        }
        buf[t] = v;
    }
    for (var h = 1u; h < t_rows; h = h * 2u) {
        workgroupBarrier();
        for (var t = li; t < (t_rows / 2u) * TC; t = t + THREADS) {
            let q = t / TC;
            let c = t % TC;
            let i = (q / h) * 2u * h + q % h;
            let a = buf[i * TC + c];
            let b = buf[(i + h) * TC + c];
            buf[i * TC + c] = a + b;
            buf[(i + h) * TC + c] = a - b;
        }
    }
    workgroupBarrier();
    for (var t = li; t < t_rows * TC; t = t + THREADS) {
        let col = col0 + t % TC;
        if (col < batch) {
            h_out[(row0 + t / TC) * batch + col] = buf[t];
        }
    }
}

@compute @workgroup_size(256)
fn butterfly_stage(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nw: vec3<u32>) {
    let g = (wid.y * nw.x + wid.x) * THREADS + li;
    let batch = p.batch;
    if (g >= (p.n / 2u) * batch) { return; }
    let q = g / batch;
    let c = g % batch;
    let h = st.h;
    let i = (q / h) * 2u * h + q % h;
    let a = h_out[i * batch + c];
    let b = h_out[(i + h) * batch + c];
    h_out[i * batch + c] = a + b;
    h_out[(i + h) * batch + c] = a - b;
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nw: vec3<u32>) {
    let g = (wid.y * nw.x + wid.x) * THREADS + li;
    let batch = p.batch;
    if (g >= p.n * batch) { return; }
    let row = g / batch;
    var bias = 0.0;
    if (p.b_scale != 0.0) {
        let zb = normals(vec2<u32>(p.key0, p.key1), p.sample, p.layer, BIAS_ROW, row / 4u);
        bias = p.b_scale * zb[row % 4u];
    }
    h_out[g] = p.w_scale * h_out[g] + bias;
}
