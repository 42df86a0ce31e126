// The weight tile: the generated weights of layer p.layer at rows
// row0..row0+rows and columns col0..col0+cols, written row-major into the
// including kernel's workgroup array `w_tile` (w_tile[r·cols + c]), zero in
// rows ≥ p.n. Shared by layer.wgsl (a tile of W) and backward.wgsl (a tile
// of W read as Wᵀ); composed by the host after rng.wgsl and params.wgsl. It
// reads the including kernel's `p` (key, layer, n, weights); the network
// sample is p.sample (`fill_weight_tile`) or the caller's
// (`fill_weight_tile_of`, the stacked layer: one sample per grid z).
// Every thread of the workgroup calls it (thread `li` of `threads`); the
// caller puts the barrier after it. Twin of `Stream::fill_row` (gaussian)
// and `Stream::fill_row_signs` (rademacher) in src/rng.rs.
//  - p.weights = 0, gaussian: z_ij is lane j mod 4 of the four normals of
//    Philox block (j/4, i, layer, sample); `cols` a multiple of 4 and col0
//    of 4.
//  - p.weights = 1, rademacher: z_ij = ±1, bit j mod 32 of word (j/32) mod 4
//    of Philox counter (j/128, i, layer, sample), set meaning −1; `cols` and
//    col0 multiples of 32 (one Philox call per 32 signs).
fn fill_weight_tile(li: u32, threads: u32, row0: u32, rows: u32, col0: u32, cols: u32) {
    fill_weight_tile_of(p.sample, li, threads, row0, rows, col0, cols);
}

fn fill_weight_tile_of(sample: u32, li: u32, threads: u32, row0: u32, rows: u32, col0: u32,
                       cols: u32) {
    let key = vec2<u32>(p.key0, p.key1);
    if (p.weights == 1u) {
        let words = cols / 32u;
        for (var t = li; t < rows * words; t = t + threads) {
            let r = t / words;
            let c = col0 + (t % words) * 32u;
            let row = row0 + r;
            var word = 0u;
            if (row < p.n) {
                let w = philox4x32_10(vec4<u32>(c / 128u, row, p.layer, sample), key);
                word = w[(c / 32u) % 4u];
            }
            let base = r * cols + (c - col0);
            for (var k = 0u; k < 32u; k = k + 1u) {
                var z = select(1.0, -1.0, ((word >> k) & 1u) == 1u);
                if (row >= p.n) { z = 0.0; }
                w_tile[base + k] = z;
            }
        }
    } else {
        let blocks = cols / 4u;
        for (var t = li; t < rows * blocks; t = t + threads) {
            let r = t / blocks;
            let blk = t % blocks;
            let row = row0 + r;
            var z = vec4<f32>(0.0);
            if (row < p.n) {
                z = normals(key, sample, p.layer, row, col0 / 4u + blk);
            }
            let base = r * cols + blk * 4u;
            w_tile[base] = z.x;
            w_tile[base + 1u] = z.y;
            w_tile[base + 2u] = z.z;
            w_tile[base + 3u] = z.w;
        }
    }
}
