//! Leases: time-limited claims on an ownership scope, kept in the same rows as the scope's
//! fencing epoch ([`super::Store::acquire_epoch`], [`super::Fence`]).
//!
//! Owns: the vocabulary ([`Lease`], [`LeaseOutcome`]), the limits ([`MAX_SCOPE_BYTES`],
//! [`MAX_OWNER_BYTES`], [`MAX_LEASE_PAYLOAD_BYTES`], [`MAX_LEASES_LISTED`]), the argument
//! checks, and the one decision every backend applies inside its compare-and-set
//! ([`decide`]), so that the embedded, PostgreSQL and ScyllaDB stores grant, renew, take
//! over and refuse alike.
//!
//! Invariants: a scope has one row; its epoch starts at 1 and only grows; it grows exactly
//! when the holder changes (a renewal by the same owner keeps it), so a writer that fences
//! its commits with the epoch its lease was granted at is refused once anyone else holds
//! the scope. Time is the caller's (an injected clock in milliseconds since the Unix
//! epoch): a store never reads its own clock, so the clocks of the instances that share a
//! store must agree to well within the shortest TTL they use.
//!
//! May depend on: the `store` types.

use super::StoreError;
use serde::{Deserialize, Serialize};

/// Longest ownership scope (a lease's or a fence's), in bytes.
pub const MAX_SCOPE_BYTES: usize = 255;
/// Longest lease owner, in bytes.
pub const MAX_OWNER_BYTES: usize = 255;
/// Longest lease payload, in bytes.
pub const MAX_LEASE_PAYLOAD_BYTES: usize = 4_096;
/// Most leases one [`super::Store::leases`] call returns, whatever its `limit`.
pub const MAX_LEASES_LISTED: usize = 10_000;
/// The expiry [`super::Store::acquire_epoch`] leaves on its scope: its caller holds the
/// scope until it releases it ([`super::Store::release_lease`]) or someone acquires it
/// again, never by time.
pub const ACQUIRED_EXPIRES_AT_MS: i64 = i64::MAX;

/// A time-limited claim on an ownership scope (`movements/3`, `channel/shopify`,
/// `member/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The ownership scope; at most [`MAX_SCOPE_BYTES`].
    pub scope: String,
    /// Who holds (or last held) it; at most [`MAX_OWNER_BYTES`].
    pub owner: String,
    /// The scope's fencing epoch (1 and up): the epoch a [`super::Fence`] of the holder
    /// carries.
    pub epoch: u64,
    /// Until when the claim holds, in milliseconds since the Unix epoch (the callers'
    /// clock): it has expired when this is at or before the caller's now. 0 after a release
    /// (and for a scope only ever claimed by a build without leases);
    /// [`ACQUIRED_EXPIRES_AT_MS`] after [`super::Store::acquire_epoch`].
    pub expires_at_ms: i64,
    /// What the holder published with it (e.g. its advertised URL); at most
    /// [`MAX_LEASE_PAYLOAD_BYTES`].
    pub payload: String,
}

impl Lease {
    /// Whether the claim has lapsed at `now_ms` (expired or released).
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// The answer of [`super::Store::try_lease`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    /// The caller holds the scope now, with this lease (granted, renewed or taken over).
    Granted(Lease),
    /// Another owner holds the scope; this is its lease, unchanged by the call.
    Held(Lease),
}

impl LeaseOutcome {
    /// The lease, granted or held.
    pub fn lease(&self) -> &Lease {
        match self {
            LeaseOutcome::Granted(lease) | LeaseOutcome::Held(lease) => lease,
        }
    }

    /// Whether the caller got the lease.
    pub fn is_granted(&self) -> bool {
        matches!(self, LeaseOutcome::Granted(_))
    }
}

/// What [`super::Store::try_lease`] does to the scope's row, decided by [`decide`] from the
/// row as read inside the backend's compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No row: insert this lease (epoch 1); the caller is granted it.
    Insert(Lease),
    /// Replace the row read (`from`) by `to`; the caller is granted `to`. `to.epoch` is
    /// `from.epoch` for a renewal, one more for a takeover.
    Replace {
        /// The row as read (the compare-and-set's expected value).
        from: Lease,
        /// The row to write.
        to: Lease,
    },
    /// Another owner holds the scope: nothing changes.
    Held(Lease),
}

impl LeaseDecision {
    /// The answer to give once the decision took effect.
    pub fn outcome(&self) -> LeaseOutcome {
        match self {
            LeaseDecision::Insert(lease) | LeaseDecision::Replace { to: lease, .. } => {
                LeaseOutcome::Granted(lease.clone())
            }
            LeaseDecision::Held(lease) => LeaseOutcome::Held(lease.clone()),
        }
    }
}

