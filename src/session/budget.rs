//! The one retry budget. Network faults (a dropped connection, a timeout, a refused TLS or
//! CONNACK 3) and transient (>= 429) DPS replies count against the same run, which starts at
//! the first of them and ends at the first reply that is not transient. A run is given up when
//! it would need more than `max_attempts` retries, or when `max_time` has passed since its
//! start: that deadline is hard, it cuts a backoff, a connect in progress, a handshake and the
//! reply timeout of the last attempt alike.

use std::time::{Duration, Instant};

use super::policy::RetryPolicy;
use crate::error::Error;

/// The current run of faults and transient replies, if any.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    run: Option<Run>,
}

#[derive(Debug, Clone)]
struct Run {
    since: Instant,
    /// Faults and transient replies counted so far (each but a spending one was retried).
    count: u32,
    last: Error,
}

/// What to do after a fault or a transient reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Retry: this is retry `attempt` of the run; a reconnect waits `delay` (never past the
    /// deadline).
    Retry { attempt: u32, delay: Duration },
    /// Give up with this error.
    GiveUp(Error),
}

impl Budget {
    /// Counts a fault or a transient reply at `now`. `unit_random` (0..1) is the backoff jitter.
    pub fn spend(
        &mut self,
        now: Instant,
        policy: &RetryPolicy,
        unit_random: f64,
        error: Error,
    ) -> Next {
        let run = self.run.get_or_insert(Run {
            since: now,
            count: 0,
            last: error.clone(),
        });
        run.count += 1;
        run.last = error;
        let elapsed = now.saturating_duration_since(run.since);
        if run.count > policy.max_attempts || elapsed >= policy.max_time {
            return Next::GiveUp(spent(run.count - 1, elapsed, run.last.clone()));
        }
        let delay = policy
            .delay(run.count, unit_random)
            .min(policy.max_time - elapsed);
        Next::Retry {
            attempt: run.count,
            delay,
        }
    }

    /// A reply that is not transient: the next fault starts a new run.
    pub fn reset(&mut self) {
        self.run = None;
    }

    /// When the run's time is up (None without a run).
    pub fn deadline(&self, policy: &RetryPolicy) -> Option<Instant> {
        self.run.as_ref().map(|run| run.since + policy.max_time)
    }

    /// The error to give up with when the deadline has come at `now`. `pending` says what the
    /// session was still waiting for (a reply, a CONNACK), when it waited for something; else
    /// the run's last fault is named.
    pub fn expired(
        &self,
        now: Instant,
        policy: &RetryPolicy,
        pending: Option<Error>,
    ) -> Option<Error> {
        let run = self.run.as_ref()?;
        if now < self.deadline(policy)? {
            return None;
        }
        let last = pending.unwrap_or_else(|| run.last.clone());
        Some(spent(run.count, now - run.since, last))
    }
}

fn spent(attempts: u32, elapsed: Duration, last: Error) -> Error {
    Error::RetryBudgetSpent {
        attempts,
        elapsed,
        last: Box::new(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, max_secs: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            max_time: Duration::from_secs(max_secs),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    fn lost() -> Error {
        Error::ConnectionLost("reset".into())
    }

    #[test]
    fn attempts_then_give_up_and_reset_starts_over() {
        let p = policy(2, 600);
        let t0 = Instant::now();
        let mut b = Budget::default();
        for attempt in 1..=2 {
            let next = b.spend(t0, &p, 1.0, lost());
            assert!(
                matches!(next, Next::Retry { attempt: a, .. } if a == attempt),
                "{next:?}"
            );
        }
        let Next::GiveUp(e) = b.spend(t0, &p, 1.0, lost()) else {
            panic!("the third fault spends a budget of 2")
        };
        assert!(
            e.to_string().starts_with("giving up after 2 retries"),
            "{e}"
        );
        b.reset();
        assert_eq!(b.deadline(&p), None);
        assert!(matches!(
            b.spend(t0, &p, 1.0, lost()),
            Next::Retry { attempt: 1, .. }
        ));
    }

    #[test]
    fn the_deadline_is_the_run_start_plus_the_time_budget_and_cuts_the_backoff() {
        let p = policy(100, 10);
        let t0 = Instant::now();
        let mut b = Budget::default();
        b.spend(t0, &p, 1.0, lost());
        assert_eq!(b.deadline(&p), Some(t0 + Duration::from_secs(10)));
        // the 4th backoff would be 8 s; 9 s into the run only 1 s is left
        for _ in 0..2 {
            b.spend(t0, &p, 1.0, lost());
        }
        let next = b.spend(t0 + Duration::from_secs(9), &p, 1.0, lost());
        assert_eq!(
            next,
            Next::Retry {
                attempt: 4,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(b.expired(t0 + Duration::from_millis(9999), &p, None), None);
        let e = b
            .expired(t0 + Duration::from_secs(10), &p, None)
            .expect("spent at the deadline");
        assert_eq!(
            e.to_string(),
            "giving up after 4 retries over 10.0 s; last error: connection lost: reset"
        );
        let pending = Error::Timeout {
            waiting_for: "CONNACK",
            after: Duration::from_secs(1),
        };
        let e = b
            .expired(t0 + Duration::from_secs(10), &p, Some(pending))
            .unwrap();
        assert!(
            e.to_string()
                .ends_with("last error: no CONNACK within 1.0 s"),
            "{e}"
        );
    }
}
