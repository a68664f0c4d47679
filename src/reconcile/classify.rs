//! The pure part of reconciliation: is a channel-reported value our own echo, in sync, or a
//! discrepancy, and of which class. No I/O, no clock: the caller passes what it observed.

use crate::propagation::ListingSync;
use serde::{Deserialize, Serialize};

/// The class of a discrepancy (DESIGN.md §3 rule 7); also the `class` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyClass {
    /// A push is queued or in flight, or the ledger moved while we looked: it will settle.
    InFlight,
    /// Someone changed the value on the channel (admin, another app).
    ManualEdit,
    /// We pushed a value and got an ack, but the channel went back to the value before it.
    LostUpdate,
    /// The channel reports a listing we do not map.
    UnknownListing,
    /// A compare-and-set conflict showed the channel lowered the listing itself, and
    /// nothing explained it within the settle window while no order poll since could
    /// confirm the shop's orders: an order that never reached us is the likely cause, so
    /// the listing stays at the channel's lower value (raising it could oversell).
    LostOrder,
}

impl DiscrepancyClass {
    /// The bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::ManualEdit => "manual_edit",
            Self::LostUpdate => "lost_update",
            Self::UnknownListing => "unknown_listing",
            Self::LostOrder => "lost_order",
        }
    }

    /// Whether re-pushing the ledger's ATP is the cure.
    pub fn healable(self) -> bool {
        matches!(self, Self::ManualEdit | Self::LostUpdate)
    }
}

/// What the caller observed about one listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The channel maps the listing to one of our SKUs.
    pub mapped: bool,
    /// What the channel reports (`None`: not stocked / untracked).
    pub channel_value: Option<i64>,
    /// Propagation's view of the listing.
    pub sync: ListingSync,
    /// The ledger's ATP for the channel, when read.
    pub ledger_atp: Option<u64>,
    /// The ledger's sequence number moved between two reads around the settle wait.
    pub ledger_moving: bool,
    /// The value the channel held before our last acknowledged push (`changeFromQuantity`).
    pub value_before_last_push: Option<i64>,
    /// Milliseconds since our last acknowledged push, when known.
    pub since_last_push_ms: Option<u64>,
    /// The echo window, in milliseconds.
    pub echo_window_ms: u64,
}

/// The verdict on one observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The value is what we pushed (or are pushing) within the echo window.
    Echo,
    /// The value agrees with what we pushed or with the ledger.
    InSync,
    /// A discrepancy of this class.
    Discrepancy(DiscrepancyClass),
}

fn same(value: Option<i64>, ours: Option<u64>) -> bool {
    matches!((value, ours), (Some(v), Some(o)) if i64::try_from(o) == Ok(v))
}

/// Classifies one observation (rules in the module docs of `reconcile`).
pub fn classify(observation: &Observation) -> Verdict {
    if !observation.mapped {
        return Verdict::Discrepancy(DiscrepancyClass::UnknownListing);
    }
    let value = observation.channel_value;
    let sync = &observation.sync;
    if same(value, sync.in_flight) || same(value, sync.queued) {
        return Verdict::Echo;
    }
    if same(value, sync.last_pushed) {
        let recent = observation
            .since_last_push_ms
            .is_some_and(|ms| ms <= observation.echo_window_ms);
        return if recent {
            Verdict::Echo
        } else {
            Verdict::InSync
        };
    }
    if same(value, observation.ledger_atp) {
        return Verdict::InSync;
    }
    if sync.queued.is_some() || sync.in_flight.is_some() || observation.ledger_moving {
        return Verdict::Discrepancy(DiscrepancyClass::InFlight);
    }
    if sync.last_pushed.is_some() && value.is_some() && observation.value_before_last_push == value
    {
        return Verdict::Discrepancy(DiscrepancyClass::LostUpdate);
    }
    Verdict::Discrepancy(DiscrepancyClass::ManualEdit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(value: u64, since_ms: u64) -> Observation {
        Observation {
            mapped: true,
            sync: ListingSync {
                last_pushed: Some(value),
                ..ListingSync::default()
            },
            since_last_push_ms: Some(since_ms),
            echo_window_ms: 1_000,
            ..Observation::default()
        }
    }

    #[test]
    fn our_own_value_is_an_echo_within_the_window_and_in_sync_after_it() {
        let mut seen = pushed(12, 200);
        seen.channel_value = Some(12);
        assert_eq!(classify(&seen), Verdict::Echo);
        seen.since_last_push_ms = Some(5_000);
        assert_eq!(classify(&seen), Verdict::InSync);
    }

    #[test]
    fn a_value_equal_to_a_push_in_flight_or_queued_is_an_echo() {
        let mut seen = pushed(12, 200);
        seen.sync.in_flight = Some(9);
        seen.channel_value = Some(9);
        assert_eq!(classify(&seen), Verdict::Echo);
        seen.sync.in_flight = None;
        seen.sync.queued = Some(9);
        assert_eq!(classify(&seen), Verdict::Echo);
    }

    #[test]
    fn a_foreign_value_is_in_flight_while_work_is_pending_or_the_ledger_moves() {
        let mut seen = pushed(12, 200);
        seen.channel_value = Some(3);
        seen.sync.queued = Some(11);
        assert_eq!(
            classify(&seen),
            Verdict::Discrepancy(DiscrepancyClass::InFlight)
        );
        seen.sync.queued = None;
        seen.ledger_moving = true;
        assert_eq!(
            classify(&seen),
            Verdict::Discrepancy(DiscrepancyClass::InFlight)
        );
    }

    #[test]
    fn a_settled_foreign_value_is_a_manual_edit_or_a_lost_update() {
        let mut seen = pushed(12, 60_000);
        seen.ledger_atp = Some(12);
        seen.channel_value = Some(40);
        assert_eq!(
            classify(&seen),
            Verdict::Discrepancy(DiscrepancyClass::ManualEdit)
        );
        seen.value_before_last_push = Some(40);
        assert_eq!(
            classify(&seen),
            Verdict::Discrepancy(DiscrepancyClass::LostUpdate)
        );
        seen.ledger_atp = Some(40);
        assert_eq!(classify(&seen), Verdict::InSync);
    }

    #[test]
    fn an_unmapped_listing_is_unknown() {
        let seen = Observation {
            channel_value: Some(1),
            ..Observation::default()
        };
        assert_eq!(
            classify(&seen),
            Verdict::Discrepancy(DiscrepancyClass::UnknownListing)
        );
        assert!(!DiscrepancyClass::UnknownListing.healable());
        assert!(DiscrepancyClass::ManualEdit.healable());
    }
}