fn invalid(operation: &'static str, message: String) -> StoreError {
    StoreError::Backend { operation, message }
}

/// Checks a scope: not empty, at most [`MAX_SCOPE_BYTES`].
///
/// Errors: [`StoreError::Backend`] for `operation`, naming the limit.
pub fn check_scope(operation: &'static str, scope: &str) -> Result<(), StoreError> {
    if scope.is_empty() {
        return Err(invalid(operation, "the scope is empty".to_owned()));
    }
    if scope.len() > MAX_SCOPE_BYTES {
        return Err(invalid(
            operation,
            format!(
                "the scope is {} bytes, at most {MAX_SCOPE_BYTES} are allowed",
                scope.len()
            ),
        ));
    }
    Ok(())
}

/// Checks an owner: not empty, at most [`MAX_OWNER_BYTES`].
///
/// Errors: [`StoreError::Backend`] for `operation`, naming the limit.
pub fn check_owner(operation: &'static str, owner: &str) -> Result<(), StoreError> {
    if owner.is_empty() {
        return Err(invalid(operation, "the owner is empty".to_owned()));
    }
    if owner.len() > MAX_OWNER_BYTES {
        return Err(invalid(
            operation,
            format!(
                "the owner is {} bytes, at most {MAX_OWNER_BYTES} are allowed",
                owner.len()
            ),
        ));
    }
    Ok(())
}

/// Checks the arguments of [`super::Store::try_lease`]: scope and owner as
/// [`check_scope`] and [`check_owner`], a payload of at most [`MAX_LEASE_PAYLOAD_BYTES`],
/// and `ttl_ms > 0`.
///
/// Errors: [`StoreError::Backend`] (operation `try_lease`) naming the limit.
pub fn check_request(
    scope: &str,
    owner: &str,
    payload: &str,
    ttl_ms: i64,
) -> Result<(), StoreError> {
    const OPERATION: &str = "try_lease";
    check_scope(OPERATION, scope)?;
    check_owner(OPERATION, owner)?;
    if payload.len() > MAX_LEASE_PAYLOAD_BYTES {
        return Err(invalid(
            OPERATION,
            format!(
                "the payload is {} bytes, at most {MAX_LEASE_PAYLOAD_BYTES} are allowed",
                payload.len()
            ),
        ));
    }
    if ttl_ms <= 0 {
        return Err(invalid(
            OPERATION,
            format!("ttl_ms is {ttl_ms}, it must be above 0"),
        ));
    }
    Ok(())
}

/// Checks a prefix of [`super::Store::leases`]: at most [`MAX_SCOPE_BYTES`] (it may be
/// empty: every scope).
///
/// Errors: [`StoreError::Backend`] (operation `leases`) naming the limit.
pub fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.len() > MAX_SCOPE_BYTES {
        return Err(invalid(
            "leases",
            format!(
                "the prefix is {} bytes, at most {MAX_SCOPE_BYTES} are allowed",
                prefix.len()
            ),
        ));
    }
    Ok(())
}

/// The row count a [`super::Store::leases`] call may return for `limit`.
pub fn listed(limit: usize) -> usize {
    limit.min(MAX_LEASES_LISTED)
}

