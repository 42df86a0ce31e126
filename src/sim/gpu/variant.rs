//! The GPU layer kernel's variants: several kernels that compute the same
//! layer, `H_next = (σ_w/√n)·W·φ(H) + σ_b·ζ`, with the same generated
//! weights (the generator and its streams never change, so the statistics
//! cannot depend on the variant), shaped for different (n, B) and devices.
//! Which one is fastest is measured on the user's device
//! ([`super::autotune`]), not guessed.
//!
//! | variant  | shader                                  | for |
//! |----------|-----------------------------------------|-----|
//! | `tiled`  | layer.wgsl, 64 rows × TB ∈ {16, 32, 64} columns per workgroup | the reference kernel, any size |
//! | `splitk` | layer.wgsl (SPLIT) + layer_combine.wgsl | small batches: S workgroups per output tile, each over a slice of the input dimension, combined in a fixed order (no float atomics) |
//! | `wide`   | layer_wide.wgsl, 64 × 128 tiles, weight tile k-major | large batches: one generated weight tile serves 128 columns |
//! | `wide256` | layer_wide.wgsl at TB = 256, 64 × 256 tiles, 16-unit weight tile k-major | the largest batches: one weight tile serves 256 columns |
//! | `stacked` | layer.wgsl (STACK), the tiled kernel's tiles with workgroup z = network sample | small batches: S network samples per dispatch (one layer of S networks) |
//!
//! Each has an `-int64` form (`tiled-int64`, …) where the adapter offers
//! `SHADER_INT64`: Philox's 32×32→64 multiply as one u64 product
//! (shaders/mul64.wgsl) instead of 16-bit limbs, bit for bit the same
//! stream. Every variant's CPU twin is [`crate::sim::layer::layer`].

use super::shaders;
use crate::error::{Error, Result};

/// One way of running the layer kernel (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelVariant {
    /// layer.wgsl as it has always run.
    Tiled,
    /// Split-K: the input dimension split over the grid's third axis.
    SplitK,
    /// 128-column tiles, k-major weight tile.
    Wide,
    /// 256-column tiles, k-major 16-unit weight tile.
    Wide256,
    /// `Tiled` with the u64 Philox multiply.
    TiledInt64,
    /// `SplitK` with the u64 Philox multiply.
    SplitKInt64,
    /// `Wide` with the u64 Philox multiply.
    WideInt64,
    /// `Wide256` with the u64 Philox multiply.
    Wide256Int64,
    /// The tiled kernel over S network samples at once (grid z = sample).
    Stacked,
    /// `Stacked` with the u64 Philox multiply.
    StackedInt64,
}

/// How a variant lays the layer out over workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// 64 × TB tiles, the whole input dimension per workgroup.
    Tiled,
    /// 64 × TB tiles, S slices of the input dimension, then a combine pass.
    SplitK,
    /// 64 × 128 tiles.
    Wide,
    /// 64 × 256 tiles.
    Wide256,
    /// 64 × TB tiles of S network samples, z = sample offset.
    Stacked,
}

/// What the adapter offers that the variants depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCaps {
    /// `wgpu::Features::SHADER_INT64` (requested on the device when offered).
    pub int64: bool,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Bytes of workgroup memory.
    pub max_workgroup_storage: u32,
    /// Bytes of one storage binding.
    pub max_storage_binding: u64,
    /// Workgroups per dispatch dimension.
    pub max_workgroups_per_dim: u32,
}

impl DeviceCaps {
    /// The capabilities of a device opened with `features` and `limits`.
    pub fn new(features: wgpu::Features, limits: &wgpu::Limits) -> Self {
        DeviceCaps {
            int64: features.contains(wgpu::Features::SHADER_INT64),
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_storage_binding: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
        }
    }
}

