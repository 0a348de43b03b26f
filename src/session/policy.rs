//! How hard to try before the registration is given up: reconnect backoff and the budget.

use std::time::Duration;

/// Retry policy for transient faults (dropped connections, reply timeouts) and for runs of
/// transient (>= 429) DPS replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after a fault, or after a transient reply, before giving up (0 = fail on the first).
    pub max_attempts: u32,
    /// Total time from the first fault (or transient reply) of a run before giving up.
    pub max_time: Duration,
    /// Backoff before the first reconnect; doubles each attempt.
    pub initial_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_time: Duration::from_secs(180),
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt` (1-based): exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that a fleet does not reconnect in lockstep.
    pub fn delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let exp = self
            .initial_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(unit_random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_time: Duration::from_secs(600),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(9, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(60, 0.5), Duration::from_secs(6));
    }
}
