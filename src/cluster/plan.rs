//! The division of partitions among live instances, and what one coordinator round does
//! about it: pure functions of what the store's leases say, tested without a store.
//!
//! Owns: [`desired_owner`], [`plan`], and their channel siblings [`desired_leader`] and
//! [`plan_channels`] (one pusher per channel: the same rules over the channel leases).
//!
//! May depend on: `store` lease types.

use crate::store::Lease;

/// The member that should own `partition`: the live member ids sorted ascending, and
/// partition `p` goes to the `p mod n`-th. Every instance computes the same answer from the
/// same member list, and the partitions are spread evenly (counts differ by at most one).
/// `None` when no member is live.
pub fn desired_owner(partition: u32, live_members: &[String]) -> Option<&str> {
    if live_members.is_empty() {
        return None;
    }
    live_members
        .get(partition as usize % live_members.len())
        .map(String::as_str)
}

/// The member that should lead channel number `channel` (channels in config order): the
/// live member ids sorted ascending, channel `i` goes to the `i mod n`-th, so channels
/// spread over the instances. `None` when no member is live.
pub fn desired_leader(channel: usize, live_members: &[String]) -> Option<&str> {
    if live_members.is_empty() {
        return None;
    }
    live_members
        .get(channel % live_members.len())
        .map(String::as_str)
}

/// What this instance should do this round, channel by channel, with the partitions'
/// rules ([`plan`]): a [`Step`]'s number is the channel's index in config order.
///
/// - `leases[i]`: channel `i`'s lease (`channel/<id>`) as read this round (`None`: never
///   taken);
/// - `held[i]`: the epoch this instance leads channel `i` at (0: not led here).
///
/// Led and still ours: renew; free (never taken, released, expired) and ours by
/// [`desired_leader`]: acquire; led here but the division gives it to another live member:
/// hand over; led here by our record but the store says otherwise: lost.
pub fn plan_channels(
    me: &str,
    token: &str,
    now_ms: i64,
    live_members: &[String],
    leases: &[Option<Lease>],
    held: &[u64],
) -> Vec<Step> {
    // Channel i's leader is the (i mod n)-th member, exactly as partition i's owner.
    debug_assert!((0..held.len()).all(|index| {
        desired_leader(index, live_members) == desired_owner(index as u32, live_members)
    }));
    plan(me, token, now_ms, live_members, leases, held)
}

/// One thing a coordinator round does for a partition (or, from [`plan_channels`], a
/// channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Held here and still ours to hold: extend the lease.
    Renew(u32),
    /// Free (never taken, released, or expired) and ours by the division: take it.
    Acquire(u32),
    /// Held here but the division gives it to another live member: stop admitting,
    /// flush, evict, release the lease.
    HandOver(u32),
    /// Held here by our record, but the store says another owner (or epoch) has it now:
    /// forget it and evict its SKUs.
    Lost(u32),
}