/// Rows per workgroup tile (all variants).
pub const TILE_ROWS: usize = 64;
/// Input units per weight tile (all variants).
pub const TILE_UNITS: usize = 32;
/// Columns per workgroup of the wide variant.
pub const WIDE_COLUMNS: usize = 128;
/// Largest batch the split-K variant is offered for: beyond it the tiled
/// grid has enough workgroups already.
pub const SPLITK_MAX_BATCH: usize = 64;
/// Smallest batch the wide variant is offered for (below it half of a
/// 128-column tile would be padding).
pub const WIDE_MIN_BATCH: usize = 65;
/// Columns per workgroup of the wide256 variant.
pub const WIDE256_COLUMNS: usize = 256;
/// Smallest batch the wide256 variant is offered for.
pub const WIDE256_MIN_BATCH: usize = 129;
/// Workgroups the split-K grid aims at: enough to fill a large GPU (an
/// H100 holds 132 SMs × 2,048 threads ≈ 4,200 workgroups of 64) twice.
const SPLITK_TARGET_WORKGROUPS: usize = 8192;
/// Fewest weight tiles (of 32 units) per split-K slice.
const SPLITK_MIN_TILES: usize = 2;
/// Fewest network samples a stacked dispatch is offered for.
pub const STACK_MIN_SAMPLES: usize = 2;

/// The batch columns per workgroup of the tiled and split-K layer kernels
/// (and of the backward kernel) for a batch.
pub fn tile_columns(batch: usize) -> u32 {
    match batch {
        0..=16 => 16,
        17..=32 => 32,
        _ => 64,
    }
}

impl KernelVariant {
    /// Every variant, in the order ties are broken.
    pub const ALL: [KernelVariant; 10] = [
        KernelVariant::Tiled,
        KernelVariant::SplitK,
        KernelVariant::Wide,
        KernelVariant::Wide256,
        KernelVariant::Stacked,
        KernelVariant::TiledInt64,
        KernelVariant::SplitKInt64,
        KernelVariant::WideInt64,
        KernelVariant::Wide256Int64,
        KernelVariant::StackedInt64,
    ];

