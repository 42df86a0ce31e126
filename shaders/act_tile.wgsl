// The activation tile: φ(H) for units j0..j0+units × batch columns
// col0..col0+4·quads, written into the including kernel's workgroup array
// `a_tile` as vec4s (a_tile[jj·quads + c4] holds columns col0 + 4·c4 .. +3
// of unit j0 + jj), zero outside the matrix. Shared by layer.wgsl and
// layer_wide.wgsl; composed by the host after phi.wgsl and params.wgsl. It
// reads the including kernel's `p` (n, batch) and `h_in` (feature-major:
// H[j·B + b]). Every thread of the workgroup calls it (thread `li` of
// `threads`); the caller puts the barrier after it. φ is applied as the
// tile loads, as `layer` in src/sim/layer.rs applies it to the inputs.
fn fill_act_tile(li: u32, threads: u32, j0: u32, units: u32, col0: u32, quads: u32) {
    for (var t = li; t < units * quads; t = t + threads) {
        let jj = t / quads;
        let c4 = t % quads;
        let j = j0 + jj;
        let col = col0 + c4 * 4u;
        var v = vec4<f32>(0.0);
        if (j < p.n) {
            let base = j * p.batch + col;
            if (col < p.batch) { v.x = phi(h_in[base]); }
            if (col + 1u < p.batch) { v.y = phi(h_in[base + 1u]); }
            if (col + 2u < p.batch) { v.z = phi(h_in[base + 2u]); }
            if (col + 3u < p.batch) { v.w = phi(h_in[base + 3u]); }
        }
        a_tile[t] = v;
    }
}
