//! The CPU reference backend: each network sample runs the CPU twins of the
//! GPU stages — [`crate::sim::layer`] (`shaders/layer.wgsl`, and
//! [`crate::sim::hadamard`] for the Hadamard ensemble) and
//! [`crate::sim::stats::block_stats`] (`shaders/stats.wgsl`) — on all cores.
//! A seed gives bitwise the same statistics whatever the thread count.

use crate::error::Result;
use crate::rng::Stream;
use crate::sim::layer::LayerWeights;
use crate::sim::spec::{SimActivation, SimSpec};
use crate::sim::{input_layer, Backend, BackendInfo, LayerSink};
use rayon::prelude::*;

pub use crate::sim::layer::{ensemble_layer_with_stats, layer};
pub use crate::sim::spec::{feature_major, rows_per_block};
pub use crate::sim::stats::block_stats;

/// The CPU backend.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            adapter: format!("{} threads", rayon::current_num_threads()),
            kernel: None,
        }
    }

    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> Result<()> {
        let n = spec.width;
        let (mut h, meas) = input_layer(spec, inputs, sink)?;
        let batch = meas.batch;
        let act_fn = SimActivation::from_activation(&spec.activation);
        let stream = Stream::new(spec.seed, sample);
        let mut a = vec![0f32; n * batch];
        for l in 1..=spec.depth {
            a.par_chunks_mut(4096)
                .zip(h.par_chunks(4096))
                .for_each(|(a, h)| act_fn.apply(h, a));
            let (s, d) = LayerWeights::of(spec, &stream, l as u32)
                .layer(&a, batch, &mut h, Some(&meas))
                .expect("statistics requested");
            sink(l, &s, &d)?;
        }
        Ok(())
    }
}