    /// The stable name (`--kernel`, the tuning cache, meta.json).
    pub fn name(self) -> &'static str {
        match self {
            KernelVariant::Tiled => "tiled",
            KernelVariant::SplitK => "splitk",
            KernelVariant::Wide => "wide",
            KernelVariant::TiledInt64 => "tiled-int64",
            KernelVariant::SplitKInt64 => "splitk-int64",
            KernelVariant::WideInt64 => "wide-int64",
            KernelVariant::Wide256 => "wide256",
            KernelVariant::Wide256Int64 => "wide256-int64",
            KernelVariant::Stacked => "stacked",
            KernelVariant::StackedInt64 => "stacked-int64",
        }
    }

    /// The variant called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The variant a kernel record names (meta.json's `"kernel"`): a name,
    /// or a stacked variant with its stack, `stacked (S=4)`
    /// ([`Self::label`]); `None` for anything else (several variants).
    pub fn from_record(record: &str) -> Option<Self> {
        let v = match record.split_once(" (S=") {
            Some((name, rest)) => {
                let s = rest.strip_suffix(')')?;
                s.parse::<usize>().ok().filter(|s| *s >= 1)?;
                Self::from_name(name).filter(|v| v.tiling() == Tiling::Stacked)?
            }
            None => Self::from_name(record)?,
        };
        Some(v)
    }

    /// The name as records show it: with the stack `s` for the stacked
    /// variants (`stacked (S=4)`), the name alone for the others.
    pub fn label(self, s: usize) -> String {
        if self.tiling() == Tiling::Stacked {
            format!("{} (S={s})", self.name())
        } else {
            self.name().to_string()
        }
    }

    /// The tiling.
    pub fn tiling(self) -> Tiling {
        match self {
            KernelVariant::Tiled | KernelVariant::TiledInt64 => Tiling::Tiled,
            KernelVariant::SplitK | KernelVariant::SplitKInt64 => Tiling::SplitK,
            KernelVariant::Wide | KernelVariant::WideInt64 => Tiling::Wide,
            KernelVariant::Wide256 | KernelVariant::Wide256Int64 => Tiling::Wide256,
            KernelVariant::Stacked | KernelVariant::StackedInt64 => Tiling::Stacked,
        }
    }

    /// Whether Philox multiplies with u64 (SHADER_INT64).
    pub fn int64(self) -> bool {
        matches!(
            self,
            KernelVariant::TiledInt64
                | KernelVariant::SplitKInt64
                | KernelVariant::WideInt64
                | KernelVariant::Wide256Int64
                | KernelVariant::StackedInt64
        )
    }

    /// The variant with the same tiling and 32-bit-limb multiply.
    pub fn without_int64(self) -> Self {
        match self.tiling() {
            Tiling::Tiled => KernelVariant::Tiled,
            Tiling::SplitK => KernelVariant::SplitK,
            Tiling::Wide => KernelVariant::Wide,
            Tiling::Wide256 => KernelVariant::Wide256,
            Tiling::Stacked => KernelVariant::Stacked,
        }
    }

    /// The backward step's variant when the forward pass runs this one:
    /// the same tiling and multiply — split-K stays split-K (the backward
    /// batch, 2 × pairs, is usually small), `wide`/`wide256` run the wide
    /// backward step (layer_wide.wgsl with BACKWARD: one generated weight
    /// tile serves 128/256 columns), `tiled` and `stacked` the tiled
    /// backward.wgsl (one network at a time); ± int64 follows. The backward pass has no tuner of its own.
    pub fn backward(self) -> KernelVariant {
        match self.tiling() {
            Tiling::Tiled | Tiling::SplitK | Tiling::Wide | Tiling::Wide256 => self,
            // The backward pass runs one network at a time.
            Tiling::Stacked if self.int64() => KernelVariant::TiledInt64,
            Tiling::Stacked => KernelVariant::Tiled,
        }
    }

    /// Whether this variant can run a layer of width `n` on `batch` inputs
    /// of one network on a device with `caps` (the stacked variants never:
    /// they need several networks, [`Self::applicable_to`]).
    pub fn applicable(self, n: usize, batch: usize, caps: &DeviceCaps) -> bool {
        self.applicable_to(n, batch, 1, caps)
    }

    /// Whether this variant can run a layer of width `n` on `batch` inputs
    /// with `samples` network samples left in the run on a device with
    /// `caps`. Only the stacked variants depend on `samples`: they need
    /// B ≤ [`SPLITK_MAX_BATCH`] and a stack of at least
    /// [`STACK_MIN_SAMPLES`] ([`stack_count`]); the Hadamard ensemble (its
    /// own kernels) is the caller's to exclude.
    pub fn applicable_to(self, n: usize, batch: usize, samples: usize, caps: &DeviceCaps) -> bool {
        if n == 0 || batch == 0 || (self.int64() && !caps.int64) {
            return false;
        }
        match self.tiling() {
            Tiling::Tiled => true,
            Tiling::Stacked => stack_count(n, batch, samples, caps) >= STACK_MIN_SAMPLES,
            Tiling::SplitK => {
                batch <= SPLITK_MAX_BATCH && split_count(n, batch, caps.max_storage_binding) >= 2
            }
            Tiling::Wide => {
                // 256 invocations; 8 KiB of weights + 16 KiB of activations.
                batch >= WIDE_MIN_BATCH
                    && caps.max_invocations >= 256
                    && caps.max_workgroup_storage >= 24 * 1024
            }
            Tiling::Wide256 => {
                // 256 invocations; 4 KiB of weights + 16 KiB of activations.
                batch >= WIDE256_MIN_BATCH
                    && caps.max_invocations >= 256
                    && caps.max_workgroup_storage >= 20 * 1024
            }
        }
    }

    /// What the variant is for, in a few words (help texts).
    pub fn purpose(self) -> &'static str {
        match self.tiling() {
            Tiling::Tiled => "64-row tiles over the whole input dimension (the reference kernel)",
            Tiling::SplitK => "small batches: the input dimension split over more workgroups",
            Tiling::Wide => "large batches: one weight tile serves 128 columns",
            Tiling::Wide256 => "the largest batches: one weight tile serves 256 columns",
            Tiling::Stacked => "small batches: S network samples per dispatch (grid z = sample)",
        }
    }

    /// When the variant applies, in a few words (the error for a forced
    /// variant that does not).
    pub fn requirement(self) -> String {
        let tiling = match self.tiling() {
            Tiling::Tiled => "any width and batch".to_string(),
            Tiling::SplitK => format!(
                "B ≤ {SPLITK_MAX_BATCH} and n > {} (at least two slices of the input dimension)",
                2 * SPLITK_MIN_TILES * TILE_UNITS - TILE_UNITS
            ),
            Tiling::Wide => format!("B ≥ {WIDE_MIN_BATCH}"),
            Tiling::Wide256 => format!("B ≥ {WIDE256_MIN_BATCH}"),
            Tiling::Stacked => format!(
                "B ≤ {SPLITK_MAX_BATCH}, at least {STACK_MIN_SAMPLES} network samples \
                 (--samples) and {STACK_MIN_SAMPLES} × n × B activations within one storage binding"
            ),
        };
        if self.int64() {
            format!("{tiling}, on an adapter with SHADER_INT64")
        } else {
            tiling
        }
    }

    /// The workgroups of one layer dispatch at (n, B): (x, y, z) for the
    /// main pass (the stacked variants: z = 1, one network; see
    /// [`Self::stacked_workgroups`]).
    pub fn workgroups(self, n: usize, batch: usize, max_storage_binding: u64) -> (u32, u32, u32) {
        self.stacked_workgroups(n, batch, max_storage_binding, 1)
    }

    /// [`Self::workgroups`] for a dispatch over `stack` network samples:
    /// the stacked variants put them on z, the others ignore `stack`.
    pub fn stacked_workgroups(
        self,
        n: usize,
        batch: usize,
        max_storage_binding: u64,
        stack: usize,
    ) -> (u32, u32, u32) {
        let rows = n.div_ceil(TILE_ROWS) as u32;
        match self.tiling() {
            Tiling::Tiled => (batch.div_ceil(tile_columns(batch) as usize) as u32, rows, 1),
            Tiling::Stacked => (
                batch.div_ceil(tile_columns(batch) as usize) as u32,
                rows,
                stack.max(1) as u32,
            ),
            Tiling::SplitK => (
                batch.div_ceil(tile_columns(batch) as usize) as u32,
                rows,
                split_count(n, batch, max_storage_binding) as u32,
            ),
            Tiling::Wide => (batch.div_ceil(WIDE_COLUMNS) as u32, rows, 1),
            Tiling::Wide256 => (batch.div_ceil(WIDE256_COLUMNS) as u32, rows, 1),
        }
    }
}

