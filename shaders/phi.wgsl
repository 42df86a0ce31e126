// φ, the activation, shared by the kernels that apply it to a tile
// (layer.wgsl, hadamard.wgsl); composed by the host after params.wgsl. It
// reads the including kernel's `p` (per-layer parameters: kind, states,
// spacing) and `table` (levels, then thresholds), as its CPU twin
// `SimActivation` (src/sim/phi.rs) does: uniform quantizer by index,
// general quantizer by binary search over the thresholds, tanh, hard-tanh,
// identity.
fn phi(x: f32) -> f32 {
    switch p.kind {
        case 0u: {
            let t = floor(x * p.inv_spacing + p.half_states);
            let k = u32(clamp(t, 0.0, f32(p.states - 1u)));
            return table[k];
        }
        case 1u: {
            // Count the thresholds g ≤ x (binary search), as partition_point does.
            var lo = 0u;
            var hi = p.states - 1u;
            loop {
                if (lo >= hi) { break; }
                let mid = (lo + hi) / 2u;
                if (table[p.states + mid] <= x) { lo = mid + 1u; } else { hi = mid; }
            }
            return table[lo];
        }
        case 2u: { return tanh(clamp(x, -20.0, 20.0)); }
        case 3u: { return clamp(x, -1.0, 1.0); }
        default: { return x; }
    }
}
