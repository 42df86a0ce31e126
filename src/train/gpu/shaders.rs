//! The WGSL sources of the training kernels, composed as the kernels use
//! them.

/// The dispatch parameters.
pub const PARAMS: &str = include_str!("../../../shaders/train_params.wgsl");
/// The tiled product and the product kernels' entry point, which hands each
/// element to the kernel's `store` (a fragment).
pub const GEMM: &str = include_str!("../../../shaders/train_gemm.wgsl");
/// Forward with φ.
pub const FORWARD: &str = include_str!("../../../shaders/train_forward.wgsl");
/// Backward with the STE mask.
pub const BACKWARD: &str = include_str!("../../../shaders/train_backward.wgsl");
/// Weight gradient and update.
pub const UPDATE: &str = include_str!("../../../shaders/train_update.wgsl");
/// Softmax cross-entropy.
pub const LOSS: &str = include_str!("../../../shaders/train_loss.wgsl");

/// A product kernel (its bindings and `store` epilogue) between the
/// parameters and the tiled product.
pub fn product(kernel: &str) -> String {
    format!("{PARAMS}\n{kernel}\n{GEMM}")
}

/// The loss kernel with its parameters.
pub fn loss() -> String {
    format!("{PARAMS}\n{LOSS}")
}