impl std::fmt::Display for KernelVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The slices S of the split-K variant at (n, B): enough workgroups to
/// fill a large device, at least two weight tiles per
/// slice, no empty slice, and the S × n × B partial sums within one storage
/// binding. 1 means split-K does not apply.
pub fn split_count(n: usize, batch: usize, max_storage_binding: u64) -> usize {
    let tiles = n.div_ceil(TILE_UNITS);
    let base = batch.div_ceil(tile_columns(batch) as usize) * n.div_ceil(TILE_ROWS);
    let most = (tiles / SPLITK_MIN_TILES).max(1);
    let by_memory = (max_storage_binding / 4 / (n as u64 * batch as u64).max(1)) as usize;
    let want = SPLITK_TARGET_WORKGROUPS
        .div_ceil(base.max(1))
        .clamp(1, most)
        .min(by_memory.max(1));
    // Whole slices of `per` tiles: ⌈tiles/per⌉ of them, none empty (the
    // shader derives the same `per` from the dispatch's z count).
    let per = tiles.div_ceil(want.max(1));
    tiles.div_ceil(per.max(1))
}

/// The network samples S a stacked dispatch takes at (n, B) with `samples`
/// left in the run: enough workgroups to fill a large device (the split-K
/// target, ≈ 8,192, over the tiled grid's), at most `samples`, the S × n ×
/// B activations within one storage binding and S within one dispatch
/// dimension; 0 for B > [`SPLITK_MAX_BATCH`] (the tiled grid is large
/// enough there). Below [`STACK_MIN_SAMPLES`] stacking does not apply.
pub fn stack_count(n: usize, batch: usize, samples: usize, caps: &DeviceCaps) -> usize {
    if batch > SPLITK_MAX_BATCH || n == 0 || batch == 0 {
        return 0;
    }
    let base = batch.div_ceil(tile_columns(batch) as usize) * n.div_ceil(TILE_ROWS);
    let by_memory = (caps.max_storage_binding / 4)
        .checked_div(n as u64 * batch as u64)
        .unwrap_or(0);
    let by_memory = usize::try_from(by_memory).unwrap_or(usize::MAX);
    SPLITK_TARGET_WORKGROUPS
        .div_ceil(base)
        .min(samples)
        .min(by_memory)
        .min(caps.max_workgroups_per_dim as usize)
}

