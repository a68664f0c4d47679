//! Property tests of the SKU state machine against a simple reference model, and of its
//! invariants under every kind of movement (`SkuState::apply_with` checks each transition
//! in debug builds and panics on a violation; these tests also call the check directly).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const LOCATIONS: [&str; 3] = ["A", "B", "C"];

#[derive(Clone, Debug)]
enum Op {
    Receipt(usize, u64),
    Adjust(usize, i64),
    Sale(usize, u64),
    Hold(usize, u64),
    Cancel(usize),
    Ship(usize, u64),
    Return(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..20u64).prop_map(|(l, q)| Op::Receipt(l, q)),
        (0..3usize, -10..10i64)
            .prop_filter("non-zero", |(_, d)| *d != 0)
            .prop_map(|(l, d)| Op::Adjust(l, d)),
        (0..3usize, 1..8u64).prop_map(|(l, q)| Op::Sale(l, q)),
        (0..3usize, 1..8u64).prop_map(|(l, q)| Op::Hold(l, q)),
        (0..40usize).prop_map(Op::Cancel),
        (0..40usize, 1..5u64).prop_map(|(r, q)| Op::Ship(r, q)),
        (0..3usize, 1..5u64).prop_map(|(l, q)| Op::Return(l, q)),
    ]
}

/// The reference: plain integers per location and per reservation line.
#[derive(Default)]
struct Model {
    on_hand: BTreeMap<usize, i64>,
    reserved: BTreeMap<usize, i64>,
    /// reservation index → its line
    lines: Vec<ModelLine>,
    /// Reservation indexes cancelled before their sale or hold arrived (scenario S3).
    cancelled_first: std::collections::BTreeSet<usize>,
    /// Fulfilments waiting for their line, in arrival order: (line, units).
    parked: Vec<(usize, u64)>,
}

/// One line of the reference: location, ordered, shipped and cancelled units.
#[derive(Clone, Copy)]
struct ModelLine {
    location: usize,
    ordered: u64,
    shipped: u64,
    cancelled: u64,
}

impl ModelLine {
    fn open(&self) -> u64 {
        self.ordered - self.shipped - self.cancelled
    }
}

impl Model {
    /// Ships `q` of line `r` like the ledger (open units first, then cancelled ones);
    /// false (nothing changed) when the line is unknown or has not ordered that many.
    fn ship(&mut self, r: usize, q: u64) -> bool {
        let Some(line) = self.lines.get_mut(r) else {
            return false;
        };
        if q > line.open() + line.cancelled {
            return false;
        }
        let from_open = q.min(line.open());
        line.shipped += q;
        line.cancelled -= q - from_open;
        let l = line.location;
        *self.on_hand.entry(l).or_default() -= q as i64;
        *self.reserved.entry(l).or_default() -= from_open as i64;
        true
    }

    /// After line `r` changed: its parked fulfilments, in arrival order, until none applies.
    fn retry(&mut self, r: usize) {
        while let Some(index) = (0..self.parked.len()).find(|i| {
            let (line, q) = self.parked[*i];
            line == r
                && self
                    .lines
                    .get(r)
                    .is_some_and(|l| q <= l.open() + l.cancelled)
        }) {
            let (_, q) = self.parked.remove(index);
            assert!(self.ship(r, q));
        }
    }
}

fn movement(kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: "SKU-P".into(),
        idempotency_key: "k".into(),
        source: "proptest".into(),
        occurred_at_ms: None,
        kind,
    }
}

fn loc(index: usize) -> LocationId {
    LOCATIONS[index].into()
}

