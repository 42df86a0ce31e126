// `main`: each workgroup computes a 16 × 16 tile of the weight gradient
// ΔW = G · A_inᵀ and, fused, applies SGD with momentum to it:
// v ← μv + ΔW, w ← w − ηv. `bias`: one thread per unit, Δb = Σ_b G[o][b],
// then the same update. CPU twin: `Trainer::backward` and `Trainer::update`.
@group(0) @binding(1) var<storage, read> mat_a: array<f32>;      // G (fan_out × B)
@group(0) @binding(2) var<storage, read> mat_b: array<f32>;      // A_in, read transposed
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> vw: array<f32>;
@group(0) @binding(5) var<storage, read_write> b: array<f32>;
@group(0) @binding(6) var<storage, read_write> vb: array<f32>;

// The epilogue of train_gemm.wgsl's `main`: the momentum update.
fn store(row: u32, col: u32, acc: f32) {
    let i = row * p.n + col;
    let v = p.momentum * vw[i] + acc;
    vw[i] = v;
    w[i] = w[i] - p.lr * v;
}

@compute @workgroup_size(64, 1, 1)
fn bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    if (o >= p.m) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
        s += mat_a[o * p.k + j];
    }
    let v = p.momentum * vb[o] + s;
    vb[o] = v;
    b[o] = b[o] - p.lr * v;
}
