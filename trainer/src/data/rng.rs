//! A small seeded generator (SplitMix64) for shuffles and augmentation, so that a seed gives the
//! same batches whatever the libtorch version or device.

/// SplitMix64 (Steele, Lea and Flood 2014): fast, statistically sound for shuffling.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator for `seed`; `stream` separates independent uses of the same seed.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = SplitMix64 {
            state: seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        // Mix once so that nearby seeds start far apart.
        let _ = rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)` (`n > 0`), by multiply-shift (bias below `n / 2^64`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Stream of the held-out split's shuffle.
pub(crate) const STREAM_HELD_OUT: u64 = 1;
/// Stream of the training batches' order.
pub(crate) const STREAM_ORDER: u64 = 2;
/// Stream of the augmentation (crop offsets and flips).
pub(crate) const STREAM_AUGMENT: u64 = 3;

/// A seeded uniform permutation of `0..n` (Fisher–Yates) from `rng`.
pub(crate) fn shuffle(n: usize, rng: &mut SplitMix64) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The held-out split's permutation of `0..n` for `seed`.
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<i64> {
    shuffle(n, &mut SplitMix64::new(seed, STREAM_HELD_OUT))
}