proptest! {
    #[test]
    fn the_state_machine_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut state = SkuState::new("SKU-P".into());
        let mut model = Model::default();
        for op in ops {
            let line_id = |i: usize| format!("r{i}");
            let kind = match &op {
                Op::Receipt(l, q) => MovementKind::Receipt { location: loc(*l), quantity: *q },
                Op::Adjust(l, d) => MovementKind::Adjustment { location: loc(*l), delta: *d, reason: "count".into() },
                Op::Sale(l, q) => MovementKind::Sale { reservation: line_id(model.lines.len()), quantity: *q, location: Some(loc(*l)), route: vec![] },
                Op::Hold(l, q) => MovementKind::Reservation { reservation: line_id(model.lines.len()), quantity: *q, location: Some(loc(*l)), route: vec![], expires_at_ms: None },
                Op::Cancel(r) => MovementKind::Cancellation { reservation: line_id(*r), quantity: None, reason: None, write_off: false },
                Op::Ship(r, q) => MovementKind::Fulfilment { reservation: line_id(*r), quantity: *q, location: None },
                Op::Return(l, q) => MovementKind::Return { location: Some(loc(*l)), quantity: *q, reservation: None, restock: true },
            };
            let before = state.clone();
            let result = state.apply(&movement(kind), state.seq + 1);
            match (&op, result) {
                (Op::Receipt(l, q), Ok(_)) | (Op::Return(l, q), Ok(_)) => *model.on_hand.entry(*l).or_default() += *q as i64,
                (Op::Adjust(l, d), Ok(_)) => *model.on_hand.entry(*l).or_default() += d,
                (Op::Sale(l, q), Ok(_)) | (Op::Hold(l, q), Ok(_)) if model.cancelled_first.contains(&model.lines.len()) => {
                    model.lines.push(ModelLine { location: *l, ordered: *q, shipped: 0, cancelled: *q });
                    model.retry(model.lines.len() - 1);
                }
                (Op::Sale(l, q), Ok(_)) => {
                    *model.reserved.entry(*l).or_default() += *q as i64;
                    model.lines.push(ModelLine { location: *l, ordered: *q, shipped: 0, cancelled: 0 });
                    model.retry(model.lines.len() - 1);
                }
                (Op::Hold(l, q), Ok(applied)) => {
                    let available = model.on_hand.get(l).copied().unwrap_or(0) - model.reserved.get(l).copied().unwrap_or(0);
                    prop_assert!(available >= *q as i64, "a hold was admitted beyond available");
                    prop_assert!(!applied.oversold);
                    *model.reserved.entry(*l).or_default() += *q as i64;
                    model.lines.push(ModelLine { location: *l, ordered: *q, shipped: 0, cancelled: 0 });
                    model.retry(model.lines.len() - 1);
                }
                (Op::Hold(l, q), Err(ApplyError::InsufficientStock { .. })) => {
                    let available = model.on_hand.get(l).copied().unwrap_or(0) - model.reserved.get(l).copied().unwrap_or(0);
                    prop_assert!(available < *q as i64, "a hold that fits was refused");
                    prop_assert_eq!(&state, &before, "a refused movement changed the state");
                }
                (Op::Cancel(r), Ok(_)) => {
                    match model.lines.get_mut(*r) {
                        Some(line) => {
                            let open = line.open();
                            line.cancelled += open;
                            *model.reserved.entry(line.location).or_default() -= open as i64;
                            model.retry(*r);
                        }
                        None => {
                            model.cancelled_first.insert(*r);
                        }
                    }
                }
                (Op::Ship(r, q), Ok(applied)) => {
                    if model.ship(*r, *q) {
                        prop_assert!(applied.parked.is_none(), "a shipment that can apply was parked");
                        model.retry(*r);
                    } else {
                        prop_assert!(applied.parked.is_some(), "a shipment beyond the line was applied");
                        model.parked.push((*r, *q));
                    }
                }
                (op, result) => prop_assert!(false, "unexpected {:?} for {:?}", result, op),
            }
            for (index, _) in LOCATIONS.iter().enumerate() {
                let stock = state.location(&loc(index));
                prop_assert_eq!(stock.on_hand, model.on_hand.get(&index).copied().unwrap_or(0));
                prop_assert_eq!(stock.reserved, model.reserved.get(&index).copied().unwrap_or(0));
                prop_assert_eq!(stock.available(), stock.on_hand - stock.reserved);
                prop_assert!(stock.reserved >= 0, "reserved went negative");
            }
            for level in state.levels() {
                prop_assert_eq!(level.available(), level.on_hand - level.reserved);
            }
            prop_assert_eq!(state.check_invariants(), Ok(()));
        }
    }

    #[test]
    fn commuting_movements_give_the_same_state_in_any_order(
        ops in proptest::collection::vec((0..3usize, -10..25i64), 1..40),
        seed in any::<u64>(),
    ) {
        let kinds: Vec<MovementKind> = ops
            .iter()
            .filter(|(_, d)| *d != 0)
            .map(|(l, d)| if *d > 0 {
                MovementKind::Receipt { location: loc(*l), quantity: *d as u64 }
            } else {
                MovementKind::Adjustment { location: loc(*l), delta: *d, reason: "shrinkage".into() }
            })
            .collect();
        let mut shuffled = kinds.clone();
        // A deterministic Fisher–Yates shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let run = |kinds: &[MovementKind]| {
            let mut state = SkuState::new("SKU-P".into());
            for kind in kinds {
                state.apply(&movement(kind.clone()), state.seq + 1).expect("receipts and adjustments apply");
            }
            state.levels().into_iter().map(|l| (l.location, l.on_hand, l.reserved)).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(&kinds), run(&shuffled));
    }

    #[test]
    fn a_sale_delivered_twice_reserves_once(quantity in 1..10u64, copies in 2..5usize) {
        let mut state = SkuState::new("SKU-P".into());
        state.apply(&movement(MovementKind::Receipt { location: loc(0), quantity: 20 }), 1).unwrap();
        for _ in 0..copies {
            let sale = MovementKind::Sale { reservation: "c:o:l".into(), quantity, location: Some(loc(0)), route: vec![] };
            state.apply(&movement(sale), state.seq + 1).unwrap();
        }
        prop_assert_eq!(state.location(&loc(0)).reserved, quantity as i64);
    }
}

