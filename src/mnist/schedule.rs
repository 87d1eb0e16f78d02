//! The tutorial's schedule: how many steps, which examples each step takes,
//! the learning rate, and when to evaluate. Pure functions of the step, so a
//! resumed run and every rank agree on them without talking.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::bail_usage;

pub const BASE_LEARNING_RATE: f64 = 0.01;
pub const DECAY_RATE: f64 = 0.95;
pub const MOMENTUM: f64 = 0.9;
/// The L2 factor on the fully connected layers' weights and biases.
pub const WEIGHT_DECAY: f64 = 5e-4;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub train_size: usize,
    /// Global batch: the sum of all ranks' shards.
    pub batch: usize,
    pub steps: u64,
    pub eval_every: u64,
}

impl Schedule {
    /// `int(epochs * train_size) // batch` steps, as the tutorial counts them.
    pub fn new(train_size: usize, batch: usize, epochs: f64, eval_every: u64) -> Result<Schedule> {
        if batch >= train_size {
            bail_usage!(
                "--batch-size {batch} must be smaller than the training set ({train_size} images): the tutorial's batches wrap at train_size - batch"
            );
        }
        if !(epochs.is_finite() && epochs > 0.0) {
            bail_usage!("--epochs must be a positive number, got {epochs}");
        }
        let steps = ((epochs * train_size as f64).floor() as u64) / batch as u64;
        if steps == 0 {
            bail_usage!(
                "--epochs {epochs} is less than one batch of {batch} out of {train_size} training images: no step to take"
            );
        }
        Ok(Schedule { train_size, batch, steps, eval_every: eval_every.max(1) })
    }

    /// First example of the step's batch: `(step * batch) % (train_size - batch)`,
    /// batches in order without shuffling.
    pub fn offset(&self, step: u64) -> usize {
        ((step as u128 * self.batch as u128) % (self.train_size - self.batch) as u128) as usize
    }

    /// Passes over the training set completed before `step`.
    pub fn epoch(&self, step: u64) -> f64 {
        step as f64 * self.batch as f64 / self.train_size as f64
    }

    /// `0.01 * 0.95^floor(step * batch / train_size)`: staircase decay once per epoch.
    pub fn learning_rate(&self, step: u64) -> f64 {
        let epochs_done = (step as u128 * self.batch as u128 / self.train_size as u128) as i32;
        BASE_LEARNING_RATE * DECAY_RATE.powi(epochs_done)
    }

    /// Whether `step` reports, evaluates and checkpoints: every `eval_every`
    /// steps from step 0, as the tutorial does, and the last step, so short
    /// runs end with a validation error too.
    pub fn evaluates_at(&self, step: u64) -> bool {
        step.is_multiple_of(self.eval_every) || step + 1 == self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mnist_matches_the_tutorial() {
        let s = Schedule::new(55_000, 64, 10.0, 100).unwrap();
        assert_eq!(s.steps, 8593);
        assert_eq!(s.offset(0), 0);
        assert_eq!(s.offset(1), 64);
        // Wraps at train_size - batch, not at train_size.
        assert_eq!(s.offset(859), (859 * 64) % 54_936);
        assert_eq!(s.learning_rate(0), 0.01);
        assert_eq!(s.learning_rate(859), 0.01);
        assert!((s.learning_rate(860) - 0.0095).abs() < 1e-15);
        assert!((s.learning_rate(8592) - 0.01 * 0.95f64.powi(9)).abs() < 1e-15);
        assert!((s.epoch(100) - 0.116_363).abs() < 1e-6);
        assert!(s.evaluates_at(0) && s.evaluates_at(100) && !s.evaluates_at(101) && s.evaluates_at(8592));
    }

    #[test]
    fn self_test_is_four_steps() {
        let s = Schedule::new(256, 64, 1.0, 100).unwrap();
        assert_eq!(s.steps, 4);
        let offsets: Vec<usize> = (0..4).map(|i| s.offset(i)).collect();
        assert_eq!(offsets, vec![0, 64, 128, 0]);
    }

    #[test]
    fn impossible_schedules_are_usage_errors() {
        for (train, batch, epochs) in
            [(100, 100, 1.0), (100, 200, 1.0), (1000, 64, 0.0), (1000, 64, 0.01), (1000, 64, f64::NAN)]
        {
            let e = Schedule::new(train, batch, epochs, 100).unwrap_err();
            assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE, "{e}");
        }
    }
}
