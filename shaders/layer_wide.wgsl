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
// The weight tile is stored k-major (the four weights that multiply one
// reduced unit into four consecutive rows form one vec4), so the inner
// product reads one vec4 of weights and CG = TB/64 vec4s of activations per
// unit; each thread updates 4 rows × 4·CG columns (columns
// (tx + 16·c)·4 .. +3, c = 0..CG−1) in 4·CG named vec4 registers (named
// variables, not an array, as fast register-tiled WGSL GEMMs keep them, so
// that the compiler holds them in registers). The host writes them out:
// every run of consecutive code lines that contain `{c}` is emitted once per
// column group c = 0..CG−1 with `{c}` replaced by c (sim/gpu/shaders.rs,
// `layer_wide`). The sum over units runs in the same order as layer.wgsl's.
// Twin of `layer` in src/sim/layer.rs.
// Backward (BACKWARD = true, set by the host by replacing its line): the
// same kernel is the `wide` and `wide256` variants' backward step,
// δ^l[j][b] = s·1{|h^l[j][b]| ≤ t}·(σ_w/√n)·Σ_i z_ij·δ^{l+1}[i][b]. The
// tile's rows are then the units j of layer l and its reduced units the
// rows i of layer l+1's W (read as Wᵀ: the numbers the forward pass used;
// p.layer is l + 1), the input tile is δ^{l+1} without φ, and the epilogue
// applies the straight-through mask at the stored forward pre-activations
// h^l (binding 3) instead of adding the bias. The sum over i runs in
// backward.wgsl's order. Twin of `LayerWeights::transposed` in
// src/sim/backward.rs, then the mask.
// Prepended with rng.wgsl, params.wgsl, phi.wgsl, input_tile.wgsl and
// layer_store.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
// φ's input H (layer) or δ^{l+1} (BACKWARD).
@group(0) @binding(1) var<storage, read> h_in: array<f32>;
// The next layer's H (layer) or δ^l (BACKWARD).
@group(0) @binding(2) var<storage, read_write> h_out: array<f32>;
// The quantizer table (layer, read by phi.wgsl) or h^l (BACKWARD).
@group(0) @binding(3) var<storage, read> table: array<f32>;

// Columns per workgroup and units per weight tile (the host sets both).
const TB: u32 = 128u;
const TJ: u32 = 32u;
// The backward step (the host sets it by replacing this line).
const BACKWARD: bool = false;
const TI: u32 = 64u;
const WX: u32 = 16u;
const WY: u32 = TI / 4u;
const THREADS: u32 = WX * WY;
// Column vec4s per row of the activation tile.
const C4: u32 = TB / 4u;

var<workgroup> w_tile: array<vec4<f32>, TJ * (TI / 4u)>;  // TJ units × TI/4 row quads (k-major)
var<workgroup> a_tile: array<vec4<f32>, TJ * C4>;         // TJ units × TB/4 column quads

// The input tile's elements (input_tile.wgsl): φ of the layer's input, or
// δ^{l+1} as it is (BACKWARD).
fn tile_input(i: u32) -> f32 {
    if (BACKWARD) {
        return h_in[i];
    }
    return phi(h_in[i]);
}

// The Rademacher signs of W's row `row` at units u − u mod 32 .. +31 (bit
// k set: unit u − u mod 32 + k is −1): word (u/32) mod 4 of Philox counter
// (u/128, row, layer, sample), as weight_tile.wgsl reads them.
fn sign_word(u: u32, row: u32) -> u32 {
    let w = philox4x32_10(vec4<u32>(u / 128u, row, p.layer, p.sample), vec2<u32>(p.key0, p.key1));
    return w[(u / 32u) % 4u];
}

// ±1 from bit k of a sign word.
fn sign_of(word: u32, k: u32) -> f32 {
    return select(1.0, -1.0, ((word >> k) & 1u) == 1u);
}