/// Any movement of any kind, with small ids so that lines, transfers and purchase orders
/// are hit again (duplicates, unknown ids, over-shipments and over-receipts included).
#[derive(Clone, Debug)]
enum AnyOp {
    Receipt(usize, u64),
    Adjust(usize, i64),
    Count(usize, u64, i64),
    Inbound(usize, usize, u64),
    InboundReceipt(usize, u64),
    Dispatch(usize, usize, usize, u64),
    TransferReceipt(usize, u64),
    Sale(usize, Option<usize>, u64),
    Hold(usize, Option<usize>, u64, Option<i64>),
    Cancel(usize, Option<u64>),
    Ship(usize, u64),
    Return(usize, u64, Option<usize>, bool),
    Edit(usize, u64, i64, Option<usize>),
    Reassign(usize, usize),
    ShipAt(usize, u64, usize),
}

fn any_op() -> impl Strategy<Value = AnyOp> {
    let location = || 0..3usize;
    let line = || 0..10usize;
    prop_oneof![
        (location(), 1..20u64).prop_map(|(l, q)| AnyOp::Receipt(l, q)),
        (location(), -10..10i64)
            .prop_filter("non-zero", |(_, d)| *d != 0)
            .prop_map(|(l, d)| AnyOp::Adjust(l, d)),
        (location(), 0..30u64, 0..2_000i64).prop_map(|(l, q, w)| AnyOp::Count(l, q, w)),
        (0..3usize, location(), 0..10u64).prop_map(|(p, l, q)| AnyOp::Inbound(p, l, q)),
        (0..4usize, 1..8u64).prop_map(|(p, q)| AnyOp::InboundReceipt(p, q)),
        (0..4usize, location(), location(), 1..6u64)
            .prop_map(|(t, f, to, q)| AnyOp::Dispatch(t, f, to, q)),
        (0..4usize, 1..6u64).prop_map(|(t, q)| AnyOp::TransferReceipt(t, q)),
        (line(), proptest::option::of(location()), 1..8u64)
            .prop_map(|(r, l, q)| AnyOp::Sale(r, l, q)),
        (
            line(),
            proptest::option::of(location()),
            1..8u64,
            proptest::option::of(0..2_000i64)
        )
            .prop_map(|(r, l, q, e)| AnyOp::Hold(r, l, q, e)),
        (line(), proptest::option::of(1..5u64)).prop_map(|(r, q)| AnyOp::Cancel(r, q)),
        (line(), 1..6u64).prop_map(|(r, q)| AnyOp::Ship(r, q)),
        (
            location(),
            1..5u64,
            proptest::option::of(line()),
            any::<bool>()
        )
            .prop_map(|(l, q, r, restock)| AnyOp::Return(l, q, r, restock)),
        (line(), 0..8u64, 0..6i64, proptest::option::of(location()))
            .prop_map(|(r, q, v, l)| AnyOp::Edit(r, q, v, l)),
        (line(), location()).prop_map(|(r, l)| AnyOp::Reassign(r, l)),
        (line(), 1..6u64, location()).prop_map(|(r, q, l)| AnyOp::ShipAt(r, q, l)),
    ]
}

