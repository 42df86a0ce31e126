// The tiled product shared by the training kernels: each 16 × 16 workgroup
// computes a 16 × 16 tile of C = A · B, staging 16 × 16 tiles of A and B in
// workgroup memory (A and B are the including kernel's `mat_a`, `mat_b`),
// and hands each element in range to the including kernel's
// `store(row, col, c)` (the fused epilogue: bias and φ, the STE mask, or
// the momentum update). The CPU twin is `gemm` in src/train/cpu.rs.
const TILE: u32 = 16u;
var<workgroup> tile_a: array<f32, 256>;
var<workgroup> tile_b: array<f32, 256>;

// Σ_j A[row][j]·B[j][col] for this thread's (row, col); every thread of the
// workgroup must call it (barriers), in or out of range.
fn tile_product(lid: vec3<u32>, row: u32, col: u32) -> f32 {
    var acc = 0.0;
    let tiles = (p.k + TILE - 1u) / TILE;
    let arow = row;
    let bcol = col;
    for (var t = 0u; t < tiles; t++) {
        let ka = t * TILE + lid.x;
        var va = 0.0;
        if (arow < p.m && ka < p.k) {
            va = mat_a[arow * p.rsa + ka * p.csa];
        }
        tile_a[lid.y * TILE + lid.x] = va;
        let kb = t * TILE + lid.y;
        var vb = 0.0;
        if (kb < p.k && bcol < p.n) {
            vb = mat_b[kb * p.rsb + bcol * p.csb];
        }
        tile_b[lid.y * TILE + lid.x] = vb;
        workgroupBarrier();
        for (var j = 0u; j < TILE; j++) {
            acc += tile_a[lid.y * TILE + j] * tile_b[j * TILE + lid.x];
        }
        workgroupBarrier();
    }
    return acc;
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    let acc = tile_product(lid, row, col);
    if (row < p.m && col < p.n) {
        store(row, col, acc);
    }
}
