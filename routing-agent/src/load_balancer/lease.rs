//! Who decides: the holder of a `coordination.k8s.io/v1` Lease, as
//! client-go's leader election does it. Every write of the Lease is a
//! compare-and-swap on its resourceVersion, so two agents never both take
//! it. Another's Lease is taken over only once it has not changed for its
//! whole `leaseDurationSeconds` as this agent's own clock measures it (no
//! comparison of clocks across nodes); the holder stops acting a third of
//! that duration before the others may take over.
//!
//! [`Election`] is the pure part: what to do next given the Lease as read
//! and the local time.

use std::time::{Duration, Instant};

/// The Lease as read, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseView {
    pub resource_version: String,
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Option<Duration>,
    /// `leaseTransitions`.
    pub transitions: i32,
}

/// What to write next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// No Lease: create it, naming this agent.
    Create,
    /// This agent's: renew it (conditional on `resource_version`).
    Renew { resource_version: String },
    /// Another's, expired (or released): take it, counting a transition.
    TakeOver {
        resource_version: String,
        transitions: i32,
    },
    /// Another's, live: wait.
    Wait,
}

#[derive(Debug)]
pub(crate) struct Election {
    identity: String,
    duration: Duration,
    /// Another holder's record as last seen, and when it was first seen so.
    observed: Option<(String, Instant)>,
    leading_until: Option<Instant>,
}

impl Election {
    pub fn new(identity: &str, duration: Duration) -> Election {
        Election {
            identity: identity.to_string(),
            duration,
            observed: None,
            leading_until: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// What to do about `lease` (None: there is none) at `now`.
    pub fn step(&mut self, lease: Option<&LeaseView>, now: Instant) -> Step {
        let Some(lease) = lease else {
            self.observed = None;
            return Step::Create;
        };
        match lease.holder.as_deref() {
            Some(h) if h == self.identity => {
                self.observed = None;
                Step::Renew {
                    resource_version: lease.resource_version.clone(),
                }
            }
            None | Some("") => Step::TakeOver {
                resource_version: lease.resource_version.clone(),
                transitions: lease.transitions,
            },
            Some(_) => {
                self.leading_until = None;
                let since = match &self.observed {
                    Some((rv, at)) if *rv == lease.resource_version => *at,
                    _ => {
                        self.observed = Some((lease.resource_version.clone(), now));
                        now
                    }
                };
                let lasts = lease.duration.unwrap_or(self.duration);
                if now.duration_since(since) >= lasts {
                    Step::TakeOver {
                        resource_version: lease.resource_version.clone(),
                        transitions: lease.transitions,
                    }
                } else {
                    Step::Wait
                }
            }
        }
    }

    /// A write of `Create`, `Renew` or `TakeOver` made at `written` succeeded.
    pub fn won(&mut self, written: Instant) {
        self.observed = None;
        self.leading_until = Some(written + self.duration * 2 / 3);
    }

    /// A write failed (conflict, error): not leading until one succeeds.
    pub fn lost(&mut self) {
        self.leading_until = None;
    }

    /// Whether this agent may act at `now`.
    pub fn leading(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn lease(rv: &str, holder: &str) -> LeaseView {
        LeaseView {
            resource_version: rv.to_string(),
            holder: Some(holder.to_string()),
            duration: Some(D),
            transitions: 2,
        }
    }

    #[test]
    fn create_then_renew_then_stop_when_a_renewal_is_late() {
        let t0 = Instant::now();
        let mut e = Election::new("a", D);
        assert_eq!(e.step(None, t0), Step::Create);
        assert!(!e.leading(t0));
        e.won(t0);
        assert!(e.leading(t0 + Duration::from_secs(9)));
        assert!(!e.leading(t0 + Duration::from_secs(10)));
        assert_eq!(
            e.step(Some(&lease("5", "a")), t0),
            Step::Renew {
                resource_version: "5".into()
            }
        );
        e.lost();
        assert!(!e.leading(t0));
    }

    #[test]
    fn another_holder_is_waited_for_until_its_lease_stops_changing_for_its_duration() {
        let t0 = Instant::now();
        let mut e = Election::new("b", D);
        assert_eq!(e.step(Some(&lease("5", "a")), t0), Step::Wait);
        // Renewed (a new resourceVersion): the wait starts again.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(e.step(Some(&lease("6", "a")), t1), Step::Wait);
        assert_eq!(
            e.step(Some(&lease("6", "a")), t1 + Duration::from_secs(14)),
            Step::Wait
        );
        assert_eq!(
            e.step(Some(&lease("6", "a")), t1 + D),
            Step::TakeOver {
                resource_version: "6".into(),
                transitions: 2
            }
        );
        // Released: taken at once.
        let mut released = lease("7", "");
        released.holder = None;
        assert!(matches!(
            Election::new("c", D).step(Some(&released), t0),
            Step::TakeOver { .. }
        ));
    }

    #[test]
    fn seeing_another_holder_ends_leading() {
        let t0 = Instant::now();
        let mut e = Election::new("a", D);
        e.won(t0);
        assert_eq!(e.step(Some(&lease("9", "b")), t0), Step::Wait);
        assert!(!e.leading(t0));
    }
}
