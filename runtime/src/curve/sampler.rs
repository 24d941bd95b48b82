//! Ways of choosing t values (and member indices): explicit, grid, seeded uniform, and
//! per-sample draws from the operating system's CSPRNG or from a keyed hash of the input.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::{Error, Result};

/// Checks that `t` lies in `[0, 1]` (NaN does not).
pub fn check_t(t: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::TOutOfRange { t })
    }
}

/// Checks that a grid of `m` points can be made (`m ≥ 2`).
pub fn check_grid_len(m: usize) -> Result<()> {
    if m < 2 {
        return Err(Error::invalid(
            "a grid",
            format!("needs at least 2 points, got {m}"),
        ));
    }
    Ok(())
}

/// `m` equally spaced points from 0 to 1 inclusive (`m ≥ 2`).
pub fn grid(m: usize) -> Result<Vec<f64>> {
    check_grid_len(m)?;
    let last = (m - 1) as f64;
    Ok((0..m)
        .map(|i| if i + 1 == m { 1.0 } else { i as f64 / last })
        .collect())
}

/// A seeded generator whose stream is fixed for a given seed across platforms and releases
/// (ChaCha8), for reproducible sampling.
#[derive(Debug, Clone)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniform draw from `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform index in `0..n` (`n ≥ 1`), without modulo bias.
    pub fn index(&mut self, n: usize) -> usize {
        let mut next = || Ok::<_, Error>(self.0.next_u64());
        // The closure never fails, so neither does the draw.
        unbiased_index(n, &mut next).unwrap_or(0)
    }
}

/// `n` draws of t uniform on `[0, 1]` from a seeded generator.
pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SeededRng::new(seed);
    (0..n).map(|_| rng.unit()).collect()
}

/// A uniform index in `0..n` from the operating system's CSPRNG.
pub fn os_index(n: usize) -> Result<usize> {
    let mut next = || getrandom::u64().map_err(|source| Error::Random { source });
    unbiased_index(n, &mut next)
}

/// The index in `0..n` that a keyed hash (BLAKE3 keyed mode) of `bytes` selects: the same key
/// and bytes always give the same index, and without the key the index cannot be predicted.
pub fn keyed_index(key: &[u8; 32], bytes: &[u8], n: usize) -> usize {
    let hash = blake3::keyed_hash(key, bytes);
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash.as_bytes()[..8]);
    // Multiply-shift maps 64 uniform bits to 0..n with bias below n / 2^64.
    ((u128::from(u64::from_le_bytes(word)) * n as u128) >> 64) as usize
}

/// Rejection sampling: uniform in `0..n` given uniform 64-bit words.
fn unbiased_index(n: usize, next: &mut impl FnMut() -> Result<u64>) -> Result<usize> {
    if n == 0 {
        return Err(Error::invalid("an empty set", "cannot be drawn from"));
    }
    let n = n as u64;
    // The largest multiple of n that fits; words at or above it are redrawn.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let w = next()?;
        if w < zone {
            return Ok((w % n) as usize);
        }
    }
}