fn any_kind(op: &AnyOp) -> MovementKind {
    let line = |r: &usize| format!("r{r}");
    let route = || {
        LOCATIONS
            .iter()
            .map(|l| LocationId::from(*l))
            .collect::<Vec<_>>()
    };
    match op {
        AnyOp::Receipt(l, q) => MovementKind::Receipt {
            location: loc(*l),
            quantity: *q,
        },
        AnyOp::Adjust(l, d) => MovementKind::Adjustment {
            location: loc(*l),
            delta: *d,
            reason: "found".into(),
        },
        AnyOp::Count(l, q, w) => MovementKind::Count {
            location: loc(*l),
            on_hand: Some(*q),
            watermark: *w,
            basis: crate::domain::CountBasis::Physical,
            booked: None,
        },
        AnyOp::Inbound(p, l, q) => MovementKind::Inbound {
            purchase_order: format!("po{p}"),
            location: loc(*l),
            quantity: *q,
            expected_at_ms: 5_000,
        },
        AnyOp::InboundReceipt(p, q) => MovementKind::InboundReceipt {
            purchase_order: format!("po{p}"),
            quantity: *q,
        },
        AnyOp::Dispatch(t, f, to, q) => MovementKind::TransferDispatch {
            transfer: format!("t{t}"),
            from: loc(*f),
            to: loc(*to),
            quantity: *q,
        },
        AnyOp::TransferReceipt(t, q) => MovementKind::TransferReceipt {
            transfer: format!("t{t}"),
            quantity: *q,
            quarantine: None,
            rejected: 0,
            rejected_reason: None,
        },
        AnyOp::Sale(r, l, q) => MovementKind::Sale {
            reservation: line(r),
            quantity: *q,
            location: l.map(loc),
            route: route(),
        },
        AnyOp::Hold(r, l, q, e) => MovementKind::Reservation {
            reservation: line(r),
            quantity: *q,
            location: l.map(loc),
            route: route(),
            expires_at_ms: *e,
        },
        AnyOp::Cancel(r, q) => MovementKind::Cancellation {
            reservation: line(r),
            quantity: *q,
            reason: None,
            write_off: false,
        },
        AnyOp::Ship(r, q) => MovementKind::Fulfilment {
            reservation: line(r),
            quantity: *q,
            location: None,
        },
        AnyOp::Return(l, q, r, restock) => MovementKind::Return {
            // A return naming its line may leave the location to the line.
            location: (r.is_none() || *restock).then(|| loc(*l)),
            quantity: *q,
            reservation: r.as_ref().map(line),
            restock: *restock,
        },
        AnyOp::Edit(r, q, v, l) => MovementKind::OrderEdit {
            reservation: line(r),
            quantity: *q,
            version: *v,
            location: l.map(loc),
            route: route(),
        },
        AnyOp::Reassign(r, l) => MovementKind::Reassign {
            reservation: line(r),
            to: loc(*l),
        },
        AnyOp::ShipAt(r, q, l) => MovementKind::Fulfilment {
            reservation: line(r),
            quantity: *q,
            location: Some(loc(*l)),
        },
    }
}

proptest! {
    #[test]
    fn every_transition_keeps_the_invariants(
        ops in proptest::collection::vec((any_op(), 0..400i64), 1..120),
        backorder_at_c in any::<bool>(),
        most_stock in any::<bool>(),
        max_split_locations in 1..4usize,
        retention_ms in prop_oneof![Just(i64::MAX), 0..3_000i64],
    ) {
        let backorders: std::collections::BTreeSet<LocationId> =
            if backorder_at_c { [loc(2)].into() } else { Default::default() };
        let context = ApplyContext {
            backorder_locations: &backorders,
            routing: if most_stock { RoutingPolicy::MostStock } else { RoutingPolicy::Priority },
            max_split_locations,
            closed_line_retention_ms: retention_ms,
            ..ApplyContext::strict()
        };
        let mut state = SkuState::new("SKU-P".into());
        let mut now_ms = 0;
        for (op, step_ms) in ops {
            now_ms += step_ms;
            let movement = Movement { occurred_at_ms: Some(now_ms), ..movement(any_kind(&op)) };
            let before = state.clone();
            // In debug builds `apply_with` itself checks the transition and panics.
            let result = state.apply_with(&movement, state.seq + 1, &context);
            if result.is_err() {
                prop_assert_eq!(&state, &before, "a refused {:?} changed the state", op);
            }
            prop_assert_eq!(state.check_invariants(), Ok(()), "after {:?}", op);
            for (id, line) in &state.reservations {
                prop_assert!(line.fulfilled + line.released <= line.quantity, "{}: cancelled + shipped > ordered", id);
                prop_assert!(line.returned <= line.fulfilled, "{}: returned > shipped", id);
            }
            prop_assert!(state.parked.len() <= MAX_PARKED_PER_SKU);
        }
    }
}

