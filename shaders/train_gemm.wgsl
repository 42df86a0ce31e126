// The tiled product shared by the training kernels: each workgroup of
// 16 × 16 threads computes a BM × BN tile of C = A · B (BM = 16·TM,
// BN = 16·TN; thread (x, y) holds the TM × TN outputs at rows y + 16·r and
// columns x + 16·c of the tile in registers), staging BM × 16 slices of A and
// 16 × BN slices of B in workgroup memory (A and B are the including
// kernel's `mat_a`, `mat_b`), and hands each output in range to the
// including kernel's `store(row, col, c)` (the fused epilogue: bias and φ,
// the STE mask, or the momentum update). TM and TN are the tile variant's
// (`Tile` in src/train/gpu/shaders.rs, which writes the two constants
// below); TM = TN = 1 is the plain 16 × 16 tile. Every output is one sum
// over k in k order, whatever the variant. The CPU twin is `gemm` in
// src/train/cpu.rs.
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const TK: u32 = 16u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
var<workgroup> tile_a: array<f32, {{A_FLOATS}}>;   // BM × TK, row-major
var<workgroup> tile_b: array<f32, {{B_FLOATS}}>;   // TK × BN, row-major

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let t = lid.y * 16u + lid.x;
    var acc: array<f32, {{ACC}}>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    let tiles = (p.k + TK - 1u) / TK;
    for (var s = 0u; s < tiles; s++) {
        let k0 = s * TK;
        // Each of the 256 threads stages TM elements of A's slice and TN of B's.
        for (var i = 0u; i < TM; i++) {
            let e = t + 256u * i;
            let r = row0 + e / TK;
            let kk = k0 + e % TK;
            var va = 0.0;
            if (r < p.m && kk < p.k) {
                va = mat_a[r * p.rsa + kk * p.csa];
            }
            tile_a[e] = va;
        }
        for (var i = 0u; i < TN; i++) {
            let e = t + 256u * i;
            let kk = k0 + e / BN;
            let c = col0 + e % BN;
            var vb = 0.0;
            if (kk < p.k && c < p.n) {
                vb = mat_b[kk * p.rsb + c * p.csb];
            }
            tile_b[e] = vb;
        }
        workgroupBarrier();
        for (var j = 0u; j < TK; j++) {
            var b: array<f32, {{TN_ARRAY}}>;
            for (var c = 0u; c < TN; c++) {
                b[c] = tile_b[j * BN + lid.x + 16u * c];
            }
            for (var r = 0u; r < TM; r++) {
                let a = tile_a[(lid.y + 16u * r) * TK + j];
                for (var c = 0u; c < TN; c++) {
                    acc[r * TN + c] += a * b[c];
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < TM; r++) {
        let row = row0 + lid.y + 16u * r;
        for (var c = 0u; c < TN; c++) {
            let col = col0 + lid.x + 16u * c;
            if (row < p.m && col < p.n) {
                store(row, col, acc[r * TN + c]);
            }
        }
    }
}
