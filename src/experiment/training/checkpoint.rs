//! A training point's checkpoint: its state between two steps (weights,
//! momentum, the loss accumulated since the last report, the reports so
//! far, the step), saved in the results folder as
//! `checkpoints/pointNNN.ckpt` every `checkpoint_seconds` of training (or
//! `checkpoint_steps` steps) and when a signal stops the run, read back by
//! `quantdepth run --resume`, removed when the point completes (unless
//! `keep_checkpoints = true`).
//!
//! The data order needs no state of its own: the batches of step s come
//! from the permutation of epoch s / (images / batch) under the point's seed
//! ([`crate::train::data::permutation`]), and a step draws no random
//! numbers; so the step count fixes everything else.
//!
//! File layout (little-endian):
//!
//! ```text
//! "QDCKPT\0\x01"          8 bytes: magic and format 1
//! header length           u64
//! header                  CBOR: who wrote it (config hash, point, seed, backend,
//!                         steps, data sizes), the step, layer shapes, reports,
//!                         timings, the loss accumulator (every f64 bit for bit)
//! payload                 f32: per layer W, b of the weights, then of the momentum
//! CRC-32                  u32 of everything before it
//! ```
//!
//! Written through [`write_atomic`] (temporary file, fsync, rename): a kill
//! leaves the previous checkpoint or the new one, never a torn one. A
//! checkpoint that does not pass every check (CRC, identity, shapes,
//! finiteness) is not used: the point restarts from its initialization,
//! which gives the same numbers, only later.

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::folder::write_atomic;
use crate::train::model::{ModelSpec, Params};
use crate::train::{BackendState, Checkpoints, Report, Snapshot, TrainOutcome};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Folder of the checkpoints inside a results folder.
pub const DIR: &str = "checkpoints";
/// Default seconds of training between two checkpoints of a point.
pub const DEFAULT_SECONDS: f64 = 300.0;
const MAGIC: &[u8; 8] = b"QDCKPT\x00\x01";

/// When checkpoints are written and whether they outlive their point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Seconds (wall clock, of this point's training) between checkpoints.
    pub seconds: f64,
    /// Steps between checkpoints, if given.
    pub steps: Option<usize>,
    /// Keep a point's checkpoint after it completes.
    pub keep: bool,
}

impl Policy {
    /// The `[training]` keys `checkpoint_seconds`, `checkpoint_steps` and
    /// `keep_checkpoints`, checked.
    pub fn of(cfg: &Config) -> Result<Policy> {
        let t = cfg.training.clone().unwrap_or_default();
        let seconds = t.checkpoint_seconds.unwrap_or(DEFAULT_SECONDS);
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 1e9) {
            return Err(Error::invalid(
                "training.checkpoint_seconds",
                crate::error::fmt_value(seconds),
                "seconds of training between checkpoints: a number > 0 and at most 1e9 \
                 (default 300)",
            ));
        }
        if t.checkpoint_steps == Some(0) {
            return Err(Error::invalid(
                "training.checkpoint_steps",
                0,
                "steps between checkpoints: at least 1 (or leave it out: every \
                 checkpoint_seconds)",
            ));
        }
        Ok(Policy {
            seconds,
            steps: t.checkpoint_steps,
            keep: t.keep_checkpoints.unwrap_or(false),
        })
    }
}

/// What a checkpoint must have been written by to be used: the run, the
/// point and everything else that fixes its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// config_hash of the folder's config.toml.
    pub config_hash: String,
    /// Point index.
    pub point: usize,
    /// Its seed.
    pub seed: u64,
    /// "cpu" or "gpu": the other backend's steps give other bits.
    pub backend: String,
    /// Training steps of the point.
    pub steps: usize,
    /// Training and test images (the data as loaded).
    pub images: (usize, usize),
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    identity: Identity,
    version: String,
    step: usize,
    shapes: Vec<(usize, usize)>,
    reports: Vec<Report>,
    train_seconds: f64,
    eval_seconds: f64,
    train_macs: f64,
    initial_loss: f64,
    loss_sums: Vec<f64>,
    loss_inputs: usize,
}

