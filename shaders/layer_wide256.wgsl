// Wide layer for the largest batches: each workgroup computes a 64-row ×
// 256-column tile, so one generated weight tile (64 rows × 16 units; one
// Philox call and a Box–Muller per four weights) serves 256 inputs — a
// quarter of layer.wgsl's generator work per layer at B ≥ 256. The weight
// tile is stored k-major (four consecutive rows of one unit form one
// vec4); each thread updates 4 rows × 16 columns (columns tx·4 + 64·c,
// c = 0..3) in sixteen named vec4 registers. The tile holds 16 units, not
// 32, so that weights and activations fit 20 KiB of workgroup memory. The
// sum over units runs in the same order as layer.wgsl's. Twin of `layer`
// in src/sim/layer.rs. Prepended with rng.wgsl, params.wgsl and phi.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

const TB: u32 = 256u;
const TI: u32 = 64u;
const TJ: u32 = 16u;
const WX: u32 = 16u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;
// Column vec4s per row of the activation tile.
const C4: u32 = TB / 4u;

var<workgroup> w_tile: array<vec4<f32>, 256>;   // TJ units × TI/4 row quads (k-major)
var<workgroup> a_tile: array<vec4<f32>, 1024>;  // TJ units × TB/4 column quads

@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    let n = p.n;
    let batch = p.batch;
    let key = vec2<u32>(p.key0, p.key1);
    let row0 = wid.y * TI;
    let col0 = wid.x * TB;
    let tx = lid.x;
    let ty = lid.y;
    // acc{r}{c}: row ty·4 + r, columns (tx + 16·c)·4 .. +3.
    var acc00 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc20 = vec4<f32>(0.0);
    var acc30 = vec4<f32>(0.0);
    var acc01 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc21 = vec4<f32>(0.0);
    var acc31 = vec4<f32>(0.0);
    var acc02 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0);
    var acc22 = vec4<f32>(0.0);
    var acc32 = vec4<f32>(0.0);
    var acc03 = vec4<f32>(0.0);
    var acc13 = vec4<f32>(0.0);
    var acc23 = vec4<f32>(0.0);
    var acc33 = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < n; j0 = j0 + TJ) {
        if (p.weights == 1u) {
            // Rademacher: row r's 16 signs are bits (j0 mod 32) .. +15 of
            // word (j0/32) mod 4 of Philox counter (j0/128, row, layer, sample).
            for (var r = li; r < TI; r = r + THREADS) {
                let row = row0 + r;
                var word = 0u;
                if (row < n) {
                    let w = philox4x32_10(vec4<u32>(j0 / 128u, row, p.layer, p.sample), key);
                    word = w[(j0 / 32u) % 4u] >> (j0 % 32u);
                }
                for (var k = 0u; k < TJ; k = k + 1u) {
                    var z = select(1.0, -1.0, ((word >> k) & 1u) == 1u);
                    if (row >= n) { z = 0.0; }
                    w_tile[k * (TI / 4u) + r / 4u][r % 4u] = z;
                }
            }
        } else {
            // Weights: TI rows × TJ/4 Philox blocks of four, stored k-major.
            for (var t = li; t < TI * (TJ / 4u); t = t + THREADS) {
                let r = t / (TJ / 4u);
                let blk = t % (TJ / 4u);
                let row = row0 + r;
                var z = vec4<f32>(0.0);
                if (row < n) {
                    z = normals(key, p.sample, p.layer, row, j0 / 4u + blk);
                }
                let q = r / 4u;
                let c = r % 4u;
                let k = blk * 4u;
                w_tile[k * (TI / 4u) + q][c] = z.x;
                w_tile[(k + 1u) * (TI / 4u) + q][c] = z.y;
                w_tile[(k + 2u) * (TI / 4u) + q][c] = z.z;
                w_tile[(k + 3u) * (TI / 4u) + q][c] = z.w;
            }
        }
        // Activations φ(H) for TJ units × TB inputs; zero outside the matrix.
        for (var t = li; t < TJ * C4; t = t + THREADS) {
            let jj = t / C4;
            let c4 = t % C4;
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
        for (var kk = 0u; kk < TJ; kk = kk + 1u) {
            let w = w_tile[kk * (TI / 4u) + ty];
            let a0 = a_tile[kk * C4 + tx + 0u * WX];
            let a1 = a_tile[kk * C4 + tx + 1u * WX];
            let a2 = a_tile[kk * C4 + tx + 2u * WX];
            let a3 = a_tile[kk * C4 + tx + 3u * WX];
            acc00 = acc00 + w.x * a0;
            acc10 = acc10 + w.y * a0;
            acc20 = acc20 + w.z * a0;
            acc30 = acc30 + w.w * a0;
            acc01 = acc01 + w.x * a1;
            acc11 = acc11 + w.y * a1;
            acc21 = acc21 + w.z * a1;
            acc31 = acc31 + w.w * a1;
            acc02 = acc02 + w.x * a2;
            acc12 = acc12 + w.y * a2;
            acc22 = acc22 + w.z * a2;
            acc32 = acc32 + w.w * a2;
            acc03 = acc03 + w.x * a3;
            acc13 = acc13 + w.y * a3;
            acc23 = acc23 + w.z * a3;
            acc33 = acc33 + w.w * a3;
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = row0 + ty * 4u + r;
        if (row >= n) { break; }
        var bias = 0.0;
        if (p.b_scale != 0.0) {
            let zb = normals(key, p.sample, p.layer, BIAS_ROW, row / 4u);
            bias = p.b_scale * zb[row % 4u];
        }
        var q0 = acc00;
        var q1 = acc01;
        var q2 = acc02;
        var q3 = acc03;
        if (r == 1u) { q0 = acc10; q1 = acc11; q2 = acc12; q3 = acc13; }
        if (r == 2u) { q0 = acc20; q1 = acc21; q2 = acc22; q3 = acc23; }
        if (r == 3u) { q0 = acc30; q1 = acc31; q2 = acc32; q3 = acc33; }
        for (var c = 0u; c < 4u; c = c + 1u) {
            let col = col0 + (tx + c * WX) * 4u;
            var acc = q0;
            if (c == 1u) { acc = q1; }
            if (c == 2u) { acc = q2; }
            if (c == 3u) { acc = q3; }
            let base = row * batch + col;
            if (col < batch) { h_out[base] = p.w_scale * acc.x + bias; }
            if (col + 1u < batch) { h_out[base + 1u] = p.w_scale * acc.y + bias; }
            if (col + 2u < batch) { h_out[base + 2u] = p.w_scale * acc.z + bias; }
            if (col + 3u < batch) { h_out[base + 3u] = p.w_scale * acc.w + bias; }
        }
    }
}
