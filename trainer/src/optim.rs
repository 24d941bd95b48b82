//! SGD with momentum and weight decay (PyTorch's semantics), and the learning-rate schedules.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::Result;

/// The prefix of the momentum buffers' names in checkpoints.
pub(crate) const MOMENTUM: &str = "momentum/";

/// Stochastic gradient descent with momentum `μ` and weight decay `λ`:
/// `d = g + λ w`, `b = μ b + d` (`b = d` on the first step), `w -= lr · b`.
#[derive(Debug)]
pub struct Sgd {
    momentum: f64,
    weight_decay: f64,
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// A new optimiser with empty momentum buffers.
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            buffers: BTreeMap::new(),
        }
    }

    /// One update of every named tensor that has a gradient, then clears the gradients.
    pub fn step<'a>(
        &mut self,
        tensors: impl IntoIterator<Item = (&'a String, &'a mut Tensor)>,
        lr: f64,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, w) in tensors {
            let g = w.f_grad()?;
            if !g.defined() {
                continue;
            }
            let d = if self.weight_decay != 0.0 {
                g.f_add(&w.f_mul_scalar(self.weight_decay)?)?
            } else {
                g.shallow_clone()
            };
            let update = match self.buffers.get_mut(name) {
                Some(b) if self.momentum != 0.0 => {
                    let _ = b.f_mul_scalar_(self.momentum)?.f_add_(&d)?;
                    b.shallow_clone()
                }
                _ => {
                    let b = crate::fit::deep_copy(&d)?;
                    if self.momentum != 0.0 {
                        self.buffers.insert(name.clone(), b.shallow_clone());
                    }
                    b
                }
            };
            let _ = w.f_sub_(&update.f_mul_scalar(lr)?)?;
            w.zero_grad();
        }
        Ok(())
    }

    /// The momentum buffers as checkpoint tensors, named `momentum/NAME`.
    pub fn checkpoint_tensors(&self) -> impl Iterator<Item = (String, &Tensor)> {
        self.buffers
            .iter()
            .map(|(n, b)| (format!("{MOMENTUM}{n}"), b))
    }

    /// Takes the momentum buffers out of a checkpoint's tensors (those that
    /// [`Sgd::checkpoint_tensors`] named) and returns the other tensors.
    pub fn restore(&mut self, tensors: BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
        let (mut buffers, mut rest) = (BTreeMap::new(), BTreeMap::new());
        for (name, t) in tensors {
            match name.strip_prefix(MOMENTUM) {
                Some(n) => buffers.insert(n.to_string(), t),
                None => rest.insert(name, t),
            };
        }
        self.buffers = buffers;
        rest
    }

    /// The momentum buffers, for checkpoints.
    pub fn buffers(&self) -> &BTreeMap<String, Tensor> {
        &self.buffers
    }

    /// Restores momentum buffers from a checkpoint.
    pub fn set_buffers(&mut self, buffers: BTreeMap<String, Tensor>) {
        self.buffers = buffers;
    }
}

/// The reference schedule: the full rate for the first half of the epochs, a linear decay to
/// 1% of it between 50% and 90%, and 1% after that. `epoch` counts from 0; the reference counts
/// epochs from 1 to E and takes `alpha = epoch / E`, so epoch `e` here has
/// `alpha = (e + 1) / E`.
pub fn reference_lr(base: f64, epoch: usize, epochs: usize) -> f64 {
    let alpha = (epoch + 1) as f64 / epochs.max(1) as f64;
    let factor = if alpha <= 0.5 {
        1.0
    } else if alpha <= 0.9 {
        1.0 - (alpha - 0.5) / 0.4 * 0.99
    } else {
        0.01
    };
    base * factor
}

/// The FGE cycle ([`crate::job::fge_lr`], which reports and plots share).
pub fn cyclic_lr(lr1: f64, lr2: f64, i: usize, c: usize) -> f64 {
    crate::job::fge_lr(lr1, lr2, i, c)
}

/// Whether iteration `i` (1-based) of cycles of `c` (even) iterations ends at the cycle's
/// lowest rate (`s = 1/2`), where FGE takes a snapshot.
pub fn is_snapshot_step(i: usize, c: usize) -> bool {
    ((i - 1) % c) + 1 == c / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_schedule_has_its_three_phases() {
        // Epoch e (from 0) is the reference's epoch e + 1.
        assert_eq!(reference_lr(0.1, 0, 100), 0.1);
        assert_eq!(reference_lr(0.1, 49, 100), 0.1);
        assert!(reference_lr(0.1, 50, 100) < 0.1);
        assert!((reference_lr(0.1, 69, 100) - 0.1 * (1.0 - 0.5 * 0.99)).abs() < 1e-12);
        assert!((reference_lr(0.1, 89, 100) - 0.001).abs() < 1e-12);
        assert!((reference_lr(0.1, 99, 100) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn the_cycle_falls_to_lr2_at_its_middle_and_snapshots_there() {
        let c = 8;
        assert!((cyclic_lr(0.05, 0.0005, 4, c) - 0.0005).abs() < 1e-12);
        assert!((cyclic_lr(0.05, 0.0005, 8, c) - 0.05).abs() < 1e-12);
        assert!(cyclic_lr(0.05, 0.0005, 2, c) < 0.05 && cyclic_lr(0.05, 0.0005, 2, c) > 0.0005);
        let snaps: Vec<usize> = (1..=24).filter(|&i| is_snapshot_step(i, c)).collect();
        assert_eq!(snaps, vec![4, 12, 20]);
        // Symmetric around the middle.
        assert!((cyclic_lr(0.05, 0.0005, 3, c) - cyclic_lr(0.05, 0.0005, 5, c)).abs() < 1e-12);
    }

    #[test]
    fn sgd_matches_the_update_rule() -> Result<()> {
        let mut w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let name = "w".to_string();
        let mut sgd = Sgd::new(0.9, 0.1);
        for _ in 0..2 {
            let loss = (&w * &w).sum(tch::Kind::Float);
            loss.backward();
            sgd.step([(&name, &mut w)], 0.5)?;
        }
        // Step 1: d = 2w + 0.1w = 2.1w; b = d; w1 = w - 0.5 * 2.1 w = -0.05 w.
        // Step 2: d = 2.1 w1; b = 0.9 * 2.1 w + 2.1 w1; w2 = w1 - 0.5 b.
        let w0 = [1.0f64, -2.0];
        let got: Vec<f32> = Vec::try_from(&w)?;
        for (g, w0) in got.iter().zip(w0) {
            let w1 = -0.05 * w0;
            let b = 0.9 * 2.1 * w0 + 2.1 * w1;
            let w2 = w1 - 0.5 * b;
            assert!((f64::from(*g) - w2).abs() < 1e-6, "{g} vs {w2}");
        }
        Ok(())
    }
}
