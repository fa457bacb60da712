use std::time::Duration;

/// How the delay before each retry is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `initial × multiplierⁿ`, capped.
    None,
    /// A uniform draw in `[0, initial × multiplierⁿ]`, capped: spreads a
    /// crowd of retrying clients the most (AWS's "full jitter"). The default.
    #[default]
    Full,
    /// A uniform draw in `[initial, 3 × previous delay]`, capped
    /// ("decorrelated jitter", Marc Brooker's formula); the first retry
    /// counts the initial delay as the previous one, so it draws from
    /// `[initial, 3 × initial]`.
    Decorrelated,
}

/// Exponential backoff: the delay before retry `n` (from 1).
///
/// # Defaults
/// - initial delay 100 ms;
/// - multiplier 2;
/// - cap 10 s;
/// - [`Jitter::Full`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max: Duration,
    pub(crate) jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry), given
    /// the previous delay (used by decorrelated jitter) and a random source.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => self.ceiling(retry).mul_f64(rng.f64()),
            Jitter::Decorrelated => {
                // The first retry has no previous delay: Brooker's formula
                // starts from the base, so its draw spans [base, 3 base].
                let low = self.initial.as_secs_f64();
                let high = previous.max(self.initial).as_secs_f64() * 3.0;
                Duration::from_secs_f64(low + (high - low) * rng.f64()).min(self.max)
            }
        }
    }

    /// `initial × multiplier^(retry - 1)`, capped at the maximum.
    fn ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(1024) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() { Duration::from_secs_f64(secs) } else { self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff(jitter: Jitter, initial_ms: u64, max_ms: u64, multiplier: f64) -> Backoff {
        Backoff { initial: Duration::from_millis(initial_ms), multiplier, max: Duration::from_millis(max_ms), jitter }
    }

    #[test]
    fn without_jitter_delays_double_up_to_the_cap() {
        let b = backoff(Jitter::None, 100, 1000, 2.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n, Duration::ZERO, &mut rng).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    /// Before, the first retry (no previous delay) always waited exactly
    /// the initial delay: every client retried in lockstep.
    #[test]
    fn decorrelated_jitter_spreads_the_first_retry_over_one_to_three_initial_delays() {
        let b = backoff(Jitter::Decorrelated, 100, 60_000, 2.0);
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<f64> =
            (0..10_000).map(|_| b.delay(1, Duration::ZERO, &mut rng).as_secs_f64() * 1000.0).collect();
        let (min, max) = draws.iter().fold((f64::MAX, 0f64), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((100.0..105.0).contains(&min), "min {min}");
        assert!(max > 295.0 && max <= 300.0, "max {max}");
        assert!((mean - 200.0).abs() < 5.0, "mean {mean}: a uniform draw in [100, 300] ms averages 200");
        let below_200 = draws.iter().filter(|&&d| d < 200.0).count();
        assert!((4_700..=5_300).contains(&below_200), "{below_200} of 10,000 below the middle");
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_zero_and_the_capped_ceiling(
            seed: u64, retry in 1u32..200, initial_ms in 1u64..1000, max_ms in 1u64..100_000, multiplier in 1.0f64..10.0,
        ) {
            let b = backoff(Jitter::Full, initial_ms, max_ms, multiplier);
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = b.delay(retry, Duration::ZERO, &mut rng);
            prop_assert!(d <= b.ceiling(retry));
            prop_assert!(d <= Duration::from_millis(max_ms));
        }

        #[test]
        fn decorrelated_jitter_stays_between_initial_and_the_cap(
            seed: u64, previous_ms in 0u64..100_000, initial_ms in 1u64..1000, max_ms in 1000u64..100_000,
        ) {
            let b = backoff(Jitter::Decorrelated, initial_ms, max_ms, 2.0);
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = b.delay(3, Duration::from_millis(previous_ms), &mut rng);
            prop_assert!(d <= Duration::from_millis(max_ms));
            prop_assert!(d >= Duration::from_millis(initial_ms).min(Duration::from_millis(max_ms)));
            prop_assert!(d <= Duration::from_millis(previous_ms.max(initial_ms) * 3) + Duration::from_nanos(1));
        }

        #[test]
        fn decorrelated_jitter_reaches_up_to_three_times_the_previous_delay(seed: u64) {
            let b = backoff(Jitter::Decorrelated, 100, 60_000, 2.0);
            let mut rng = fastrand::Rng::with_seed(seed);
            let longest = (0..200).map(|_| b.delay(3, Duration::from_secs(1), &mut rng)).max().unwrap();
            prop_assert!(longest > Duration::from_secs(2) && longest <= Duration::from_secs(3), "{longest:?}");
        }

        #[test]
        fn the_ceiling_never_decreases(retry in 1u32..500, initial_ms in 1u64..1000, multiplier in 1.0f64..10.0) {
            let b = backoff(Jitter::None, initial_ms, 60_000, multiplier);
            prop_assert!(b.ceiling(retry) <= b.ceiling(retry + 1));
        }
    }
}
