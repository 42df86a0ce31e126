// Wide layer for large batches, at two tile widths (the host sets TB and TJ
// by replacing their lines): each workgroup computes a 64-row × TB-column
// tile, so one generated weight tile (64 rows × TJ units, the expensive
// part: one Philox call and a Box–Muller per four weights) serves TB inputs
// instead of layer.wgsl's 64.
//  - `wide`: TB = 128, TJ = 32 — half the generator work per layer at
//    B ≥ 128;
//  - `wide256`: TB = 256, TJ = 16 — a quarter of it at B ≥ 256; the tile
//    holds 16 units, not 32, so that weights and activations fit 20 KiB of
//    workgroup memory.
// The weight tile is stored k-major (four consecutive rows of one unit form
// one vec4), so the inner product reads one vec4 of weights and CG = TB/64
// vec4s of activations per unit; each thread updates 4 rows × 4·CG columns
// (columns (tx + 16·c)·4 .. +3, c = 0..CG−1) in 4·CG named vec4 registers
// (named variables, not an array, as fast register-tiled WGSL GEMMs keep
// them, so that the compiler holds them in registers). The host writes
// them out: every run of consecutive code lines that contain `{c}` is
// emitted once per column group c = 0..CG−1 with `{c}` replaced by c
// (sim/gpu/shaders.rs, `layer_wide`). The sum over
// units runs in the same order as layer.wgsl's. Twin of `layer` in
// src/sim/layer.rs. Prepended with rng.wgsl, params.wgsl, phi.wgsl,
// input_tile.wgsl and layer_store.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

// Columns per workgroup and units per weight tile (the host sets both).
const TB: u32 = 128u;
const TJ: u32 = 32u;
const TI: u32 = 64u;
const WX: u32 = 16u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;
// Column vec4s per row of the activation tile.
const C4: u32 = TB / 4u;

var<workgroup> w_tile: array<vec4<f32>, TJ * (TI / 4u)>;  // TJ units × TI/4 row quads (k-major)
var<workgroup> a_tile: array<vec4<f32>, TJ * C4>;         // TJ units × TB/4 column quads

// The input tile's elements: φ of the layer's input (input_tile.wgsl).
fn tile_input(i: u32) -> f32 {
    return phi(h_in[i]);
}

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
    var acc0{c} = vec4<f32>(0.0);
    var acc1{c} = vec4<f32>(0.0);
    var acc2{c} = vec4<f32>(0.0);
    var acc3{c} = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < n; j0 = j0 + TJ) {
        if (p.weights == 1u) {
            // Rademacher: row r's TJ signs are bits (j0 mod 32) .. +TJ−1 of
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
        // Activations φ(H) for TJ units × TB inputs (input_tile.wgsl).
        fill_input_tile(li, THREADS, j0, TJ, col0, C4);
        workgroupBarrier();
        for (var kk = 0u; kk < TJ; kk = kk + 1u) {
            let w = w_tile[kk * (TI / 4u) + ty];
            let a{c} = a_tile[kk * C4 + tx + {c}u * WX];
            acc0{c} = acc0{c} + w.x * a{c};
            acc1{c} = acc1{c} + w.y * a{c};
            acc2{c} = acc2{c} + w.z * a{c};
            acc3{c} = acc3{c} + w.w * a{c};
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = row0 + ty * 4u + r;
        if (row >= n) { break; }
        let bias = layer_bias(row);
        // q{c}: row r's accumulator of column group c.
        var q{c} = acc0{c};
        if (r == 1u) { q{c} = acc1{c}; }
        if (r == 2u) { q{c} = acc2{c}; }
        if (r == 3u) { q{c} = acc3{c}; }
        for (var c = 0u; c < TB / 64u; c = c + 1u) {
            let col = col0 + (tx + c * WX) * 4u;
            var acc = q0;
            if (c == {c}u) { acc = q{c}; }
            store_quad(row * batch + col, col, p.w_scale * acc + vec4<f32>(bias));
        }
    }
}