/// What this instance should do this round, partition by partition.
///
/// - `me`: this instance's member id; `token`: the owner string its leases carry;
/// - `live_members`: the member ids whose member lease is unexpired, sorted ascending;
/// - `leases[p]`: partition `p`'s lease as read this round (`None`: never taken);
/// - `held[p]`: the epoch this instance holds `p` at (0: not held).
pub fn plan(
    me: &str,
    token: &str,
    now_ms: i64,
    live_members: &[String],
    leases: &[Option<Lease>],
    held: &[u64],
) -> Vec<Step> {
    let mut steps = Vec::new();
    for (index, epoch) in held.iter().enumerate() {
        let partition = index as u32;
        let lease = leases.get(index).and_then(Option::as_ref);
        let desired = desired_owner(partition, live_members);
        if *epoch > 0 {
            let still_ours =
                lease.is_some_and(|lease| lease.owner == token && lease.epoch == *epoch);
            if !still_ours {
                steps.push(Step::Lost(partition));
            } else if desired.is_some_and(|owner| owner != me) {
                steps.push(Step::HandOver(partition));
            } else {
                steps.push(Step::Renew(partition));
            }
        } else if desired == Some(me) {
            let free =
                lease.is_none_or(|lease| lease.expires_at_ms <= now_ms || lease.owner == token);
            if free {
                steps.push(Step::Acquire(partition));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lease(partition: u32, owner: &str, epoch: u64, expires_at_ms: i64) -> Option<Lease> {
        Some(Lease {
            scope: format!("movements/{partition}"),
            owner: owner.to_owned(),
            epoch,
            expires_at_ms,
            payload: String::new(),
        })
    }

    fn members(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn free_partitions_of_ours_are_acquired_and_others_left_alone() {
        let live = members(&["a", "b"]);
        let leases = vec![
            None,
            None,
            lease(2, "b#1", 3, 5_000),
            lease(3, "x#9", 4, 900),
        ];
        let steps = plan("a", "a#1", 1_000, &live, &leases, &[0, 0, 0, 0]);
        // 0 and 2 are a's by the division; 2 is held by b unexpired, so only 0 now.
        assert_eq!(steps, vec![Step::Acquire(0)]);
        let steps = plan("b", "b#1", 1_000, &live, &leases, &[0, 0, 0, 0]);
        // 1 is free; 3 expired at 900 (its owner died): both taken by b.
        assert_eq!(steps, vec![Step::Acquire(1), Step::Acquire(3)]);
    }

    #[test]
    fn held_partitions_are_renewed_handed_over_or_found_lost() {
        let live = members(&["a", "b"]);
        let leases = vec![
            lease(0, "a#1", 2, 5_000),
            lease(1, "a#1", 2, 5_000),
            lease(2, "c#4", 3, 5_000),
        ];
        let steps = plan("a", "a#1", 1_000, &live, &leases, &[2, 2, 2]);
        assert_eq!(
            steps,
            vec![Step::Renew(0), Step::HandOver(1), Step::Lost(2)],
            "1 belongs to b now; 2 was taken over by c"
        );
        // An epoch that moved on is lost even when the owner string matches.
        let steps = plan("a", "a#1", 1_000, &live, &leases[..1], &[1]);
        assert_eq!(steps, vec![Step::Lost(0)]);
    }

    fn channel_lease(channel: &str, owner: &str, epoch: u64, expires_at_ms: i64) -> Option<Lease> {
        Some(Lease {
            scope: format!("channel/{channel}"),
            owner: owner.to_owned(),
            epoch,
            expires_at_ms,
            payload: format!("http://{owner}"),
        })
    }

    #[test]
    fn channels_spread_over_the_members_in_config_order() {
        let live = members(&["a", "b"]);
        let leaders: Vec<&str> = (0..3)
            .map(|channel| desired_leader(channel, &live).unwrap())
            .collect();
        assert_eq!(leaders, vec!["a", "b", "a"]);
        assert_eq!(desired_leader(0, &[]), None);
        // Nobody leads yet: a takes 0 and 2, b takes 1.
        let leases = vec![None, None, None];
        let free = [0, 0, 0];
        assert_eq!(
            plan_channels("a", "a#1", 1_000, &live, &leases, &free),
            vec![Step::Acquire(0), Step::Acquire(2)]
        );
        assert_eq!(
            plan_channels("b", "b#1", 1_000, &live, &leases, &free),
            vec![Step::Acquire(1)]
        );
    }

    #[test]
    fn a_channel_moves_by_handover_or_after_its_leader_expired_never_while_led() {
        // a alone led every channel; b arrives.
        let leases = vec![
            channel_lease("shop", "a#1", 3, 5_000),
            channel_lease("bol", "a#1", 2, 5_000),
        ];
        let live = members(&["a", "b"]);
        assert_eq!(
            plan_channels("a", "a#1", 1_000, &live, &leases, &[3, 2]),
            vec![Step::Renew(0), Step::HandOver(1)],
            "bol is b's now: a stops pushing and releases it"
        );
        assert_eq!(
            plan_channels("b", "b#1", 1_000, &live, &leases, &[0, 0]),
            Vec::new(),
            "b waits until a released bol (its lease is unexpired)"
        );
        // a released it (expires_at 0): b takes it.
        let released = vec![leases[0].clone(), channel_lease("bol", "a#1", 2, 0)];
        assert_eq!(
            plan_channels("b", "b#1", 1_000, &live, &released, &[0, 0]),
            vec![Step::Acquire(1)]
        );
        // a was killed: its leases expire and b, alone now, takes both.
        let alone = members(&["b"]);
        assert_eq!(
            plan_channels("b", "b#1", 9_000, &alone, &leases, &[0, 0]),
            vec![Step::Acquire(0), Step::Acquire(1)]
        );
        // a paused past its session, b took shop at a new epoch: a finds it lost.
        let taken = vec![channel_lease("shop", "b#1", 4, 20_000), leases[1].clone()];
        assert_eq!(
            plan_channels("a", "a#1", 10_000, &live, &taken, &[3, 0]),
            vec![Step::Lost(0)]
        );
    }

    proptest! {
        /// Any views of the members and leases: at most one member acquires a channel, never
        /// one another member leads unexpired, and a member that leads a channel the
        /// division gives to someone else hands it over or finds it lost (it never renews).
        #[test]
        fn at_most_one_leader_per_channel(
            count in 1usize..5, channels in 1usize..10, now in 0i64..10_000,
            holders in proptest::collection::vec(proptest::option::of((0usize..6, 1i64..10_000)), 10)
        ) {
            let live: Vec<String> = (0..count).map(|index| format!("m{index}")).collect();
            // Holders 0..count are live members, others are gone instances.
            let leases: Vec<Option<Lease>> = (0..channels)
                .map(|c| holders[c].and_then(|(holder, at)| {
                    channel_lease(&format!("c{c}"), &format!("m{holder}#1"), 1, at)
                }))
                .collect();
            let mut takers = vec![0u32; channels];
            for member in &live {
                let token = format!("{member}#1");
                let held: Vec<u64> = leases
                    .iter()
                    .map(|lease| match lease {
                        Some(lease) if lease.owner == token && lease.expires_at_ms > now => 1,
                        _ => 0,
                    })
                    .collect();
                for step in plan_channels(member, &token, now, &live, &leases, &held) {
                    match step {
                        Step::Acquire(c) => {
                            takers[c as usize] += 1;
                            let lease = leases[c as usize].as_ref();
                            prop_assert!(lease.is_none_or(|l| l.expires_at_ms <= now || l.owner == token));
                            prop_assert_eq!(desired_leader(c as usize, &live), Some(member.as_str()));
                        }
                        Step::Renew(c) => {
                            prop_assert_eq!(desired_leader(c as usize, &live), Some(member.as_str()));
                        }
                        Step::HandOver(c) | Step::Lost(c) => prop_assert!(held[c as usize] > 0),
                    }
                }
            }
            prop_assert!(takers.iter().all(|&n| n <= 1));
        }
    }

    proptest! {
        #[test]
        fn every_partition_has_exactly_one_desired_owner_and_the_spread_is_even(
            count in 1usize..8, partitions in 1u32..64
        ) {
            let live: Vec<String> = (0..count).map(|index| format!("m{index:02}")).collect();
            let mut per_member = vec![0u32; count];
            for partition in 0..partitions {
                let owner = desired_owner(partition, &live).unwrap();
                let index = live.iter().position(|id| id == owner).unwrap();
                per_member[index] += 1;
            }
            let (min, max) = (per_member.iter().min().unwrap(), per_member.iter().max().unwrap());
            prop_assert!(max - min <= 1);
            prop_assert_eq!(per_member.iter().sum::<u32>(), partitions);
        }

        #[test]
        fn two_members_with_the_same_view_never_both_acquire_a_partition(
            count in 1usize..5, partitions in 1u32..24, now in 0i64..10_000,
            expiries in proptest::collection::vec(proptest::option::of(0i64..10_000), 24)
        ) {
            let live: Vec<String> = (0..count).map(|index| format!("m{index}")).collect();
            let leases: Vec<Option<Lease>> = (0..partitions)
                .map(|p| expiries[p as usize].and_then(|at| lease(p, "gone#0", 1, at)))
                .collect();
            let held = vec![0u64; partitions as usize];
            let mut takers = vec![0u32; partitions as usize];
            for member in &live {
                for step in plan(member, &format!("{member}#1"), now, &live, &leases, &held) {
                    if let Step::Acquire(p) = step {
                        takers[p as usize] += 1;
                        // Never a partition whose lease someone else holds unexpired.
                        prop_assert!(leases[p as usize].as_ref().is_none_or(|l| l.expires_at_ms <= now));
                    }
                }
            }
            prop_assert!(takers.iter().all(|&n| n <= 1));
        }
    }
}