/// Path of point `index`'s checkpoint in `folder`.
pub fn path(folder: &Path, index: usize) -> PathBuf {
    folder.join(DIR).join(format!("point{index:03}.ckpt"))
}

fn shapes(spec: &ModelSpec) -> Vec<(usize, usize)> {
    (0..spec.depth).map(|l| spec.layer_shape(l)).collect()
}

fn all_finite(p: &Params<f32>) -> bool {
    p.weights
        .iter()
        .chain(&p.biases)
        .all(|v| v.iter().all(|x| x.is_finite()))
}

/// Whether every number of a snapshot is finite (a diverged network's is
/// not: it is not checkpointed, and restarts if stopped).
pub fn is_finite(s: &Snapshot) -> bool {
    let o = &s.outcome;
    all_finite(&s.state.params)
        && all_finite(&s.state.velocity)
        && s.state.loss_sums.iter().all(|x| x.is_finite())
        && [o.train_seconds, o.eval_seconds, o.train_macs]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
}

/// The bytes of a checkpoint of `snap` (point `id`, network `spec`).
pub fn encode(id: &Identity, spec: &ModelSpec, snap: &Snapshot) -> Result<Vec<u8>> {
    let o = &snap.outcome;
    let header = Header {
        identity: id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        step: snap.step,
        shapes: shapes(spec),
        reports: o.reports.clone(),
        train_seconds: o.train_seconds,
        eval_seconds: o.eval_seconds,
        train_macs: o.train_macs,
        initial_loss: o.initial_loss,
        loss_sums: snap.state.loss_sums.clone(),
        loss_inputs: snap.state.loss_inputs,
    };
    let mut head = Vec::new();
    ciborium::into_writer(&header, &mut head)
        .map_err(|e| Error::Folder(format!("checkpoint header cannot be encoded: {e}")))?;
    let floats = spec.parameter_count()?.checked_mul(2).ok_or_else(|| {
        Error::TooLarge("the checkpoint's size overflows: the network is too large".into())
    })?;
    let bytes = floats
        .checked_mul(4)
        .and_then(|b| b.checked_add(head.len() + 20))
        .ok_or_else(|| Error::TooLarge("the checkpoint's size overflows".into()))?;
    let mut out = Vec::with_capacity(bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for p in [&snap.state.params, &snap.state.velocity] {
        for l in 0..spec.depth {
            for v in [&p.weights[l], &p.biases[l]] {
                for x in v.iter() {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The snapshot in `bytes`, or why it cannot be used for point `id` of
/// network `spec`.
pub fn decode(
    bytes: &[u8],
    id: &Identity,
    spec: &ModelSpec,
) -> std::result::Result<Snapshot, String> {
    if bytes.len() < MAGIC.len() + 12 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a quantdepth checkpoint of format 1".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err("its CRC-32 does not match: the file is damaged".into());
    }
    let head_len = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let head_end = usize::try_from(head_len)
        .ok()
        .and_then(|h| h.checked_add(16))
        .filter(|&e| e <= body.len())
        .ok_or("its header length is past the end of the file")?;
    let h: Header = ciborium::from_reader(&body[16..head_end])
        .map_err(|e| format!("its header does not parse: {e}"))?;
    if h.identity != *id {
        return Err(format!(
            "it was written for {:?}, this run's point is {:?}",
            h.identity, id
        ));
    }
    if h.shapes != shapes(spec) {
        return Err(format!(
            "its layer shapes {:?} are not the network's {:?}",
            h.shapes,
            shapes(spec)
        ));
    }
    if h.step == 0 || h.step >= id.steps {
        return Err(format!("its step {} is not in 1..{}", h.step, id.steps));
    }
    let payload = &body[head_end..];
    let floats = spec.parameter_count().ok().and_then(|c| c.checked_mul(2));
    if floats.and_then(|f| f.checked_mul(4)) != Some(payload.len()) {
        return Err(format!(
            "it holds {} bytes of weights and momentum, the network needs {}",
            payload.len(),
            floats.map_or("more than can be counted".into(), |f| (4 * f).to_string())
        ));
    }
    let mut values = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
    let mut read = || {
        let mut p = Params::zeros(spec);
        for l in 0..spec.depth {
            for v in [&mut p.weights[l], &mut p.biases[l]] {
                v.iter_mut()
                    .for_each(|x| *x = values.next().expect("sized above"));
            }
        }
        p
    };
    let (params, velocity) = (read(), read());
    let snap = Snapshot {
        step: h.step,
        state: BackendState {
            params,
            velocity,
            loss_sums: h.loss_sums,
            loss_inputs: h.loss_inputs,
        },
        outcome: TrainOutcome {
            reports: h.reports,
            train_seconds: h.train_seconds,
            eval_seconds: h.eval_seconds,
            train_macs: h.train_macs,
            complete: false,
            initial_loss: h.initial_loss,
        },
    };
    if !is_finite(&snap) {
        return Err("it holds non-finite numbers".into());
    }
    Ok(snap)
}

/// Point `id`'s checkpoint in `folder`: `Ok(None)` when there is none,
/// `Err(why)` when there is one that cannot be used.
pub fn load(
    folder: &Path,
    id: &Identity,
    spec: &ModelSpec,
) -> std::result::Result<Option<Snapshot>, String> {
    let p = path(folder, id.point);
    match std::fs::read(&p) {
        Ok(bytes) => decode(&bytes, id, spec)
            .map(Some)
            .map_err(|why| format!("{}: {why}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot be read: {e}", p.display())),
    }
}

/// Removes point `index`'s checkpoint, if any.
pub fn remove(folder: &Path, index: usize) -> Result<()> {
    let p = path(folder, index);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Folder(format!("cannot remove {}: {e}", p.display()))),
    }
}

/// Removes the temporary files a kill left in the checkpoint folder.
pub fn clean_temporaries(folder: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(folder.join(DIR)) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            std::fs::remove_file(e.path()).map_err(|err| {
                Error::Folder(format!("cannot remove {}: {err}", e.path().display()))
            })?;
        }
    }
    Ok(())
}

/// Writes a point's checkpoints under a [`Policy`].
pub struct Saver<'a> {
    folder: &'a Path,
    id: &'a Identity,
    spec: &'a ModelSpec,
    policy: Policy,
    last: Instant,
    /// Checkpoints written.
    pub saved: usize,
}

