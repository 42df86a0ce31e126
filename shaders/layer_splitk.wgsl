// Split-K layer for small batches: the grid's third axis splits the input
// dimension into slices of whole 32-unit tiles, so several workgroups share
// one 64-row × TB-column output tile (more workgroups to fill a large
// device when n/64 × B/TB alone is too few). Workgroup (x, y, z) computes
// the unscaled partial sums Σ_{j in slice z} z_ij·φ(H[j][b]) of its tile,
// generating the weights and loading φ(H) exactly as layer.wgsl does, and
// writes them to slot z of `partial` (S × n × B, S = the dispatch's z
// count); layer_combine.wgsl then adds the S slots in order and applies
// σ_w/√n and the bias. No float atomics: the same seed gives the same bits.
// Twin of `layer` in src/sim/cpu.rs (the sum over j regrouped by slice).
// Prepended with rng.wgsl, params.wgsl and phi.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

// Columns of the batch per workgroup (16, 32 or 64; the host picks the
// variant by replacing this line).
const TB: u32 = 64u;
const TI: u32 = 64u;
const TJ: u32 = 32u;
const WX: u32 = TB / 4u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;

var<workgroup> w_tile: array<f32, 2048>;        // TI × TJ weights, row-major
var<workgroup> a_tile: array<vec4<f32>, 512>;   // TJ × TB/4 activations

@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = p.n;
    let batch = p.batch;
    let key = vec2<u32>(p.key0, p.key1);
    let row0 = wid.y * TI;
    let col0 = wid.x * TB;
    let tx = lid.x;
    let ty = lid.y;
    // Slice z: tiles [z·per, (z+1)·per) of the ⌈n/TJ⌉ tiles.
    let tiles = (n + TJ - 1u) / TJ;
    let per = (tiles + nwg.z - 1u) / nwg.z;
    let j_begin = wid.z * per * TJ;
    let j_end = min(n, j_begin + per * TJ);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var j0 = j_begin; j0 < j_end; j0 = j0 + TJ) {
        if (p.weights == 1u) {
            // Rademacher: row r's TJ = 32 signs are word (j0/32) mod 4 of
            // Philox counter (j0/128, row, layer, sample), unpacked to ±1.
            for (var r = li; r < TI; r = r + THREADS) {
                let row = row0 + r;
                var word = 0u;
                if (row < n) {
                    let w = philox4x32_10(vec4<u32>(j0 / 128u, row, p.layer, p.sample), key);
                    word = w[(j0 / 32u) % 4u];
                }
                for (var k = 0u; k < TJ; k = k + 1u) {
                    var z = select(1.0, -1.0, ((word >> k) & 1u) == 1u);
                    if (row >= n) { z = 0.0; }
                    w_tile[r * TJ + k] = z;
                }
            }
        } else {
            // Weights: TI rows × TJ/4 Philox blocks of four.
            for (var t = li; t < TI * (TJ / 4u); t = t + THREADS) {
                let r = t / (TJ / 4u);
                let blk = t % (TJ / 4u);
                let row = row0 + r;
                var z = vec4<f32>(0.0);
                if (row < n) {
                    z = normals(key, p.sample, p.layer, row, j0 / 4u + blk);
                }
                let base = r * TJ + blk * 4u;
                w_tile[base] = z.x;
                w_tile[base + 1u] = z.y;
                w_tile[base + 2u] = z.z;
                w_tile[base + 3u] = z.w;
            }
        }
        // Activations φ(H) for TJ units × TB inputs; zero outside the matrix.
        for (var t = li; t < TJ * (TB / 4u); t = t + THREADS) {
            let jj = t / (TB / 4u);
            let c4 = t % (TB / 4u);
            let j = j0 + jj;
            let col = col0 + c4 * 4u;
            var v = vec4<f32>(0.0);
            if (j < n) {
                let base = j * batch + col;
                if (col < batch) { v.x = phi(h_in[base]); }
                if (col + 1u < batch) { v.y = phi(h_in[base + 1u]); }
                if (col + 2u < batch) { v.z = phi(h_in[base + 2u]); }
                if (col + 3u < batch) { v.w = phi(h_in[base + 3u]); }
            }
            a_tile[t] = v;
        }
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
    let slot = wid.z * n * batch;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = row0 + ty * 4u + r;
        if (row >= n) { break; }
        var acc = acc0;
        if (r == 1u) { acc = acc1; }
        if (r == 2u) { acc = acc2; }
        if (r == 3u) { acc = acc3; }
        let base = slot + row * batch + col;
        if (col < batch) { partial[base] = acc.x; }
        if (col + 1u < batch) { partial[base + 1u] = acc.y; }
        if (col + 2u < batch) { partial[base + 2u] = acc.z; }
        if (col + 3u < batch) { partial[base + 3u] = acc.w; }
    }
}
