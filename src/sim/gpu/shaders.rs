//! The WGSL sources of the simulator's kernels, composed as the kernels
//! use them: each stage file is prepended with the shared pieces it calls
//! (the generator, the per-layer parameters, φ, the weight tile, the
//! input tile, the layer's bias and store).

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

/// The input-tile load, shared by the layer kernels (φ(H)) and the backward
/// kernel (δ) (a fragment).
pub const INPUT_TILE: &str = include_str!("../../../shaders/input_tile.wgsl");
/// The layer's bias and guarded store, shared by the layer kernels and the
/// split-K combine pass (a fragment).
pub const LAYER_STORE: &str = include_str!("../../../shaders/layer_store.wgsl");
/// The wide layer kernel (64 × TB tiles, k-major weight tile; TB = 128 or
/// 256, see [`layer_wide`]), and with BACKWARD the wide backward step
/// ([`backward_wide`]).
pub const LAYER_WIDE: &str = include_str!("../../../shaders/layer_wide.wgsl");
/// The split-K combine pass.
pub const LAYER_COMBINE: &str = include_str!("../../../shaders/layer_combine.wgsl");
/// The u64 Philox multiply (a fragment replacing rng.wgsl's `mulhilo`).
pub const MUL64: &str = include_str!("../../../shaders/mul64.wgsl");

/// The line of layer.wgsl and backward.wgsl that sets the batch columns per
/// workgroup.
const TB_LINE: &str = "const TB: u32 = 64u;";

/// `source` with its declaration `line` replaced by `with` (the host's way of
/// setting a kernel's constants).
fn with_line(name: &str, source: &str, line: &str, with: &str) -> String {
    assert!(source.contains(line), "{name} must declare `{line}`");
    source.replace(line, with)
}

/// `source` with its `TB_LINE` set to `tb` batch columns per workgroup.
fn with_tile_columns(name: &str, source: &str, tb: u32) -> String {
    with_line(name, source, TB_LINE, &format!("const TB: u32 = {tb}u;"))
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
        "{RNG}\n{PARAMS}\n{WEIGHT_TILE}\n{INPUT_TILE}\n{}",
        with_tile_columns("backward.wgsl", BACKWARD, tb)
    )
}

/// layer.wgsl with `tb` batch columns per workgroup (16, 32 or 64).
pub fn layer(tb: u32) -> String {
    format!(
        "{RNG}\n{PARAMS}\n{PHI}\n{WEIGHT_TILE}\n{INPUT_TILE}\n{LAYER_STORE}\n{}",
        with_tile_columns("layer.wgsl", LAYER, tb)
    )
}

/// The line of layer.wgsl and backward.wgsl that selects split-K partial sums.
const SPLIT_LINE: &str = "const SPLIT: bool = false;";

/// layer.wgsl writing split-K partial sums, `tb` batch columns per workgroup.
pub fn layer_split(tb: u32) -> String {
    with_line(
        "layer.wgsl",
        &layer(tb),
        SPLIT_LINE,
        "const SPLIT: bool = true;",
    )
}

/// layer.wgsl with network samples on the grid's z axis (the `stacked`
/// variant), `tb` batch columns per workgroup.
pub fn layer_stacked(tb: u32) -> String {
    with_line(
        "layer.wgsl",
        &layer(tb),
        "const STACK: bool = false;",
        "const STACK: bool = true;",
    )
}

/// layer_combine.wgsl with the generator and the parameters.
pub fn layer_combine() -> String {
    format!("{RNG}\n{PARAMS}\n{LAYER_STORE}\n{LAYER_COMBINE}")
}

/// backward.wgsl writing split-K partial sums, `tb` batch columns per
/// workgroup.
pub fn backward_split(tb: u32) -> String {
    with_line(
        "backward.wgsl",
        &backward(tb),
        SPLIT_LINE,
        "const SPLIT: bool = true;",
    )
}

/// The line of layer_combine.wgsl and layer_wide.wgsl that selects the
/// backward step's form.
const BACKWARD_LINE: &str = "const BACKWARD: bool = false;";

