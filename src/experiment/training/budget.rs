//! The memory plan of a training run, as the simulator's
//! ([`crate::experiment::plan`]): what the largest network needs (weights
//! and biases, momentum, gradients, activations, batches), checked against
//! this machine's available memory before the results folder is created.

use crate::error::{Error, Result};
use crate::experiment::plan::{available_memory, fmt_bytes};
use crate::experiment::training::plan::Resolved;
use crate::train::model::ModelSpec;
use serde::Serialize;

/// Bytes of one f32.
const F32: u128 = 4;

/// What training one network holds at its peak, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrainMemory {
    /// Weights and biases (f32), one copy.
    pub params: u64,
    /// Peak host memory beside the data: on the CPU the initial parameters,
    /// the trainer's copy, its momentum and its gradients (4 copies), the
    /// pre-activations and φ of every layer for the largest batch, the
    /// gradient pair and the gathered batch; on a GPU the initial
    /// parameters, one layer's zero momentum upload and the batch.
    pub host: u64,
    /// Device memory on a GPU (weights, biases and their momentum, the
    /// activations of every layer, the gradient pair, the batch); 0 on the CPU.
    pub device: u64,
}

fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// The memory of training the network `spec` with training batches of
/// `batch` and evaluation batches of `eval_batch` inputs; `gpu`: on a GPU
/// backend. Overflow-checked (saturating at u64::MAX).
pub fn train_memory(spec: &ModelSpec, batch: usize, eval_batch: usize, gpu: bool) -> TrainMemory {
    let (mut params, mut units, mut widest_layer) = (0u128, 0u128, 0u128);
    let mut widest = spec.input_dim.max(spec.classes) as u128;
    for l in 0..spec.depth {
        let (i, o) = spec.layer_shape(l);
        let layer = (i as u128) * (o as u128) + o as u128;
        params = params.saturating_add(layer);
        units = units.saturating_add(o as u128);
        widest_layer = widest_layer.max(layer);
        widest = widest.max(o as u128);
    }
    let b = batch.max(eval_batch).max(1) as u128;
    let acts = units.saturating_mul(2).saturating_mul(b);
    let grads_pair = widest.saturating_mul(2).saturating_mul(b);
    let x = (spec.input_dim as u128).saturating_mul(b);
    let (host, device) = if gpu {
        let host = params
            .saturating_add(widest_layer)
            .saturating_add(x)
            .saturating_mul(F32);
        let device = params
            .saturating_mul(2)
            .saturating_add(acts)
            .saturating_add(grads_pair)
            .saturating_add(x)
            .saturating_add(b.saturating_mul(4))
            .saturating_mul(F32);
        (host, device)
    } else {
        let host = params
            .saturating_mul(4)
            .saturating_add(acts)
            .saturating_add(grads_pair)
            .saturating_add(x)
            .saturating_mul(F32);
        (host, 0)
    };
    TrainMemory {
        params: sat(params.saturating_mul(F32)),
        host: sat(host),
        device: sat(device),
    }
}

/// The memory plan of a training run: its largest network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainPlan {
    /// Networks to train.
    pub points: usize,
    /// Multiply-adds of every training step of every network.
    pub train_macs: f64,
    /// The point with the largest host memory.
    pub largest_point: usize,
    /// Its memory.
    pub largest: TrainMemory,
    /// The loaded images (f32), already held.
    pub data_bytes: u64,
    /// Memory available on this machine, if known.
    pub available_bytes: Option<u64>,
}

impl TrainPlan {
    /// One line for the terminal.
    pub fn describe(&self) -> String {
        format!(
            "plan: {} network(s), {:.2e} training multiply-adds; peak memory {} host{} \
             (point {}) beside {} of images{}",
            self.points,
            self.train_macs,
            fmt_bytes(self.largest.host),
            if self.largest.device > 0 {
                format!(", {} device", fmt_bytes(self.largest.device))
            } else {
                String::new()
            },
            self.largest_point,
            fmt_bytes(self.data_bytes),
            self.available_bytes.map_or(String::new(), |a| format!(
                " (of {} available)",
                fmt_bytes(a)
            ))
        )
    }
}