proptest! {
    #[test]
    fn bundle_availability_never_exceeds_what_any_component_allows(
        parts in proptest::collection::vec((1..5u64, proptest::collection::vec((0..3usize, -5..40i64, 0..30i64), 0..4)), 1..4)
    ) {
        let components: Vec<Component> = (0..parts.len())
            .map(|i| Component { sku: format!("C{i}").into(), quantity: parts[i].0 })
            .collect();
        let levels: Vec<Vec<LocationLevel>> = parts
            .iter()
            .map(|(_, rows)| {
                let mut by_location: BTreeMap<usize, LocationLevel> = BTreeMap::new();
                for (l, on_hand, reserved) in rows {
                    by_location.insert(*l, LocationLevel { location: loc(*l), on_hand: *on_hand, reserved: *reserved, in_transit: 0, inbound: 0 });
                }
                by_location.into_values().collect()
            })
            .collect();
        let inputs: Vec<(&Component, &[LocationLevel])> = components.iter().zip(levels.iter().map(Vec::as_slice)).collect();
        for bundle in bundle_levels(&inputs) {
            prop_assert!(bundle.available() >= 0);
            for (component, component_levels) in &inputs {
                let available = component_levels
                    .iter()
                    .find(|level| level.location == bundle.location)
                    .map(LocationLevel::available)
                    .unwrap_or(0)
                    .max(0);
                prop_assert!(bundle.available() * component.quantity as i64 <= available,
                    "bundle at {} sells {} but {} allows {}", bundle.location, bundle.available(), component.sku, available);
            }
        }
    }
}

/// One intent in a generated natural history (turned into a valid movement, or skipped).
#[derive(Clone, Debug)]
enum Intent {
    Receipt(usize, u64),
    Sale(usize, usize, u64),
    Cancel(usize, Option<u64>),
    Ship(usize, u64),
    Return(usize, u64, bool, bool),
}

fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        (0..3usize, 1..10u64).prop_map(|(l, q)| Intent::Receipt(l, q)),
        (0..4usize, 0..3usize, 1..6u64).prop_map(|(r, l, q)| Intent::Sale(r, l, q)),
        (0..4usize, proptest::option::of(1..4u64)).prop_map(|(r, q)| Intent::Cancel(r, q)),
        (0..4usize, 1..6u64).prop_map(|(r, q)| Intent::Ship(r, q)),
        (0..4usize, 1..4u64, any::<bool>(), any::<bool>())
            .prop_map(|(r, q, restock, named)| Intent::Return(r, q, restock, named)),
    ]
}

/// The sources of issue 9 §2b: ERP (receipts), channel (sales and cancellations), WMS
/// (fulfilments), RMA (returns).
const SOURCES: usize = 4;