// The weight tile for reduced units k0 .. k0+TJ−1 and rows row0 .. row0+63,
// k-major: w_tile[kk·TI/4 + q] lane c multiplies reduced unit k0 + kk into
// row row0 + 4q + c. Layer: W[row][k0 + kk]; BACKWARD: W[k0 + kk][row]
// (Wᵀ). Zero where W's row is ≥ n. Every thread calls it; the caller puts
// the barrier after it.
fn fill_wide_weight_tile(li: u32, k0: u32, row0: u32) {
    let key = vec2<u32>(p.key0, p.key1);
    if (BACKWARD && p.weights == 1u) {
        // Rademacher: reduced unit i's 64 signs are two words of one Philox
        // counter (row0 is a multiple of 64), 8 row quads each.
        for (var t = li; t < TJ * (TI / 32u); t = t + THREADS) {
            let kk = t / (TI / 32u);
            let half = t % (TI / 32u);
            let i = k0 + kk;
            var word = 0u;
            if (i < p.n) {
                word = sign_word(row0 + half * 32u, i);
            }
            for (var q = 0u; q < 8u; q = q + 1u) {
                let b = q * 4u;
                var z = vec4<f32>(sign_of(word, b), sign_of(word, b + 1u),
                                  sign_of(word, b + 2u), sign_of(word, b + 3u));
                if (i >= p.n) { z = vec4<f32>(0.0); }
                w_tile[kk * (TI / 4u) + half * 8u + q] = z;
            }
        }
    } else if (BACKWARD) {
        // Weights: TJ rows i of W × TI/4 Philox blocks of four units j, each
        // block one row quad of the k-major tile as it comes.
        for (var t = li; t < TJ * (TI / 4u); t = t + THREADS) {
            let i = k0 + t / (TI / 4u);
            var z = vec4<f32>(0.0);
            if (i < p.n) {
                z = normals(key, p.sample, p.layer, i, row0 / 4u + t % (TI / 4u));
            }
            w_tile[t] = z;
        }
    } else if (p.weights == 1u) {
        // Rademacher: row r's TJ signs are bits (k0 mod 32) .. +TJ−1 of
        // word (k0/32) mod 4 of Philox counter (k0/128, row, layer, sample).
        for (var r = li; r < TI; r = r + THREADS) {
            let row = row0 + r;
            var word = 0u;
            if (row < p.n) {
                word = sign_word(k0, row) >> (k0 % 32u);
            }
            for (var k = 0u; k < TJ; k = k + 1u) {
                var z = sign_of(word, k);
                if (row >= p.n) { z = 0.0; }
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
            if (row < p.n) {
                z = normals(key, p.sample, p.layer, row, k0 / 4u + blk);
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
}

// The backward step's mask at h_out[base .. base+3] (columns col .. col+3):
// lane k is whether |h^l| ≤ t there (h^l in binding 3), false beyond the
// batch.
fn ste_inside(base: u32, col: u32) -> vec4<bool> {
    var inside = vec4<bool>(false);
    for (var k = 0u; k < 4u; k = k + 1u) {
        if (col + k < p.batch) {
            inside[k] = abs(table[base + k]) <= p.ste_threshold;
        }
    }
    return inside;
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    let n = p.n;
    let batch = p.batch;
    // Thread (tx, ty) of the tile whose first row and column are (row0, col0).
    let tx = lid.x;
    let ty = lid.y;
    let row0 = wid.y * TI;
    let col0 = wid.x * TB;
    // acc{r}{c}: row ty·4 + r, columns (tx + 16·c)·4 .. +3.
    var acc0{c} = vec4<f32>(0.0);
    var acc1{c} = vec4<f32>(0.0);
    var acc2{c} = vec4<f32>(0.0);
    var acc3{c} = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < n; k0 = k0 + TJ) {
        fill_wide_weight_tile(li, k0, row0);
        // φ(H) or δ^{l+1} for TJ units × TB inputs (input_tile.wgsl).
        fill_input_tile(li, THREADS, k0, TJ, col0, C4);
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
        var bias = 0.0;
        if (!BACKWARD) {
            bias = layer_bias(row);
        }
        // q{c}: row r's accumulator of column group c.
        var q{c} = acc0{c};
        if (r == 1u) { q{c} = acc1{c}; }
        if (r == 2u) { q{c} = acc2{c}; }
        if (r == 3u) { q{c} = acc3{c}; }
        for (var c = 0u; c < TB / 64u; c = c + 1u) {
            let col = col0 + (tx + c * WX) * 4u;
            var acc = q0;
            if (c == {c}u) { acc = q{c}; }
            let base = row * batch + col;
            if (BACKWARD) {
                let v = p.ste_slope * p.w_scale * acc;
                store_quad(base, col, select(vec4<f32>(0.0), v, ste_inside(base, col)));
            } else {
                store_quad(base, col, p.w_scale * acc + vec4<f32>(bias));
            }
        }
    }
}