/// `prefix` as a SQL `LIKE` pattern matching every string that starts with it, with `\` as
/// the escape character (`… LIKE ? ESCAPE '\'`): `%`, `_` and `\` in it match only
/// themselves.
pub fn like_prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The rule of [`super::Store::try_lease`], applied to the scope's row as read inside the
/// backend's compare-and-set (`current`; a row without lease columns reads with
/// `expires_at_ms` 0, expired). `now_ms` and `ttl_ms` as in `try_lease` (the arguments are
/// checked by [`check_request`] first):
/// - no row: insert epoch 1 for `owner`, expiring at `now_ms + ttl_ms`;
/// - held by `owner` (expired or not): the same epoch, the new expiry and payload
///   (renewal: nobody else wrote under a newer epoch meanwhile);
/// - held by another owner, expired or released (`expires_at_ms <= now_ms`): taken over
///   at epoch + 1;
/// - otherwise: held, nothing changes.
///
/// Errors: [`StoreError::Backend`] (operation `try_lease`) when the epoch would overflow.
pub fn decide(
    current: Option<Lease>,
    scope: &str,
    owner: &str,
    payload: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<LeaseDecision, StoreError> {
    let granted = |epoch| Lease {
        scope: scope.to_owned(),
        owner: owner.to_owned(),
        epoch,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        payload: payload.to_owned(),
    };
    let Some(from) = current else {
        return Ok(LeaseDecision::Insert(granted(1)));
    };
    let epoch = if from.owner == owner {
        from.epoch
    } else if from.expired_at(now_ms) {
        from.epoch.checked_add(1).ok_or_else(|| {
            invalid(
                "try_lease",
                format!("{scope}: the epoch {} cannot grow", from.epoch),
            )
        })?
    } else {
        return Ok(LeaseDecision::Held(from));
    };
    Ok(LeaseDecision::Replace {
        to: granted(epoch),
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: &str, epoch: u64, expires_at_ms: i64) -> Lease {
        Lease {
            scope: "channel/shopify".into(),
            owner: owner.into(),
            epoch,
            expires_at_ms,
            payload: "old".into(),
        }
    }

    fn decide_at(current: Option<Lease>, owner: &str, now_ms: i64) -> LeaseDecision {
        decide(current, "channel/shopify", owner, "new", now_ms, 1_000).unwrap()
    }

    #[test]
    fn a_new_scope_starts_at_epoch_one() {
        let decision = decide_at(None, "a", 5_000);
        assert_eq!(
            decision,
            LeaseDecision::Insert(Lease {
                scope: "channel/shopify".into(),
                owner: "a".into(),
                epoch: 1,
                expires_at_ms: 6_000,
                payload: "new".into(),
            })
        );
        assert!(decision.outcome().is_granted());
    }

    #[test]
    fn the_holder_renews_at_its_epoch_even_after_expiry() {
        for expires in [10_000, 5_000, 0] {
            let from = lease("a", 7, expires);
            match decide_at(Some(from.clone()), "a", 5_000) {
                LeaseDecision::Replace { from: read, to } => {
                    assert_eq!(read, from);
                    assert_eq!((to.epoch, to.expires_at_ms), (7, 6_000));
                    assert_eq!(to.payload, "new");
                }
                other => panic!("expected a renewal, got {other:?}"),
            }
        }
    }

    #[test]
    fn another_owner_is_held_until_expiry_then_takes_over_at_the_next_epoch() {
        let from = lease("a", 7, 5_000);
        assert_eq!(
            decide_at(Some(from.clone()), "b", 4_999),
            LeaseDecision::Held(from.clone())
        );
        assert!(
            !decide_at(Some(from.clone()), "b", 4_999)
                .outcome()
                .is_granted()
        );
        for now in [5_000, 9_000] {
            match decide_at(Some(from.clone()), "b", now) {
                LeaseDecision::Replace { to, .. } => {
                    assert_eq!((to.owner.as_str(), to.epoch), ("b", 8));
                    assert_eq!(to.expires_at_ms, now + 1_000);
                }
                other => panic!("expected a takeover, got {other:?}"),
            }
        }
        // Released (0) or acquired (never expires).
        assert!(matches!(
            decide_at(Some(lease("a", 7, 0)), "b", 1),
            LeaseDecision::Replace { .. }
        ));
        assert!(matches!(
            decide_at(
                Some(lease("a", 7, ACQUIRED_EXPIRES_AT_MS)),
                "b",
                i64::MAX - 1
            ),
            LeaseDecision::Held(_)
        ));
    }

    #[test]
    fn expiry_saturates_and_the_epoch_never_wraps() {
        let decision = decide(None, "s", "a", "", i64::MAX - 1, 10).unwrap();
        assert_eq!(decision.outcome().lease().expires_at_ms, i64::MAX);
        let error = decide(Some(lease("a", u64::MAX, 0)), "s", "b", "", 1, 1).unwrap_err();
        assert!(error.to_string().contains("cannot grow"), "{error}");
    }

    #[test]
    fn arguments_are_bounded() {
        let ok = |scope: &str, owner: &str, payload: &str, ttl| {
            check_request(scope, owner, payload, ttl).is_ok()
        };
        let at = |n: usize| "x".repeat(n);
        assert!(ok(&at(255), &at(255), &at(4_096), 1));
        assert!(!ok(&at(256), "a", "", 1));
        assert!(!ok("", "a", "", 1));
        assert!(!ok("s", &at(256), "", 1));
        assert!(!ok("s", "", "", 1));
        assert!(!ok("s", "a", &at(4_097), 1));
        assert!(!ok("s", "a", "", 0));
        assert!(!ok("s", "a", "", -5));
        let message = check_request("s", "a", &at(4_097), 1)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("4097") && message.contains("4096"),
            "{message}"
        );
        assert!(check_prefix("").is_ok());
        assert!(check_prefix(&at(256)).is_err());
        assert_eq!(listed(usize::MAX), MAX_LEASES_LISTED);
        assert_eq!(listed(3), 3);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix_pattern("channel/"), "channel/%");
        assert_eq!(like_prefix_pattern("a_b%c\\d"), "a\\_b\\%c\\\\d%");
        assert_eq!(like_prefix_pattern(""), "%");
    }
}
