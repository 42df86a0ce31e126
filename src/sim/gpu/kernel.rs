//! The layer kernel variant of a [`GpuBackend`]: the user's choice (forced,
//! or `auto`), the variant each chunk runs with (checked against what
//! applies, or tuned through [`super::autotune`]), the timing the tuner and
//! `bench` use, and the record of what ran (meta.json).

use super::autotune::{TuneKey, Tuner};
use super::variant::{self, DeviceCaps, KernelChoice, KernelVariant};
use super::GpuBackend;
use crate::error::{Error, Result};
use crate::sim::cpu::feature_major;
use crate::sim::spec::{Measurements, SimSpec, Weights};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The GPU backend's layer-kernel variant state ([`variant`], [`autotune`]).
pub(super) struct KernelState {
    pub(super) choice: KernelChoice,
    pub(super) caps: DeviceCaps,
    pub(super) tuner: RefCell<Tuner>,
    /// The variant that ran at each (n, B, weights).
    pub(super) used: RefCell<BTreeMap<(usize, usize, &'static str), KernelVariant>>,
}

/// Layers timed per variant when tuning (after one warm-up layer); one on
/// a software adapter, where a layer at n = 4096 takes seconds.
const TUNE_LAYERS: usize = 3;

impl KernelState {
    /// The reference kernel, no tuner cache.
    pub(super) fn new(caps: DeviceCaps) -> Self {
        KernelState {
            choice: KernelChoice::Forced(KernelVariant::Tiled),
            caps,
            tuner: RefCell::new(Tuner::new(None)),
            used: RefCell::new(Default::default()),
        }
    }
}

impl GpuBackend {
    /// Sets the layer kernel: a forced variant, or `Auto` (time the
    /// applicable variants on first use of each (n, B, weights) and keep
    /// the fastest, cached in `cache_dir`: see [`super::autotune`]). A backend
    /// starts with the reference kernel, `tiled`; the command line's
    /// default is `auto` with [`super::autotune::default_cache_dir`].
    pub fn set_kernel(&mut self, choice: KernelChoice, cache_dir: Option<std::path::PathBuf>) {
        self.kernel.choice = choice;
        self.kernel.used.borrow_mut().clear();
        self.kernel.tuner = RefCell::new(Tuner::new(cache_dir));
    }

    /// Replaces the tuner (a chosen cache folder, warnings elsewhere than stderr).
    pub fn set_tuner(&mut self, tuner: Tuner) {
        self.kernel.tuner = RefCell::new(tuner);
    }

    /// What the layer kernel variants depend on in this device.
    pub fn kernel_caps(&self) -> DeviceCaps {
        self.kernel.caps
    }

    /// The layer kernel variants that ran since the last [`Self::set_kernel`],
    /// in [`KernelVariant::ALL`] order.
    pub fn kernels_used(&self) -> Vec<KernelVariant> {
        let used: BTreeSet<KernelVariant> = self.kernel.used.borrow().values().copied().collect();
        used.into_iter().collect()
    }

    /// The layer kernel in words: the variant that ran, or where variants
    /// differ between sizes, each with its sizes (`tiled (n=256 B=16
    /// gaussian), wide (n=256 B=130 gaussian)`); before any layer ran, the
    /// choice (`auto`, a variant).
    pub fn kernel_description(&self) -> String {
        let used = self.kernel.used.borrow();
        match self.kernels_used().as_slice() {
            [] => self.kernel.choice.name().to_string(),
            [one] => one.name().to_string(),
            _ => used
                .iter()
                .map(|((n, b, w), v)| format!("{v} (n={n} B={b} {w})"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The variant that runs layers of `spec` on this chunk: the forced one
    /// (an error naming the applicable ones where it does not apply), or
    /// the tuned one; `None` for the Hadamard ensemble (its own kernels).
    pub(super) fn layer_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
    ) -> Result<Option<KernelVariant>> {
        if spec.weights == Weights::Hadamard {
            return Ok(None);
        }
        let (n, batch) = (spec.width, meas.batch);
        let caps = &self.kernel.caps;
        let candidates = variant::applicable(n, batch, caps);
        match self.kernel.choice {
            KernelChoice::Forced(v) if v.applicable(n, batch, caps) => Ok(Some(v)),
            KernelChoice::Forced(v) => Err(Error::invalid(
                "--kernel",
                v,
                &format!(
                    "{v} needs {}; at n = {n}, B = {batch} on {} these apply: {}",
                    v.requirement(),
                    self.ctx.info.name,
                    candidates
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            KernelChoice::Auto => {
                let key = TuneKey {
                    adapter: self.ctx.info.name.clone(),
                    backend: format!("{:?}", self.ctx.info.backend),
                    driver: self.ctx.info.driver.clone(),
                    driver_info: self.ctx.info.driver_info.clone(),
                    n,
                    batch,
                    weights: spec.weights.to_string(),
                };
                let mut time = |v| {
                    let layers = if self.ctx.is_software() {
                        1
                    } else {
                        TUNE_LAYERS
                    };
                    self.time_variant(spec, h0, meas, sample, v, layers)
                        .map(|(t, _)| t)
                };
                let chosen = self
                    .kernel
                    .tuner
                    .borrow_mut()
                    .choose(&key, &candidates, &mut time)?;
                Ok(Some(chosen.variant()))
            }
        }
    }

    /// Seconds per layer of `variant` on this chunk, and whether they come
    /// from the device: one warm-up layer, then `layers` layers timed by the
    /// device's timestamps where it has them, else by the wall clock around
    /// submit and wait.
    fn time_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        variant: KernelVariant,
        layers: usize,
    ) -> Result<(f64, bool)> {
        let saved = self.gpu_seconds.get();
        let run = |depth: usize| {
            let s = SimSpec {
                depth,
                ..spec.clone()
            };
            let mut ignore = |_, _, _| Ok(());
            self.run_chunk(&s, h0, meas, sample, &mut ignore, false, Some(variant))
        };
        run(1)?;
        self.gpu_seconds.set(0.0);
        let start = Instant::now();
        run(layers)?;
        let wall = start.elapsed().as_secs_f64();
        let device = self.gpu_seconds.replace(saved);
        let from_device = self.ctx.timestamps && device > 0.0;
        let secs = if from_device { device } else { wall };
        Ok((secs / layers.max(1) as f64, from_device))
    }

    /// Times every variant that applies to `spec`'s width and batch (for
    /// `bench`): seconds per layer over `spec.depth` layers after a warm-up
    /// layer, the best of `repeats`, and whether the times come from device
    /// timestamps (else the wall clock, submission and read-back included).
    pub fn time_variants(
        &self,
        spec: &SimSpec,
        repeats: usize,
    ) -> Result<Vec<(KernelVariant, f64, bool)>> {
        spec.validate()?;
        let meas = spec.measurements();
        let h0 = feature_major(&spec.input_vectors(0), spec.width);
        let mut out = Vec::new();
        for v in variant::applicable(spec.width, meas.batch, &self.kernel.caps) {
            let mut best = (f64::INFINITY, false);
            for _ in 0..repeats.max(1) {
                let t = self.time_variant(spec, &h0, &meas, 0, v, spec.depth)?;
                if t.0 < best.0 {
                    best = t;
                }
            }
            out.push((v, best.0, best.1));
        }
        Ok(out)
    }
}