/// The size of the next stack when `left` samples remain and a stack
/// holds at most `most`: the samples spread evenly over ⌈left/most⌉
/// stacks (100 left, at most 32: four stacks of 25), so the stacks of one
/// run differ by at most one sample.
pub fn balanced_stack(left: usize, most: usize) -> usize {
    let most = most.clamp(1, left.max(1));
    left.div_ceil(left.div_ceil(most).max(1)).max(1)
}

/// The user's kernel choice: measured (`auto`) or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Time the applicable variants on first use of (adapter, driver, n,
    /// B, weights) and keep the fastest (cached).
    #[default]
    Auto,
    /// Always this variant (an error where it does not apply).
    Forced(KernelVariant),
    /// The variant a results folder records (`run --resume`): used where
    /// it applies, so resumed points get the bits of the first ones;
    /// tuned as under `Auto` where it does not (another width or batch).
    Recorded(KernelVariant),
}

impl KernelChoice {
    /// Parses `auto` or a variant name; `flag` names the option in errors.
    pub fn parse(flag: &str, s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(KernelChoice::Auto);
        }
        // A name as a record shows it ("stacked (S=4)") is taken too.
        KernelVariant::from_name(s)
            .or_else(|| KernelVariant::from_record(s))
            .map(KernelChoice::Forced)
            .ok_or_else(|| Error::invalid(flag, s, &format!("auto or one of {}", names())))
    }

    /// `auto` or the forced variant's name.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Forced(v) | KernelChoice::Recorded(v) => v.name(),
        }
    }
}

/// Every variant's name, comma-separated (messages, help).
pub fn names() -> String {
    KernelVariant::ALL.map(KernelVariant::name).join(", ")
}

/// The variants that apply at (n, B) to one network on `caps`, in
/// [`KernelVariant::ALL`] order.
pub fn applicable(n: usize, batch: usize, caps: &DeviceCaps) -> Vec<KernelVariant> {
    applicable_to(n, batch, 1, caps)
}

/// The variants that apply at (n, B) with `samples` network samples to
/// run on `caps` ([`KernelVariant::applicable_to`]), in
/// [`KernelVariant::ALL`] order.
pub fn applicable_to(
    n: usize,
    batch: usize,
    samples: usize,
    caps: &DeviceCaps,
) -> Vec<KernelVariant> {
    KernelVariant::ALL
        .into_iter()
        .filter(|v| v.applicable_to(n, batch, samples, caps))
        .collect()
}

/// The main pass of `variant` with `tb` batch columns per workgroup (tb
/// matters for tiled and split-K only), composed with its shared pieces.
pub fn layer_source(variant: KernelVariant, tb: u32) -> String {
    let src = match variant.tiling() {
        Tiling::Tiled => shaders::layer(tb),
        Tiling::SplitK => shaders::layer_split(tb),
        Tiling::Wide => shaders::layer_wide(128),
        Tiling::Wide256 => shaders::layer_wide(256),
        Tiling::Stacked => shaders::layer_stacked(tb),
    };
    with_multiply(src, variant.int64())
}

/// The split-K combine pass (its bias uses the variant's generator).
pub fn combine_source(int64: bool) -> String {
    with_multiply(shaders::layer_combine(), int64)
}

