//! The estimated cost of a training point, which balances the shards of a
//! training sweep (`run --shard K/M`, `quantdepth slurm`).

use crate::error::Result;
use crate::experiment::config::Config;
use crate::experiment::training::plan::{plan, Lengths};

/// Pixels per image assumed by the cost estimate (MNIST's 28 × 28; the data
/// is not read to plan shards).
const COST_INPUT_DIM: usize = 784;
/// Training images assumed by the cost estimate of lengths given in epochs
/// without `train_subset` (Fashion-MNIST's 60000).
const COST_TRAIN_IMAGES: usize = 60_000;

/// Estimated cost of every point of a training config, in sweep order:
/// steps × batch × Σ fan_in·fan_out of its network (depths from the theory
/// where given per ξ), saturating. Only the order of the costs matters (it
/// balances shards), so the data is not read: lengths in epochs count
/// `train_subset` or 60000 images, the input 784 pixels.
pub fn sweep_costs(cfg: &Config) -> Result<Vec<u128>> {
    let plan = plan(cfg)?;
    let images = plan.train_subset.unwrap_or(COST_TRAIN_IMAGES);
    let steps = match &plan.lengths {
        Lengths::Steps(s) => s.iter().copied().max().unwrap_or(1) as u128,
        Lengths::Epochs(_) => *plan.length_steps(images)?.last().unwrap_or(&1) as u128,
    };
    plan.points
        .iter()
        .map(|p| {
            let (init, depth, _) = plan.resolve(p)?;
            let spec = plan.model(p, &init, depth, COST_INPUT_DIM);
            let macs = (0..spec.depth).fold(0u128, |acc, l| {
                let (i, o) = spec.layer_shape(l);
                acc.saturating_add((i as u128).saturating_mul(o as u128))
            });
            Ok(steps
                .saturating_mul(plan.batch as u128)
                .saturating_mul(macs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// steps × batch × Σ fan_in·fan_out with the longest length and 784
    /// inputs: depth 2 is 784·8 + 8·10 = 6352 MACs per input, depth 3 adds
    /// 8·8; × 20 steps × batch 4.
    #[test]
    fn cost_is_steps_times_batch_times_the_weights() {
        let cfg = Config::from_toml(
            "name = \"t\"\nkind = \"training\"\n[training]\nstates = [2]\ndepth = [2, 3]\n\
             width = 8\nbatch = 4\nsteps = [10, 20]\n",
        )
        .unwrap();
        assert_eq!(sweep_costs(&cfg).unwrap(), vec![6352 * 80, 6416 * 80]);
        // In epochs: 1 epoch of train_subset = 400 images at batch 4 is 100 steps.
        let cfg = Config::from_toml(
            "name = \"t\"\nkind = \"training\"\n[training]\nstates = [2]\ndepth = [2]\n\
             width = 8\nbatch = 4\nepochs = [1.0]\ntrain_subset = 400\n",
        )
        .unwrap();
        assert_eq!(sweep_costs(&cfg).unwrap(), vec![6352 * 400]);
    }
}
