// The input tile of a tiled product: rows j0..j0+rows × batch columns
// col0..col0+4·quads of the including kernel's feature-major input
// (element j·B + b), each element read through the kernel's
// `tile_input(index)` (layer kernels: φ(h_in[index]), φ applied as the
// tile loads; backward.wgsl: delta_in[index]), written into its workgroup
// array `a_tile` as vec4s (a_tile[jj·quads + c4] holds columns
// col0 + 4·c4 .. +3 of row j0 + jj), zero outside the n × B matrix. Shared
// by layer.wgsl, layer_wide.wgsl and backward.wgsl; composed by the host
// after params.wgsl. It reads the including kernel's `p` (n, batch). Every
// thread of the workgroup calls it (thread `li` of `threads`); the caller
// puts the barrier after it.
fn fill_input_tile(li: u32, threads: u32, j0: u32, rows: u32, col0: u32, quads: u32) {
    for (var t = li; t < rows * quads; t = t + threads) {
        let jj = t / quads;
        let c4 = t % quads;
        let j = j0 + jj;
        let col = col0 + c4 * 4u;
        var v = vec4<f32>(0.0);
        if (j < p.n) {
            let base = j * p.batch + col;
            if (col < p.batch) { v.x = tile_input(base); }
            if (col + 1u < p.batch) { v.y = tile_input(base + 1u); }
            if (col + 2u < p.batch) { v.z = tile_input(base + 2u); }
            if (col + 3u < p.batch) { v.w = tile_input(base + 3u); }
        }
        a_tile[t] = v;
    }
}

// The part of the reduced dimension that workgroup slice z of `slices`
// covers (split-K, the grid's z axis): whole tiles [z·per, (z+1)·per) of the
// ⌈n/tj⌉ tiles of tj units, as [begin, end) in units; all of 0..n when the
// grid has one slice. The host derives the same `per` (sim/gpu/variant.rs).
fn slice_range(n: u32, tj: u32, slices: u32, z: u32) -> vec2<u32> {
    let tiles = (n + tj - 1u) / tj;
    let per = (tiles + slices - 1u) / slices;
    let begin = z * per * tj;
    return vec2<u32>(begin, min(n, begin + per * tj));
}