/// Plans the memory of training `resolved` (the points of a plan, in
/// order) with `steps` steps per network, and refuses the largest network
/// beyond `available` bytes (this machine's available memory when `None`
/// is given for `available_override`), naming the point, the parts of the
/// estimate and what to reduce. `data_bytes`: the images already loaded
/// (held already, so reported but not counted against what is available).
pub fn plan_memory(
    resolved: &[Resolved],
    batch: usize,
    eval_batch: usize,
    steps: usize,
    gpu: bool,
    data_bytes: u64,
    available_override: Option<u64>,
) -> Result<TrainPlan> {
    let mut plan = TrainPlan {
        points: resolved.len(),
        train_macs: 0.0,
        largest_point: 0,
        largest: TrainMemory {
            params: 0,
            host: 0,
            device: 0,
        },
        data_bytes,
        available_bytes: available_override.or_else(available_memory),
    };
    for (i, r) in resolved.iter().enumerate() {
        let m = train_memory(&r.spec, batch, eval_batch, gpu);
        if m.host > plan.largest.host {
            plan.largest = m;
            plan.largest_point = i;
        }
        plan.train_macs += r.spec.step_macs() * batch as f64 * steps as f64;
    }
    if let (Some(have), Some(r)) = (plan.available_bytes, resolved.get(plan.largest_point)) {
        let m = plan.largest;
        if m.host > have {
            return Err(Error::TooLarge(format!(
                "training point {} (width {}, depth {}) needs about {} of memory ({} of weights \
                 and biases, held {} times: {}), but this machine has {} available beside the {} \
                 of images loaded: reduce training.width or the depth",
                plan.largest_point,
                r.spec.width,
                r.spec.depth,
                fmt_bytes(m.host),
                fmt_bytes(m.params),
                if gpu { 1 } else { 4 },
                if gpu {
                    "the initial parameters; the rest lives on the GPU"
                } else {
                    "the initial parameters, the trainer's copy, momentum and gradients, \
                     plus the activations of the largest batch"
                },
                fmt_bytes(have),
                fmt_bytes(data_bytes)
            )));
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::Phi;

    fn spec(width: usize, depth: usize) -> ModelSpec {
        ModelSpec {
            input_dim: 784,
            width,
            depth,
            classes: 10,
            phi: Phi::Surrogate,
            ste_slope: 1.0,
            ste_threshold: 1.0,
            sigma_w: 1.0,
            sigma_b: 0.0,
            quantize_logits: false,
        }
    }

    /// width 4, depth 3, batch 2, eval batch 5 on the CPU:
    /// params = 784·4 + 4 + 4·4 + 4 + 4·10 + 10 = 3210 floats;
    /// units = 4 + 4 + 10 = 18; B = 5; widest = 784.
    /// host = 4·(4·3210 + 2·18·5 + 2·784·5 + 784·5) = 4·(12840 + 180 + 7840 + 3920).
    #[test]
    fn cpu_memory_counts_four_parameter_copies_and_the_batches() {
        let m = train_memory(&spec(4, 3), 2, 5, false);
        assert_eq!(m.params, 4 * 3210);
        assert_eq!(m.host, 4 * (12840 + 180 + 7840 + 3920));
        assert_eq!(m.device, 0);
    }

    /// width 65536, depth 3: 784·65536 + 65536² + 65536·10 weights ≈ 4.33e9
    /// floats, 17.3 GB a copy, about 69 GB held four times: refused on a
    /// machine with 64 GiB, accepted with 1 TiB.
    #[test]
    fn width_65536_is_refused_against_64_gib() {
        let s = spec(65536, 3);
        let m = train_memory(&s, 32, 1000, false);
        let p = (784 + 1 + 65536 + 1) * 65536u64 + 65536 * 10 + 10;
        assert_eq!(m.params, 4 * p);
        assert!(m.host > 4 * 4 * p, "{m:?}");
        let r = Resolved {
            init: crate::train::model::theory_init(
                4,
                crate::train::model::Preset::Theory,
                1.0,
                0.0,
                0.0,
                1.0,
                1.0,
            )
            .unwrap(),
            depth: 3,
            lr: 0.01,
            spec: s,
        };
        let e = plan_memory(
            std::slice::from_ref(&r),
            32,
            1000,
            10,
            false,
            0,
            Some(64 << 30),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("training point 0 (width 65536, depth 3)"), "{e}");
        assert!(e.contains("64.0 GiB available"), "{e}");
        assert!(plan_memory(&[r], 32, 1000, 10, false, 0, Some(1 << 40)).is_ok());
    }

    /// Sizes beyond u64 saturate rather than wrap.
    #[test]
    fn absurd_sizes_saturate() {
        let m = train_memory(&spec(1 << 24, 100_000), 65536, 65536, false);
        assert_eq!(m.host, u64::MAX);
    }
}
