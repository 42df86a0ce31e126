// The counter-based generator, bit-identical twin of src/rng.rs: Philox4x32-10
// (Salmon et al., SC'11) in 32-bit integer arithmetic, and Box–Muller normals
// from 24-bit uniforms with the same branch-free Cephes polynomials for ln,
// sin and cos, in the same order, as the CPU. A weight W[row][4j..4j+4] of
// `layer` in network `sample` comes from counter (j, row, layer, sample) and
// key (seed lo, seed hi). This file holds functions only; it is prepended to
// the kernels that use it.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const BIAS_ROW: u32 = 0xFFFFFFFFu;

// (high, low) 32-bit halves of the 64-bit product a·b, from 16-bit limbs.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var r = 0u; r < 10u; r = r + 1u) {
        if (r > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// ln(m·2^-24) for an integer m in [1, 2^24] (Cephes logf).
fn ln_unit(m: u32) -> f32 {
    let x = f32(m);
    let bits = bitcast<u32>(x);
    var e = i32(bits >> 23u) - 127 - 24;
    var f = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    let big = select(0, 1, f > 1.4142135);
    f = f * (1.0 - 0.5 * f32(big));
    e = e + big;
    let t = f - 1.0;
    let z = t * t;
    var p = 7.0376836e-2;
    p = p * t - 1.1514611e-1;
    p = p * t + 1.1676999e-1;
    p = p * t - 1.2420141e-1;
    p = p * t + 1.4249323e-1;
    p = p * t - 1.6668058e-1;
    p = p * t + 2.0000714e-1;
    p = p * t - 2.4999994e-1;
    p = p * t + 3.3333331e-1;
    let ef = f32(e);
    var y = t * z * p;
    y = y + ef * -2.1219444e-4;
    y = y + -0.5 * z;
    let r = t + y;
    return r + ef * 0.6933594;
}

// (sin 2πθ, cos 2πθ) for θ = m·2^-24, m a 24-bit integer.
fn sincos_turn(m: u32) -> vec2<f32> {
    let qq = (m + (1u << 21u)) >> 22u;
    let q = qq & 3u;
    let r = i32(m) - i32(qq << 22u);
    let x = f32(r) * (6.2831855 / 16777216.0);
    let z = x * x;
    let s = ((-1.9515296e-4 * z + 8.332161e-3) * z - 1.6666655e-1) * z * x + x;
    let c = ((2.4433157e-5 * z - 1.3887316e-3) * z + 4.1666646e-2) * z * z - 0.5 * z + 1.0;
    let swap = 0u - (q & 1u);
    let sb = bitcast<u32>(s);
    let cb = bitcast<u32>(c);
    let a = (sb & ~swap) | (cb & swap);
    let b = (cb & ~swap) | (sb & swap);
    let sn = bitcast<f32>(a ^ ((q & 2u) << 30u));
    let cs = bitcast<f32>(b ^ (((q ^ (q >> 1u)) & 1u) << 31u));
    return vec2<f32>(sn, cs);
}

fn box_muller(x: vec4<u32>) -> vec4<f32> {
    let r0 = sqrt(-2.0 * ln_unit((x.x >> 8u) + 1u));
    let r1 = sqrt(-2.0 * ln_unit((x.z >> 8u) + 1u));
    let sc0 = sincos_turn(x.y >> 8u);
    let sc1 = sincos_turn(x.w >> 8u);
    return vec4<f32>(r0 * sc0.y, r0 * sc0.x, r1 * sc1.y, r1 * sc1.x);
}

fn normals(key: vec2<u32>, sample: u32, layer: u32, row: u32, block: u32) -> vec4<f32> {
    return box_muller(philox4x32_10(vec4<u32>(block, row, layer, sample), key));
}
