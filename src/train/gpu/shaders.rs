//! The WGSL sources of the training kernels, composed as the kernels use
//! them, and the tile variants of their product.

/// The dispatch parameters.
pub const PARAMS: &str = include_str!("../../../shaders/train_params.wgsl");
/// The tiled product and the product kernels' entry point, which hands each
/// element to the kernel's `store` (a fragment); a template of the tile
/// shape, filled by [`Tile::gemm`].
pub const GEMM: &str = include_str!("../../../shaders/train_gemm.wgsl");
/// Forward with φ.
pub const FORWARD: &str = include_str!("../../../shaders/train_forward.wgsl");
/// Backward with the STE mask.
pub const BACKWARD: &str = include_str!("../../../shaders/train_backward.wgsl");
/// Weight gradient and update.
pub const UPDATE: &str = include_str!("../../../shaders/train_update.wgsl");
/// Softmax cross-entropy.
pub const LOSS: &str = include_str!("../../../shaders/train_loss.wgsl");

/// The output tile of one workgroup (16 × 16 threads) of a training product:
/// each thread holds TM × TN outputs in registers. Every variant sums each
/// output over k in k order; they differ in how many loads of workgroup
/// memory feed each multiply-add (1 per FMA for 16 × 16, (TM + TN)/(TM·TN)
/// for the wider tiles) and in how much of a small matrix they waste on
/// edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    /// 16 × 16, one output per thread (the plain shared-memory tile).
    T16x16,
    /// 32 × 32, 2 × 2 per thread.
    T32x32,
    /// 64 × 32, 4 × 2 per thread (rows × columns): a batch of 32 in one tile.
    T64x32,
    /// 64 × 64, 4 × 4 per thread.
    T64x64,
}

impl Tile {
    /// Every variant, smallest first.
    pub const ALL: [Tile; 4] = [Tile::T16x16, Tile::T32x32, Tile::T64x32, Tile::T64x64];

    /// Outputs per thread (rows, columns).
    pub fn per_thread(self) -> (usize, usize) {
        match self {
            Tile::T16x16 => (1, 1),
            Tile::T32x32 => (2, 2),
            Tile::T64x32 => (4, 2),
            Tile::T64x64 => (4, 4),
        }
    }

    /// Rows and columns of C one workgroup computes.
    pub fn shape(self) -> (usize, usize) {
        let (tm, tn) = self.per_thread();
        (16 * tm, 16 * tn)
    }

    /// "16x16", …
    pub fn name(self) -> String {
        let (r, c) = self.shape();
        format!("{r}x{c}")
    }

    /// The variant named `name` ("16x16", "32x32", "64x32", "64x64").
    pub fn from_name(name: &str) -> Option<Tile> {
        Tile::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The default tile of an m × n product: the largest that neither
    /// dimension leaves mostly empty (BM ≤ m and BN ≤ n, the 16 × 16 tile
    /// where none is). A rule of the shape alone, so that a run, its resume
    /// and its shards take the same variant (and the same bits).
    pub fn for_shape(m: usize, n: usize) -> Tile {
        [Tile::T64x64, Tile::T64x32, Tile::T32x32]
            .into_iter()
            .find(|t| {
                let (bm, bn) = t.shape();
                bm <= m && bn <= n
            })
            .unwrap_or(Tile::T16x16)
    }

    /// Workgroups to cover an m × n product: (along n, along m).
    pub fn groups(self, m: usize, n: usize) -> (u32, u32) {
        let (bm, bn) = self.shape();
        (n.div_ceil(bn) as u32, m.div_ceil(bm) as u32)
    }

    /// train_gemm.wgsl with this tile's constants.
    pub fn gemm(self) -> String {
        let (tm, tn) = self.per_thread();
        GEMM.replace("{{TM}}", &tm.to_string())
            .replace("{{TN}}", &tn.to_string())
            .replace("{{A_FLOATS}}", &(16 * tm * 16).to_string())
            .replace("{{B_FLOATS}}", &(16 * 16 * tn).to_string())
            .replace("{{ACC}}", &(tm * tn).to_string())
            .replace("{{TN_ARRAY}}", &tn.to_string())
    }
}

/// A product kernel (its bindings and `store` epilogue) between the
/// parameters and the tiled product of `tile`.
pub fn product(kernel: &str, tile: Tile) -> String {
    format!("{PARAMS}\n{kernel}\n{}", tile.gemm())
}

/// The loss kernel with its parameters.
pub fn loss() -> String {
    format!("{PARAMS}\n{LOSS}")
}