/// layer_combine.wgsl as the split-K backward step's second pass (scale
/// and STE mask instead of scale and bias).
pub fn backward_combine() -> String {
    with_line(
        "layer_combine.wgsl",
        &layer_combine(),
        BACKWARD_LINE,
        "const BACKWARD: bool = true;",
    )
}

/// The lines of layer_wide.wgsl that set its tile: batch columns and units
/// per weight tile.
const WIDE_TB_LINE: &str = "const TB: u32 = 128u;";
const WIDE_TJ_LINE: &str = "const TJ: u32 = 32u;";

/// layer_wide.wgsl with the generator, the parameters, φ and the shared
/// layer pieces, for `tb` = 128 (`wide`: 32-unit weight tiles) or 256
/// (`wide256`: 16-unit weight tiles, to fit 20 KiB of workgroup memory)
/// batch columns per workgroup, its accumulator lines written out for the
/// tb/64 column groups.
pub fn layer_wide(tb: u32) -> String {
    let tj = match tb {
        128 => 32,
        256 => 16,
        _ => panic!("layer_wide.wgsl is built for 128 or 256 columns, not {tb}"),
    };
    let src = with_line(
        "layer_wide.wgsl",
        LAYER_WIDE,
        WIDE_TB_LINE,
        &format!("const TB: u32 = {tb}u;"),
    );
    let src = with_line(
        "layer_wide.wgsl",
        &src,
        WIDE_TJ_LINE,
        &format!("const TJ: u32 = {tj}u;"),
    );
    format!(
        "{RNG}\n{PARAMS}\n{PHI}\n{INPUT_TILE}\n{LAYER_STORE}\n{}",
        per_column_group(&src, tb / 64)
    )
}

/// layer_wide.wgsl as the wide backward step (`wide`, `wide256`: the
/// transposed weight tile, δ as the input tile, the STE mask instead of the
/// bias), for `tb` = 128 or 256 batch columns per workgroup as
/// [`layer_wide`].
pub fn backward_wide(tb: u32) -> String {
    with_line(
        "layer_wide.wgsl",
        &layer_wide(tb),
        BACKWARD_LINE,
        "const BACKWARD: bool = true;",
    )
}

/// `source` with every run of consecutive code lines that contain `{c}`
/// written out once per column group c = 0..groups−1, `{c}` replaced by c
/// (layer_wide.wgsl's named accumulators); comment lines stay as they are.
fn per_column_group(source: &str, groups: u32) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut String| {
        for c in 0..groups {
            for line in run.iter() {
                out.push_str(&line.replace("{c}", &c.to_string()));
                out.push('\n');
            }
        }
        run.clear();
    };
    for line in source.lines() {
        if line.contains("{c}") && !line.trim_start().starts_with("//") {
            run.push(line);
        } else {
            flush(&mut run, &mut out);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut run, &mut out);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_group_runs_are_written_out_in_order_and_comments_kept() {
        let src = "a\n// x{c}\n    v{c} = 0;\n    w{c} = v{c};\nb\n";
        assert_eq!(
            per_column_group(src, 2),
            "a\n// x{c}\n    v0 = 0;\n    w0 = v0;\n    v1 = 0;\n    w1 = v1;\nb\n"
        );
    }

    #[test]
    fn wide_kernels_get_four_accumulators_per_column_group() {
        for (tb, tj, groups) in [(128, 32, 2), (256, 16, 4)] {
            let src = layer_wide(tb);
            let code: String = src
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            assert!(!code.contains("{c}"), "TB = {tb}: a `{{c}}` left in code");
            assert!(src.contains(&format!("const TB: u32 = {tb}u;")));
            assert!(src.contains(&format!("const TJ: u32 = {tj}u;")));
            // 4 rows × `groups` column quads, each declared once.
            let accumulators = src
                .lines()
                .filter(|l| l.starts_with("    var acc") && l.ends_with("= vec4<f32>(0.0);"))
                .count();
            assert_eq!(accumulators, 4 * groups, "TB = {tb}");
            assert!(src.contains(&format!("var acc3{} ", groups - 1)));
            assert!(!src.contains(&format!("var acc0{} ", groups)));
        }
    }
}
