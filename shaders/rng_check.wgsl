// The generator's test shader; its twin is src/rng.rs (philox4x32_10 and
// Stream::normals), held equal by tests/gpu.rs `rng_check_gpu_equals_cpu`
// (the words bit for bit, the normals to f32 rounding). Each invocation evaluates the generator of shaders/rng.wgsl at one
// counter, (i, row, layer, sample) with i its global index, and writes the
// four raw words and the four normals: the data for the bitwise comparison
// with src/rng.rs. Prepended with rng.wgsl.

struct CheckParams {
    key: vec2<u32>,
    row: u32,
    layer: u32,
    sample: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> cp: CheckParams;
@group(0) @binding(1) var<storage, read_write> words: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> gauss: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= cp.count) {
        return;
    }
    let w = philox4x32_10(vec4<u32>(i, cp.row, cp.layer, cp.sample), cp.key);
    words[i] = w;
    gauss[i] = box_muller(w);
}
