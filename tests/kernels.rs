//! The layer kernel's variants (src/sim/kernel.rs): every WGSL variant
//! validates with naga; on an adapter (lavapipe in CI) each equals the CPU
//! twin for one layer, agrees with it statistically over 20 layers, and
//! gives the same bits for the same seed; the int64 generator equals
//! src/rng.rs bit for bit. Without an adapter the GPU tests skip, unless
//! QUANTDEPTH_REQUIRE_GPU=1 (CI), where they fail.

use quantdepth::sim::kernel::{self, KernelVariant};

#[test]
fn every_variant_validates_with_naga() {
    let mut modules: Vec<(String, String)> = Vec::new();
    for v in KernelVariant::ALL {
        for tb in [16, 32, 64] {
            modules.push((format!("{v} TB={tb}"), kernel::layer_source(v, tb)));
        }
    }
    modules.push(("combine".into(), kernel::combine_source(false)));
    modules.push(("combine int64".into(), kernel::combine_source(true)));
    for (name, src) in modules {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        if name.contains("int64") {
            // Without SHADER_INT64 the u64 product must be refused.
            let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SHADER_INT64;
            assert!(
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                    .validate(&module)
                    .is_err(),
                "{name} validated without SHADER_INT64"
            );
        }
    }
}
