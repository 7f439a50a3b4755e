//! How long to wait before trying a step again: exponential backoff with jitter.

use std::time::Duration;

use crate::model::Retry;

/// Without `max_backoff`, a delay never exceeds this: a recovery that waits longer between
/// tries than this is waiting for a human, not for a transient fault to pass.
const CEILING: Duration = Duration::from_secs(3600);

/// The delay after attempt `failed` (1-based) failed: `backoff × 2^(failed−1)`, capped, then
/// "equal jitter" — half of it fixed, half random — so that steps failing together (a
/// database restart) do not retry in lockstep, yet every delay is at least half the nominal
/// one. `unit` is a random number in [0, 1).
pub(crate) fn delay(retry: &Retry, failed: u32, unit: f64) -> Duration {
    let cap = retry.max_backoff.map_or(CEILING, |d| d.0);
    let exponent = failed.saturating_sub(1).min(32);
    let nominal = retry
        .backoff
        .0
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(cap)
        .min(cap);
    let half = nominal / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Duration as Typed;

    fn retry(backoff: u64, max: Option<u64>) -> Retry {
        Retry {
            attempts: 5,
            backoff: Typed(Duration::from_secs(backoff)),
            max_backoff: max.map(|m| Typed(Duration::from_secs(m))),
        }
    }

    #[test]
    fn doubles_each_time_within_the_jitter_band() {
        let r = retry(2, None);
        for (failed, nominal) in [(1, 2), (2, 4), (3, 8), (4, 16)] {
            let low = delay(&r, failed, 0.0);
            let high = delay(&r, failed, 0.999_999);
            assert_eq!(low, Duration::from_secs(nominal) / 2);
            assert!(high < Duration::from_secs(nominal) && high > low);
        }
    }

    #[test]
    fn is_capped() {
        let r = retry(10, Some(30));
        assert_eq!(delay(&r, 10, 0.0), Duration::from_secs(15));
        assert_eq!(delay(&retry(1, None), 200, 0.0), CEILING / 2);
    }
}
