// One thread per input of the batch: softmax cross-entropy of its logits
// (column b of the classes × B logits), ℓ = ln Σ_c e^{z_c} − z_y, the number
// k of classes sharing its largest logit (stored as +k when the label is one
// of them, −k otherwise: the host credits 1/k, random tie-breaking in
// expectation, and counts k > 1 as a tie), and ∂(mean ℓ)/∂logits = (softmax − e_y)/B,
// times the STE mask when the logits are quantized. The loss is also added
// to this input's running sum (no float atomics). CPU twin: `Trainer::loss`.
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> h_last: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> g_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
@group(0) @binding(6) var<storage, read_write> correct: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss_acc: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let bsz = p.batch;
    if (j >= bsz) {
        return;
    }
    let y = labels[j];
    var m = logits[j];
    for (var c = 1u; c < p.classes; c++) {
        let z = logits[c * bsz + j];
        if (z > m) {
            m = z;
        }
    }
    var s = 0.0;
    var k = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        let z = logits[c * bsz + j];
        s += exp(z - m);
        k += select(0.0, 1.0, z == m);
    }
    let loss = log(s) + m - logits[y * bsz + j];
    for (var c = 0u; c < p.classes; c++) {
        let i = c * bsz + j;
        var g = exp(logits[i] - m) / s;
        if (c == y) {
            g -= 1.0;
        }
        g *= p.inv_batch;
        if (p.apply_phi != 0u) {
            g = select(0.0, g * p.ste_slope, abs(h_last[i]) <= p.ste_threshold);
        }
        g_out[i] = g;
    }
    losses[j] = loss;
    correct[j] = select(-k, k, logits[y * bsz + j] == m);
    if (p.accumulate != 0u) {
        loss_acc[j] += loss;
    }
}
