//! A seeded pseudo-random source and a Zipf sampler over ranks `0..n`.
//!
//! Owns nothing but numbers; depends on nothing. Deterministic for a seed, so a run can be
//! repeated and two targets can be offered the same sequence.

/// SplitMix64: a small, fast, seedable generator (good enough for load shapes, not for
/// anything secret).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform value in `0..bound` (`bound` > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }
}

/// Most ranks a sampler accepts (its table holds one `f64` per rank: 80 MB at this limit).
pub const MAX_ZIPF_RANKS: usize = 10_000_000;

/// Samples rank `k` (0-based) with probability proportional to `1 / (k + 1)^exponent`.
///
/// Inverse transform over a precomputed cumulative table: O(n) memory, O(log n) per sample.
#[derive(Clone, Debug)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// A sampler over `ranks` ranks (1 ..= [`MAX_ZIPF_RANKS`]) with `exponent` ≥ 0 (0 is
    /// uniform). `None` when the arguments are out of range.
    pub fn new(ranks: usize, exponent: f64) -> Option<Self> {
        if ranks == 0 || ranks > MAX_ZIPF_RANKS || !exponent.is_finite() || exponent < 0.0 {
            return None;
        }
        let mut total = 0.0;
        let cumulative = (0..ranks)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(exponent);
                total
            })
            .collect();
        Some(Self { cumulative })
    }

    /// How many ranks there are.
    pub fn ranks(&self) -> usize {
        self.cumulative.len()
    }

    /// The probability of `rank` (0 outside the range).
    pub fn probability(&self, rank: usize) -> f64 {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        match rank {
            0 => self.cumulative.first().copied().unwrap_or(0.0) / total,
            r if r < self.cumulative.len() => (self.cumulative[r] - self.cumulative[r - 1]) / total,
            _ => 0.0,
        }
    }

    /// Draws one rank in `0..ranks()`.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let target = rng.next_f64() * total;
        self.cumulative
            .partition_point(|&c| c <= target)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_arguments() {
        assert!(Zipf::new(0, 1.1).is_none());
        assert!(Zipf::new(10, -1.0).is_none());
        assert!(Zipf::new(10, f64::NAN).is_none());
        assert!(Zipf::new(MAX_ZIPF_RANKS + 1, 1.0).is_none());
    }

    #[test]
    fn frequencies_follow_the_power_law() {
        let zipf = Zipf::new(1000, 1.1).unwrap();
        let mut rng = SplitMix64::new(7);
        let draws = 200_000;
        let mut counts = vec![0u64; 1000];
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Rank 0 against its expected share, within 5 % relative.
        let expected0 = zipf.probability(0) * draws as f64;
        let observed0 = counts[0] as f64;
        assert!(
            (observed0 - expected0).abs() < expected0 * 0.05,
            "rank 0: observed {observed0}, expected {expected0}"
        );
        // Rank 0 / rank 1 ≈ 2^1.1 ≈ 2.14.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.9..2.4).contains(&ratio), "rank 0 / rank 1 = {ratio}");
        // Counts fall with rank (compare decades to smooth noise).
        let decade = |from: usize, to: usize| counts[from..to].iter().sum::<u64>();
        assert!(decade(0, 10) > decade(10, 100) / 2);
        assert!(decade(10, 100) > decade(100, 1000) / 2);
        assert!(counts.iter().all(|&c| c < draws));
        let sum: f64 = (0..1000).map(|r| zipf.probability(r)).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let zipf = Zipf::new(4, 0.0).unwrap();
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u64; 4];
        for _ in 0..40_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_seed_repeats_its_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert!((0..1000).all(|_| a.next_f64() < 1.0));
    }
}
