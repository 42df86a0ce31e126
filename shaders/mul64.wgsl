// The Philox multiply with one 64-bit product, for adapters with
// SHADER_INT64: (high, low) 32-bit halves of a·b, the same two words as
// rng.wgsl's 16-bit-limb `mulhilo` (an exact product either way, so the
// stream is bit for bit the same). The host puts this function in place of
// rng.wgsl's `mulhilo` for the `-int64` kernel variants.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let prod = u64(a) * u64(b);
    return vec2<u32>(u32(prod >> 32u), u32(prod));
}
