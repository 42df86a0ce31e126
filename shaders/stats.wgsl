// Each workgroup reduces one measured quantity of a layer over one group of
// rows: the sum of squares of input b (quantities 0..B-1) or the dot product
// of a measured pair (quantities B..B+P-1). Its 256 threads stride through
// the rows in a fixed order, then combine in a fixed tree in workgroup
// memory: no float atomics, so the same seed gives the same bits. The host
// adds the row groups' partials in f64. Twin of `block_stats` in
// src/sim/stats.rs (GPU driver src/sim/gpu/stats.rs). Prepended with
// params.wgsl.
// The grid's z axis is the network sample of a stacked layer (S = z count,
// one for every other variant): workgroup (q, g, z) reads the activations
// at offset z·n·B and writes slot (p.slot·S + z) of the statistics, so with
// S = 1 the layout is one network's.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> pairs: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

const THREADS: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = wid.x;
    let g = wid.y;
    var a = q;
    var b = q;
    if (q >= p.batch) {
        let pr = pairs[q - p.batch];
        a = pr.x;
        b = pr.y;
    }
    let base = wid.z * p.n * p.batch;
    let start = g * p.rows_per_group;
    let end = min(start + p.rows_per_group, p.n);
    var acc = 0.0;
    for (var i = start + li; i < end; i = i + THREADS) {
        acc = acc + h[base + i * p.batch + a] * h[base + i * p.batch + b];
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            partial[li] = partial[li] + partial[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        stats[((p.slot * nwg.z + wid.z) * p.quantities + q) * p.groups + g] = partial[0];
    }
}
