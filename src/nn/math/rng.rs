//! Deterministic random numbers for initialisation, shuffling, splits and dropout.
//!
//! Every stream is derived from `(seed, tags…)` rather than carried along, so an epoch's
//! shuffle or a batch chunk's dropout mask is the same whichever thread computes it and
//! whether or not the run was resumed from a checkpoint. The generator is our own
//! (SplitMix64 for seeding, xoshiro256** for the stream) so the numbers never change under
//! us when a dependency's algorithm does.

/// SplitMix64 step: a good 64-bit mixer, used to derive seeds from tags.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Purposes of a stream, so two uses of the same seed never share numbers.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Stream {
    Init = 1,
    Split = 2,
    Shuffle = 3,
    Dropout = 4,
    /// Permutation importance's shuffles (column, repeat).
    Importance = 5,
    /// A sweep's random search (trial).
    Sweep = 6,
    /// The learning-rate range test's batches (pass).
    LrFind = 7,
}

/// xoshiro256** generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed` and a list of tags (stream, epoch, batch, chunk, …).
    pub fn derive(seed: u64, stream: Stream, tags: &[u64]) -> Self {
        let mut st = seed ^ 0xD1B5_4A32_D192_ED03;
        let mut mix = splitmix64(&mut st) ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F);
        for &t in tags {
            let mut m = mix ^ t.wrapping_mul(0xE703_7ED1_A0B4_28DB);
            mix = splitmix64(&mut m);
        }
        let mut s = [0u64; 4];
        let mut st = mix;
        for v in &mut s {
            *v = splitmix64(&mut st);
        }
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, 1) as f32 (24 bits), for dropout masks.
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the tiny bias is irrelevant for shuffling.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Normal truncated at two standard deviations (redrawn), as Keras's initialisers use.
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let v = self.normal();
            if v.abs() <= 2.0 {
                return v;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::derive(7, Stream::Shuffle, &[3]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let b = Rng::derive(7, Stream::Shuffle, &[4]).next_u64();
        let c = Rng::derive(7, Stream::Dropout, &[3]).next_u64();
        let d = Rng::derive(8, Stream::Shuffle, &[3]).next_u64();
        assert_ne!(a[0], b);
        assert_ne!(a[0], c);
        assert_ne!(a[0], d);
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut r = Rng::derive(1, Stream::Init, &[]);
        let n = 200_000;
        let (mut su, mut sn, mut sn2) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            su += u;
            let z = r.normal();
            sn += z;
            sn2 += z * z;
        }
        assert!((su / n as f64 - 0.5).abs() < 0.005);
        assert!((sn / n as f64).abs() < 0.01);
        assert!((sn2 / n as f64 - 1.0).abs() < 0.01);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..1000).collect();
        Rng::derive(3, Stream::Shuffle, &[0]).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }
}
