//! The WGSL sources of the simulator's kernels, composed as the kernels
//! use them: each stage file is prepended with the shared pieces it calls
//! (the generator, the per-layer parameters, φ, the weight tile).

/// The generator (functions only).
pub const RNG: &str = include_str!("../../../shaders/rng.wgsl");
/// The per-layer parameter struct.
pub const PARAMS: &str = include_str!("../../../shaders/params.wgsl");
/// The fused layer kernel.
pub const LAYER: &str = include_str!("../../../shaders/layer.wgsl");
/// The statistics kernel.
pub const STATS: &str = include_str!("../../../shaders/stats.wgsl");
/// The generator check kernel (tests).
pub const RNG_CHECK: &str = include_str!("../../../shaders/rng_check.wgsl");
/// The backward (transposed, STE-masked) kernel.
pub const BACKWARD: &str = include_str!("../../../shaders/backward.wgsl");
/// The Hadamard-ensemble layer (tile stages, global stages, finish).
pub const HADAMARD: &str = include_str!("../../../shaders/hadamard.wgsl");
/// φ, shared by the layer and Hadamard kernels (a fragment).
pub const PHI: &str = include_str!("../../../shaders/phi.wgsl");
/// The weight-tile generation, shared by the layer and backward kernels
/// (a fragment).
pub const WEIGHT_TILE: &str = include_str!("../../../shaders/weight_tile.wgsl");

/// The wide layer kernel (64 × 128 tiles, k-major weight tile).
pub const LAYER_WIDE: &str = include_str!("../../../shaders/layer_wide.wgsl");
/// The wide256 layer kernel (64 × 256 tiles, 16-unit k-major weight tile).
pub const LAYER_WIDE256: &str = include_str!("../../../shaders/layer_wide256.wgsl");
/// The split-K combine pass.
pub const LAYER_COMBINE: &str = include_str!("../../../shaders/layer_combine.wgsl");
/// The u64 Philox multiply (a fragment replacing rng.wgsl's `mulhilo`).
pub const MUL64: &str = include_str!("../../../shaders/mul64.wgsl");

/// The line of layer.wgsl and backward.wgsl that sets the batch columns per
/// workgroup.
const TB_LINE: &str = "const TB: u32 = 64u;";

/// `source` with its `TB_LINE` set to `tb` batch columns per workgroup.
fn with_tile_columns(name: &str, source: &str, tb: u32) -> String {
    assert!(source.contains(TB_LINE), "{name} must declare `{TB_LINE}`");
    source.replace(TB_LINE, &format!("const TB: u32 = {tb}u;"))
}

/// The pipeline of the variant built for `tb` batch columns per workgroup
/// among `variants` (tile width, pipeline).
pub fn variant(variants: &[(u32, wgpu::ComputePipeline)], tb: u32) -> &wgpu::ComputePipeline {
    &variants
        .iter()
        .find(|(t, _)| *t == tb)
        .expect("all tile variants are built")
        .1
}

/// hadamard.wgsl with the generator, the parameters and φ.
pub fn hadamard() -> String {
    format!("{RNG}\n{PARAMS}\n{PHI}\n{HADAMARD}")
}

/// backward.wgsl with `tb` batch columns per workgroup (16, 32 or 64).
pub fn backward(tb: u32) -> String {
    format!(
        "{RNG}\n{PARAMS}\n{WEIGHT_TILE}\n{}",
        with_tile_columns("backward.wgsl", BACKWARD, tb)
    )
}

/// layer.wgsl with `tb` batch columns per workgroup (16, 32 or 64).
pub fn layer(tb: u32) -> String {
    format!(
        "{RNG}\n{PARAMS}\n{PHI}\n{WEIGHT_TILE}\n{}",
        with_tile_columns("layer.wgsl", LAYER, tb)
    )
}

/// The line of layer.wgsl that selects split-K partial sums.
const SPLIT_LINE: &str = "const SPLIT: bool = false;";

/// layer.wgsl writing split-K partial sums, `tb` batch columns per workgroup.
pub fn layer_split(tb: u32) -> String {
    let src = layer(tb);
    assert!(
        src.contains(SPLIT_LINE),
        "layer.wgsl must declare `{SPLIT_LINE}`"
    );
    src.replace(SPLIT_LINE, "const SPLIT: bool = true;")
}

/// layer_combine.wgsl with the generator and the parameters.
pub fn layer_combine() -> String {
    format!("{RNG}\n{PARAMS}\n{LAYER_COMBINE}")
}

/// layer_wide.wgsl with the generator, the parameters and φ.
pub fn layer_wide() -> String {
    format!("{RNG}\n{PARAMS}\n{PHI}\n{LAYER_WIDE}")
}

/// layer_wide256.wgsl with the generator, the parameters and φ.
pub fn layer_wide256() -> String {
    format!("{RNG}\n{PARAMS}\n{PHI}\n{LAYER_WIDE256}")
}

/// `source` (WGSL that contains rng.wgsl) with rng.wgsl's 16-bit-limb
/// `mulhilo` replaced by mul64.wgsl's u64 product (SHADER_INT64): the same
/// words, so the same stream.
pub fn with_mul64(source: &str) -> String {
    let start = source
        .find("fn mulhilo(")
        .expect("the kernel source contains rng.wgsl's mulhilo");
    let len = source[start..]
        .find("\n}\n")
        .expect("mulhilo ends with a closing brace on its own line")
        + 3;
    format!("{}{MUL64}{}", &source[..start], &source[start + len..])
}

/// stats.wgsl with its parameters.
pub fn stats() -> String {
    format!("{PARAMS}\n{STATS}")
}

/// rng_check.wgsl with the generator.
pub fn rng_check() -> String {
    format!("{RNG}\n{RNG_CHECK}")
}
