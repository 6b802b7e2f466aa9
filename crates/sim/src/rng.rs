//! Deterministic random numbers: SplitMix64 streams derived from the seed and a user index.
//!
//! The simulator's output must be byte-identical for the same seed on every build, so it uses
//! its own 8-byte generator instead of `rand`'s `SmallRng` (whose algorithm may change between
//! releases). SplitMix64 passes BigCrush, costs one add and three multiplies per draw, and keeps
//! per-user state at one word.

/// Adds to the state every draw (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective mix of 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent streams of one seed: each purpose (user lives, signups, traits, interventions,
/// ...) has its own, so adding draws to one never shifts another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Signups = 1,
    User = 2,
    Traits = 3,
    Intervention = 4,
    Anonymous = 5,
}

/// A hash of (seed, stream, index, extra), for values that must be a pure function of them.
pub(crate) fn hash(seed: u64, stream: Stream, index: u64, extra: u64) -> u64 {
    let a = mix(seed ^ mix((stream as u64).wrapping_mul(GAMMA)));
    let b = mix(a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    mix(b ^ extra.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: Stream, index: u64, extra: u64) -> Self {
        Self(hash(seed, stream, index, extra))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0), by multiply-shift (bias below 2^-32, irrelevant here).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponential with mean 1.
    pub(crate) fn exp(&mut self) -> f64 {
        -(1.0 - self.f64()).ln()
    }

    /// Standard normal (Box-Muller, one of the pair).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson by Knuth's product method; means here are small (< 30).
    pub(crate) fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean.clamp(0.0, 30.0)).exp();
        let (mut k, mut p) = (0u32, self.f64());
        while p > limit {
            k += 1;
            p *= self.f64();
        }
        k
    }

    /// An index drawn with the given integer weights (not all zero).
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draws = |index| {
            let mut r = Rng::new(1, Stream::User, index, 0);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        let (a, b, c) = (draws(7), draws(7), draws(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(hash(1, Stream::User, 7, 0), hash(1, Stream::Traits, 7, 0));
    }

    #[test]
    fn distributions_have_the_right_means() {
        let mut r = Rng::new(3, Stream::User, 0, 0);
        let n = 200_000;
        let mean = |f: &mut dyn FnMut() -> f64| (0..n).map(|_| f()).sum::<f64>() / n as f64;
        assert!((mean(&mut || r.f64()) - 0.5).abs() < 0.01);
        assert!((mean(&mut || r.exp()) - 1.0).abs() < 0.02);
        assert!(mean(&mut || r.normal()).abs() < 0.02);
        assert!((mean(&mut || f64::from(r.poisson(4.0))) - 4.0).abs() < 0.05);
        let counts = (0..n).fold([0u32; 3], |mut c, _| {
            c[r.weighted(&[1, 2, 1])] += 1;
            c
        });
        assert!((f64::from(counts[1]) / n as f64 - 0.5).abs() < 0.01);
    }
}