/// Turns intents into a natural history valid in its order (each line: one sale; a
/// cancellation or fulfilment of at most its open units; a return of at most its shipped,
/// not yet returned units), each movement tagged with its source.
fn natural_history(intents: &[Intent]) -> Vec<(usize, MovementKind)> {
    // line → (location, ordered, shipped, cancelled, returned)
    let mut lines: BTreeMap<usize, (usize, u64, u64, u64, u64)> = BTreeMap::new();
    let mut history = Vec::new();
    let id = |r: usize| format!("c:o:{r}");
    for intent in intents {
        match *intent {
            Intent::Receipt(l, q) => history.push((
                0,
                MovementKind::Receipt {
                    location: loc(l),
                    quantity: q,
                },
            )),
            Intent::Sale(r, l, q) if !lines.contains_key(&r) => {
                lines.insert(r, (l, q, 0, 0, 0));
                history.push((
                    1,
                    MovementKind::Sale {
                        reservation: id(r),
                        quantity: q,
                        location: Some(loc(l)),
                        route: vec![],
                    },
                ));
            }
            Intent::Cancel(r, q) => {
                let Some(line) = lines.get_mut(&r) else {
                    continue;
                };
                let open = line.1 - line.2 - line.3;
                if open == 0 {
                    continue;
                }
                let units = q.map_or(open, |q| q.min(open));
                line.3 += units;
                history.push((
                    1,
                    MovementKind::Cancellation {
                        reservation: id(r),
                        quantity: q.map(|_| units),
                        reason: None,
                        write_off: false,
                    },
                ));
            }
            Intent::Ship(r, q) => {
                let Some(line) = lines.get_mut(&r) else {
                    continue;
                };
                let open = line.1 - line.2 - line.3;
                if open == 0 {
                    continue;
                }
                let units = q.min(open);
                line.2 += units;
                history.push((
                    2,
                    MovementKind::Fulfilment {
                        reservation: id(r),
                        quantity: units,
                        location: None,
                    },
                ));
            }
            Intent::Return(r, q, restock, named) => {
                let Some(line) = lines.get_mut(&r) else {
                    continue;
                };
                let returnable = line.2 - line.4;
                if returnable == 0 {
                    continue;
                }
                let units = q.min(returnable);
                line.4 += units;
                history.push((
                    3,
                    MovementKind::Return {
                        location: named.then(|| loc(line.0)),
                        quantity: units,
                        reservation: Some(id(r)),
                        restock,
                    },
                ));
            }
            Intent::Sale(..) => {}
        }
    }
    history
}

/// Per-location (on-hand, reserved), per-line (ordered, shipped, cancelled, returned), and
/// the parked movements left, after applying `kinds` in order (none may be refused).
#[allow(clippy::type_complexity)]
fn settle(
    kinds: &[&MovementKind],
) -> Result<
    (
        Vec<(LocationId, i64, i64)>,
        Vec<(String, u64, u64, u64, u64)>,
        usize,
    ),
    String,
> {
    let mut state = SkuState::new("SKU-P".into());
    for kind in kinds {
        state
            .apply(&movement((*kind).clone()), state.seq + 1)
            .map_err(|error| format!("{kind:?} refused: {error}"))?;
    }
    let levels = state
        .levels()
        .into_iter()
        .map(|level| (level.location, level.on_hand, level.reserved))
        .filter(|(_, on_hand, reserved)| *on_hand != 0 || *reserved != 0)
        .collect();
    let lines = state
        .reservations
        .iter()
        .map(|(id, line)| {
            (
                id.to_string(),
                line.quantity,
                line.fulfilled,
                line.released,
                line.returned,
            )
        })
        .collect();
    Ok((levels, lines, state.parked.len()))
}

proptest! {
    // Histories are cheap; the races that matter (a return between a full cancellation
    // and the shipment that takes the cancelled units) need many cases to come up.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Issue 9 §2b: every interleaving that keeps each source's own order gives the same
    /// per-location on-hand/reserved and per-line ordered/shipped/cancelled/returned as the
    /// natural order.
    #[test]
    fn any_arrival_order_that_keeps_each_sources_order_gives_the_same_ledger(
        intents in proptest::collection::vec(intent(), 1..40),
        choices in proptest::collection::vec(0..SOURCES, 80),
    ) {
        let history = natural_history(&intents);
        let natural: Vec<&MovementKind> = history.iter().map(|(_, kind)| kind).collect();
        let expected = settle(&natural).map_err(TestCaseError::fail)?;
        prop_assert_eq!(expected.2, 0, "the natural order parks nothing for good");
        // Merge the sources' queues by the random choices (then whatever is left).
        let mut queues: Vec<std::collections::VecDeque<&MovementKind>> =
            vec![Default::default(); SOURCES];
        for (source, kind) in &history {
            queues[*source].push_back(kind);
        }
        let mut merged = Vec::with_capacity(history.len());
        for choice in choices.iter().copied().chain((0..SOURCES).cycle().take(SOURCES * history.len())) {
            if let Some(kind) = queues[choice].pop_front() {
                merged.push(kind);
            }
        }
        prop_assert_eq!(merged.len(), history.len());
        let got = settle(&merged).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, expected);
    }
}