/// The backward step of the backward variant `variant` (see
/// [`KernelVariant::backward`]) with `tb` batch columns per workgroup (tb
/// matters for tiled and split-K only): backward.wgsl, with SPLIT for
/// split-K, or layer_wide.wgsl with BACKWARD for the wide tilings, composed
/// with mul64.wgsl for the `-int64` variants.
pub fn backward_source(variant: KernelVariant, tb: u32) -> String {
    let src = match variant.tiling() {
        // Stacked's backward is the tiled step ([`KernelVariant::backward`]).
        Tiling::Tiled | Tiling::Stacked => shaders::backward(tb),
        Tiling::SplitK => shaders::backward_split(tb),
        Tiling::Wide => shaders::backward_wide(128),
        Tiling::Wide256 => shaders::backward_wide(256),
    };
    with_multiply(src, variant.int64())
}

/// The split-K backward step's combine pass (layer_combine.wgsl with
/// BACKWARD).
pub fn backward_combine_source(int64: bool) -> String {
    with_multiply(shaders::backward_combine(), int64)
}

/// `src` with the u64 Philox multiply where `int64`.
fn with_multiply(src: String, int64: bool) -> String {
    if int64 {
        shaders::with_mul64(&src)
    } else {
        src
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(int64: bool) -> DeviceCaps {
        DeviceCaps {
            int64,
            max_invocations: 256,
            max_workgroup_storage: 32 * 1024,
            max_storage_binding: 128 << 20,
            max_workgroups_per_dim: 65535,
        }
    }

    #[test]
    fn names_round_trip_and_are_distinct() {
        for v in KernelVariant::ALL {
            assert_eq!(KernelVariant::from_name(v.name()), Some(v));
            assert!(!v.without_int64().int64());
            assert_eq!(v.without_int64().tiling(), v.tiling());
        }
        assert_eq!(
            KernelChoice::parse("--kernel", "auto").unwrap(),
            KernelChoice::Auto
        );
        let e = KernelChoice::parse("--kernel", "fast")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kernel") && e.contains("splitk-int64"), "{e}");
    }

    #[test]
    fn applicability_follows_batch_and_features() {
        // B = 5: tiled and split-K; wide only from B = 65; int64 only with the feature.
        assert_eq!(
            applicable(333, 5, &caps(false)),
            [KernelVariant::Tiled, KernelVariant::SplitK]
        );
        assert_eq!(
            applicable(333, 100, &caps(true)),
            [
                KernelVariant::Tiled,
                KernelVariant::Wide,
                KernelVariant::TiledInt64,
                KernelVariant::WideInt64
            ]
        );
        // From B = 129 the 256-column tiles too.
        assert_eq!(applicable(333, 130, &caps(false)).len(), 3);
        // n = 64: two weight tiles, one slice of two: split-K does not apply.
        assert!(!KernelVariant::SplitK.applicable(64, 4, &caps(false)));
        let mut small = caps(false);
        small.max_workgroup_storage = 16 * 1024;
        assert!(!KernelVariant::Wide.applicable(1024, 256, &small));
    }

    #[test]
    fn split_count_fills_the_device_without_empty_slices() {
        let big = 128u64 << 20;
        // n = 16384, B = 16: 256 tiles of output → 32 slices of 16 tiles.
        assert_eq!(split_count(16384, 16, big), 32);
        // n = 200: 7 tiles, at most 3 slices (per = 3 → ⌈7/3⌉ = 3).
        assert_eq!(split_count(200, 5, big), 3);
        for n in [97, 200, 333, 1000, 4096] {
            for b in [1, 5, 16, 40, 64] {
                let s = split_count(n, b, big);
                let tiles = n.div_ceil(TILE_UNITS);
                let per = tiles.div_ceil(s);
                assert!((s - 1) * per < tiles, "n {n} B {b}: slice {s} empty");
            }
        }
        // The partial sums must fit one binding: 1 MiB allows 4 × 256 × 256 floats.
        assert!(split_count(256, 64, 1 << 20) * 256 * 64 * 4 <= 1 << 20);
    }

    #[test]
    fn mul64_replaces_only_mulhilo() {
        let src = layer_source(KernelVariant::TiledInt64, 16);
        assert_eq!(src.matches("fn mulhilo(").count(), 1);
        assert!(src.contains("u64(a) * u64(b)"));
        assert!(!src.contains("a_lo * b_lo"));
        assert!(src.contains("fn philox4x32_10("));
    }
}
