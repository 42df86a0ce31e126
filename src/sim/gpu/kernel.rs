//! The layer kernel variant of a [`GpuBackend`]: the user's choice (forced,
//! or `auto`), the variant each chunk runs with (checked against what
//! applies, or tuned through [`super::autotune`]), the timing the tuner and
//! `bench` use, and the record of what ran (meta.json).

use super::autotune::{TuneKey, Tuner};
use super::stats::groups as stats_groups;
use super::variant::{self, DeviceCaps, KernelChoice, KernelVariant, Tiling};
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
    pub(super) used: RefCell<BTreeMap<SizeKey, KernelVariant>>,
    /// The stacked variant that ran at each (n, B, weights) and its largest
    /// stack S (a run's stacks differ by at most one sample; its last
    /// network alone may run another variant under `auto`).
    pub(super) stacks: RefCell<BTreeMap<SizeKey, (KernelVariant, usize)>>,
}

/// (n, B, weights): what the record of variants that ran is kept by.
pub(super) type SizeKey = (usize, usize, &'static str);

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
            stacks: RefCell::new(Default::default()),
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
        self.kernel.stacks.borrow_mut().clear();
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
        let mut used: BTreeSet<KernelVariant> =
            self.kernel.used.borrow().values().copied().collect();
        used.extend(self.kernel.stacks.borrow().values().map(|(v, _)| *v));
        used.into_iter().collect()
    }

    /// The layer kernel in words: the variant that ran (a stacked one with
    /// its largest stack, `stacked (S=4)`), or where variants differ
    /// between sizes, each with its sizes (`tiled (n=256 B=16 gaussian),
    /// wide (n=256 B=130 gaussian)`); before any layer ran, the choice
    /// (`auto`, a variant).
    pub fn kernel_description(&self) -> String {
        let used = self.kernel.used.borrow();
        let stacks = self.kernel.stacks.borrow();
        let mut keys: BTreeSet<SizeKey> = used.keys().copied().collect();
        keys.extend(stacks.keys().copied());
        let labels: Vec<(SizeKey, String)> = keys
            .into_iter()
            .map(|k| {
                let mut names = Vec::new();
                if let Some((v, s)) = stacks.get(&k) {
                    names.push(v.label(*s));
                }
                if let Some(v) = used
                    .get(&k)
                    .filter(|v| stacks.get(&k).is_none_or(|(s, _)| s != *v))
                {
                    names.push(v.name().to_string());
                }
                (k, names.join(" + "))
            })
            .collect();
        match labels.as_slice() {
            [] => self.kernel.choice.name().to_string(),
            [(_, one)] => one.clone(),
            _ => labels
                .iter()
                .map(|((n, b, w), l)| format!("{l} (n={n} B={b} {w})"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The network samples the next stack takes when `left` remain: where
    /// a stacked variant may run (forced, or `auto` with stacking
    /// applicable: B ≤ 64, not Hadamard, within the device's and
    /// [`GpuBackend::set_stack_limit`]'s limits) the samples spread
    /// evenly over stacks of at most [`variant::stack_count`]; else 1.
    pub(super) fn stack_size(&self, spec: &SimSpec, left: usize) -> usize {
        let may_stack = match self.kernel.choice {
            KernelChoice::Auto => true,
            KernelChoice::Forced(v) => v.tiling() == Tiling::Stacked,
            // Where the recorded variant does not apply, the tuner may stack.
            KernelChoice::Recorded(_) => true,
        };
        if !may_stack || left < 2 || spec.weights == Weights::Hadamard {
            return 1;
        }
        let meas = spec.measurements();
        let batch = meas.batch;
        if batch > self.max_batch(spec.width) {
            return 1;
        }
        // One layer's statistics of the stack (S × (B + P) × row groups
        // partials) must fit one storage binding too.
        let stats_floats = (batch + meas.pairs.len()) as u64 * u64::from(stats_groups(spec.width));
        let by_stats = self.kernel.caps.max_storage_binding / (4 * stats_floats).max(1);
        let most = variant::stack_count(spec.width, batch, left, &self.kernel.caps)
            .min(usize::try_from(by_stats).unwrap_or(usize::MAX))
            .min(self.stack_limit.unwrap_or(usize::MAX));
        if most < variant::STACK_MIN_SAMPLES {
            return 1;
        }
        variant::balanced_stack(left, most)
    }

    /// The variant that runs layers of `spec` on this chunk of one network
    /// (also the backward pass's choice): [`Self::chunk_variant`]'s choice
    /// for a stack of one, not recorded.
    pub(super) fn layer_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
    ) -> Result<Option<KernelVariant>> {
        self.stack_variant(spec, h0, meas, sample, 1)
    }

    /// [`Self::stack_variant`], recorded as the variant that ran at this
    /// size (meta.json's `"kernel"`).
    pub(super) fn chunk_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        stack: usize,
    ) -> Result<Option<KernelVariant>> {
        let v = self.stack_variant(spec, h0, meas, sample, stack)?;
        if let Some(v) = v {
            let key = (spec.width, meas.batch, spec.weights.name());
            if v.tiling() == Tiling::Stacked {
                let mut stacks = self.kernel.stacks.borrow_mut();
                let e = stacks.entry(key).or_insert((v, stack));
                *e = (v, e.1.max(stack));
            }
            self.kernel.used.borrow_mut().insert(key, v);
        }
        Ok(v)
    }

    /// The variant that runs layers of `spec` on a chunk of `stack`
    /// networks from `sample` on (inputs `h0`, stack × n × B): the forced
    /// one (an error naming the applicable ones where it does not apply;
    /// a forced stacked variant applies where the run has samples enough
    /// to stack, and then runs every stack, a last stack of one too), or
    /// the tuned one for (n, B, S) (stacked variants among the candidates
    /// for a stack of two or more, timed per network-layer: dispatch time
    /// / S); `None` for the Hadamard ensemble (its own kernels).
    fn stack_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        stack: usize,
    ) -> Result<Option<KernelVariant>> {
        if spec.weights == Weights::Hadamard {
            return Ok(None);
        }
        let (n, batch) = (spec.width, meas.batch);
        let caps = &self.kernel.caps;
        let forced_applies = |v: KernelVariant| match v.tiling() {
            Tiling::Stacked => v.applicable_to(n, batch, spec.samples, caps),
            _ => v.applicable(n, batch, caps),
        };
        match self.kernel.choice {
            KernelChoice::Forced(v) | KernelChoice::Recorded(v) if forced_applies(v) => {
                Ok(Some(v))
            }
            KernelChoice::Forced(v) => Err(Error::invalid(
                "--kernel",
                v,
                &format!(
                    "{v} needs {}; at n = {n}, B = {batch}, {} network sample(s) on {} these apply: {}",
                    v.requirement(),
                    spec.samples,
                    self.ctx.info.name,
                    variant::applicable_to(n, batch, spec.samples, caps)
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            KernelChoice::Auto | KernelChoice::Recorded(_) => {
                let candidates = variant::applicable_to(n, batch, stack, caps);
                let key = TuneKey {
                    adapter: self.ctx.info.name.clone(),
                    backend: format!("{:?}", self.ctx.info.backend),
                    driver: self.ctx.info.driver.clone(),
                    driver_info: self.ctx.info.driver_info.clone(),
                    n,
                    batch,
                    stack,
                    weights: spec.weights.to_string(),
                };
                let one = &h0[..(n * batch).min(h0.len())];
                let mut time = |v: KernelVariant| {
                    let layers = if self.ctx.is_software() {
                        1
                    } else {
                        TUNE_LAYERS
                    };
                    let (h, s) = if v.tiling() == Tiling::Stacked {
                        (h0, stack)
                    } else {
                        (one, 1)
                    };
                    self.time_variant(spec, h, meas, sample, s, v, layers)
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

    /// Seconds per network-layer of `variant` on this chunk of `stack`
    /// networks (h0: stack × n × B; the time of a dispatch over S networks
    /// divided by S), and whether they come from the device: one warm-up
    /// layer, then `layers` layers timed by the device's timestamps where
    /// it has them, else by the wall clock around submit and wait.
    #[allow(clippy::too_many_arguments)]
    fn time_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        stack: usize,
        variant: KernelVariant,
        layers: usize,
    ) -> Result<(f64, bool)> {
        let saved = self.gpu_seconds.get();
        let run = |depth: usize| {
            let s = SimSpec {
                depth,
                ..spec.clone()
            };
            let mut ignore = |_, _, _, _| Ok(());
            self.run_chunk(
                &s,
                h0,
                meas,
                sample,
                stack,
                Some(variant),
                &mut ignore,
                false,
            )
        };
        run(1)?;
        self.gpu_seconds.set(0.0);
        let start = Instant::now();
        run(layers)?;
        let wall = start.elapsed().as_secs_f64();
        let device = self.gpu_seconds.replace(saved);
        let from_device = self.ctx.timestamps && device > 0.0;
        let secs = if from_device { device } else { wall };
        Ok((secs / (layers.max(1) * stack.max(1)) as f64, from_device))
    }

    /// Times every variant that applies to `spec`'s width, batch and
    /// samples (for `bench`): seconds per network-layer over `spec.depth`
    /// layers after a warm-up layer (a stacked variant over the stack S
    /// that a run of `spec.samples` networks takes, its time divided by S),
    /// the best of `repeats`, whether the times come from device
    /// timestamps (else the wall clock, submission and read-back included),
    /// and S (1 for the other variants).
    pub fn time_variants(
        &self,
        spec: &SimSpec,
        repeats: usize,
    ) -> Result<Vec<(KernelVariant, f64, bool, usize)>> {
        spec.validate()?;
        let meas = spec.measurements();
        let caps = &self.kernel.caps;
        let mut out = Vec::new();
        for v in variant::applicable_to(spec.width, meas.batch, spec.samples, caps) {
            let stack = if v.tiling() == Tiling::Stacked {
                variant::stack_count(spec.width, meas.batch, spec.samples, caps)
                    .min(self.stack_limit.unwrap_or(usize::MAX))
                    .max(1)
            } else {
                1
            };
            let h0: Vec<f32> = (0..stack as u32)
                .flat_map(|k| feature_major(&spec.input_vectors(k), spec.width))
                .collect();
            let mut best = (f64::INFINITY, false);
            for _ in 0..repeats.max(1) {
                let t = self.time_variant(spec, &h0, &meas, 0, stack, v, spec.depth)?;
                if t.0 < best.0 {
                    best = t;
                }
            }
            out.push((v, best.0, best.1, stack));
        }
        Ok(out)
    }
}