impl<'a> Saver<'a> {
    /// A saver for point `id` of network `spec` in `folder`.
    pub fn new(folder: &'a Path, id: &'a Identity, spec: &'a ModelSpec, policy: Policy) -> Self {
        Saver {
            folder,
            id,
            spec,
            policy,
            last: Instant::now(),
            saved: 0,
        }
    }
}

impl Checkpoints for Saver<'_> {
    fn due(&mut self, step: usize) -> bool {
        self.policy.steps.is_some_and(|k| step.is_multiple_of(k))
            || self.last.elapsed().as_secs_f64() >= self.policy.seconds
    }

    fn save(&mut self, snap: &Snapshot) -> Result<()> {
        self.last = Instant::now();
        // A diverged network is not saved: an earlier checkpoint, or a
        // restart, gives the same numbers.
        if !is_finite(snap) {
            return Ok(());
        }
        let bytes = encode(self.id, self.spec, snap)?;
        let dir = self.folder.join(DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Folder(format!("cannot create {}: {e}", dir.display())))?;
        write_atomic(&path(self.folder, self.id.point), &bytes)?;
        self.saved += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::Phi;

    fn spec() -> ModelSpec {
        ModelSpec {
            input_dim: 5,
            width: 4,
            depth: 3,
            classes: 3,
            phi: Phi::Surrogate,
            ste_slope: 1.0,
            ste_threshold: 1.0,
            sigma_w: 1.0,
            sigma_b: 0.0,
            quantize_logits: false,
        }
    }

    fn id() -> Identity {
        Identity {
            config_hash: "00112233aabbccdd".into(),
            point: 7,
            seed: 3,
            backend: "cpu".into(),
            steps: 100,
            images: (600, 200),
        }
    }

    fn snapshot() -> Snapshot {
        let s = spec();
        let mut velocity = Params::init(&s, 9);
        velocity.biases[1][2] = -0.0;
        Snapshot {
            step: 42,
            state: BackendState {
                params: Params::init(&s, 3),
                velocity,
                loss_sums: vec![12.345678901234567],
                loss_inputs: 64,
            },
            outcome: TrainOutcome {
                reports: vec![Report {
                    step: 40,
                    train_acc: 0.3,
                    test_acc: 0.1 + 0.2,
                    loss: 1.0 / 3.0,
                    test_loss: 2.5,
                    train_tie_rate: 0.125,
                    test_tie_rate: 0.0,
                }],
                train_seconds: 0.25,
                eval_seconds: 0.125,
                train_macs: 1.5e9,
                complete: false,
                initial_loss: 2.3,
            },
        }
    }

    /// Every number comes back bit for bit (−0.0 and 0.1 + 0.2 included).
    #[test]
    fn a_checkpoint_reads_back_bit_for_bit() {
        let bytes = encode(&id(), &spec(), &snapshot()).unwrap();
        let back = decode(&bytes, &id(), &spec()).unwrap();
        assert_eq!(back, snapshot());
        assert!(back.state.velocity.biases[1][2].is_sign_negative());
        assert_eq!(
            back.outcome.reports[0].test_acc.to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
    }

    /// Damage, truncation, another point, run or network, and a step out of
    /// range are each refused with their reason.
    #[test]
    fn damaged_or_foreign_checkpoints_are_refused_with_the_reason() {
        let good = encode(&id(), &spec(), &snapshot()).unwrap();
        let why =
            |bytes: &[u8], id: &Identity, spec: &ModelSpec| decode(bytes, id, spec).unwrap_err();
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 40] ^= 1;
        assert!(why(&flipped, &id(), &spec()).contains("CRC-32"));
        assert!(why(&good[..n - 9], &id(), &spec()).contains("CRC-32"));
        assert!(why(&good[..10], &id(), &spec()).contains("not a quantdepth checkpoint"));
        assert!(why(b"", &id(), &spec()).contains("not a quantdepth checkpoint"));
        let other = Identity { point: 8, ..id() };
        assert!(why(&good, &other, &spec()).contains("written for"));
        let other = Identity {
            backend: "gpu".into(),
            ..id()
        };
        assert!(why(&good, &other, &spec()).contains("written for"));
        let wider = ModelSpec { width: 5, ..spec() };
        assert!(why(&good, &id(), &wider).contains("layer shapes"));
        let mut late = snapshot();
        late.step = 100;
        let bytes = encode(&id(), &spec(), &late).unwrap();
        assert!(why(&bytes, &id(), &spec()).contains("step 100 is not in 1..100"));
        let mut nan = snapshot();
        nan.state.params.weights[0][0] = f32::NAN;
        assert!(!is_finite(&nan));
        let bytes = encode(&id(), &spec(), &nan).unwrap();
        assert!(why(&bytes, &id(), &spec()).contains("non-finite"));
    }

    #[test]
    fn policy_keys_are_checked() {
        let cfg = |extra: &str| {
            Config::from_toml(&format!(
                "name = \"t\"\nkind = \"training\"\n[training]\nstates = [2]\ndepth = [2]\n\
                 width = 8\n{extra}"
            ))
        };
        let p = Policy::of(&cfg("").unwrap()).unwrap();
        assert_eq!((p.seconds, p.steps, p.keep), (DEFAULT_SECONDS, None, false));
        let p = Policy::of(&cfg("checkpoint_steps = 5\nkeep_checkpoints = true").unwrap()).unwrap();
        assert_eq!((p.steps, p.keep), (Some(5), true));
        for (extra, key) in [
            ("checkpoint_seconds = 0.0", "training.checkpoint_seconds"),
            ("checkpoint_seconds = -3.0", "training.checkpoint_seconds"),
            ("checkpoint_seconds = nan", "training.checkpoint_seconds"),
            ("checkpoint_steps = 0", "training.checkpoint_steps"),
        ] {
            let e = cfg(extra).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }
}
