//! The in-memory size of a SKU's state: its inline size plus every heap allocation it owns,
//! for the two shapes issue 11 budgets (one receipt; a realistic week of movements).
//!
//! The heap part is measured with a counting global allocator: the bytes this thread has
//! allocated and not freed while the state was built (the movements are made before and
//! dropped after, so only what the state keeps is left). That includes the spare capacity
//! of its vectors, which a deep-size walk of `len()` would miss; it excludes the allocator's
//! own rounding and headers. Print the figures with
//! `cargo test --release --test state_size -- --nocapture`.

// A test target sees every dependency and dev-dependency; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use stocksync::domain::{ApplyContext, Movement, MovementKind, SCHEMA_VERSION, SkuState};

/// Counts the live heap bytes of the current thread, then defers to the system allocator.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

// SAFETY: every call is forwarded unchanged to `System`; only a thread-local counter is
// updated besides, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: as for `alloc`; `ptr` and `layout` come from an earlier allocation here.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DAY_MS: i64 = 86_400_000;
const SKU: &str = "SKU-000123";

fn movement(n: usize, at_ms: i64, kind: MovementKind) -> Movement {
    Movement {
        schema_version: SCHEMA_VERSION,
        sku: SKU.into(),
        idempotency_key: format!("k{n}"),
        source: "test".into(),
        occurred_at_ms: Some(at_ms),
        kind,
    }
}

/// One receipt at one location.
fn one_receipt() -> Vec<Movement> {
    vec![movement(
        0,
        0,
        MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 10,
        },
    )]
}

/// A realistic week at two locations, all inside the 7-day window: 30 receipts, 40 sales
/// (one order line each), 25 of them shipped in full, 5 cancelled, 10 still open, and one
/// count. Movements are spread evenly over the week in time order.
fn week() -> Vec<Movement> {
    let locations = ["WH-NORTH", "STORE-0042"];
    let mut kinds = Vec::new();
    for i in 0..30 {
        kinds.push(MovementKind::Receipt {
            location: locations[i % 2].into(),
            quantity: 20,
        });
        if i < 20 {
            for j in [2 * i, 2 * i + 1] {
                kinds.push(MovementKind::Sale {
                    reservation: format!("shopify:5550{j:03}:1"),
                    quantity: 2,
                    location: Some(locations[j % 2].into()),
                    route: vec![],
                });
            }
        }
        // Ship or cancel the order line sold five steps earlier.
        if (3..33).contains(&i) {
            let j = i - 3;
            let reservation = format!("shopify:5550{j:03}:1");
            kinds.push(if j < 25 {
                MovementKind::Fulfilment {
                    reservation,
                    quantity: 2,
                    location: None,
                }
            } else {
                MovementKind::Cancellation {
                    reservation,
                    quantity: None,
                    reason: None,
                    write_off: false,
                }
            });
        }
    }
    // The last two cancellations, and a count at the first location.
    for j in [27, 28, 29] {
        kinds.push(MovementKind::Cancellation {
            reservation: format!("shopify:5550{j:03}:1"),
            quantity: None,
            reason: None,
            write_off: false,
        });
    }
    kinds.push(MovementKind::Count {
        location: locations[0].into(),
        on_hand: Some(200),
        watermark: 3 * DAY_MS,
        basis: stocksync::domain::CountBasis::Physical,
        booked: None,
    });
    let step = 7 * DAY_MS / kinds.len() as i64;
    kinds
        .into_iter()
        .enumerate()
        .map(|(n, kind)| movement(n, n as i64 * step, kind))
        .collect()
}

/// Applies `movements` to a new state and returns it with the heap bytes it owns.
fn build(movements: &[Movement]) -> (SkuState, isize) {
    let context = ApplyContext {
        closed_line_retention_ms: 7 * DAY_MS,
        ..ApplyContext::strict()
    };
    let before = LIVE.with(Cell::get);
    let mut state = SkuState::new(SKU.into());
    for (n, movement) in movements.iter().enumerate() {
        state
            .apply_with(movement, n as u64 + 1, &context)
            .expect("applies");
    }
    let heap = LIVE.with(Cell::get) - before;
    (state, heap)
}

#[test]
fn a_sku_state_stays_small() {
    let inline = std::mem::size_of::<SkuState>() as isize;
    let (receipt, receipt_heap) = build(&one_receipt());
    assert_eq!(receipt.seq, 1);
    let week_movements = week();
    let (week_state, week_heap) = build(&week_movements);
    assert_eq!(week_state.seq, week_movements.len() as u64);
    let open = week_state
        .reservations
        .values()
        .filter(|line| line.open() > 0)
        .count();
    assert_eq!(open, 10, "the week leaves ten order lines open");
    let journal: usize = week_state
        .locations
        .values()
        .map(|stock| stock.journal.capacity())
        .sum();
    println!(
        "week breakdown: {} locations of {} + {} bytes; {} lines of {} + {} bytes; \
         {} closed-line queue entries (room for {}) of {} bytes; \
         {journal} journal entries of {} bytes (room)",
        week_state.locations.len(),
        std::mem::size_of::<stocksync::domain::LocationId>(),
        std::mem::size_of::<stocksync::domain::LocationStock>(),
        week_state.reservations.len(),
        std::mem::size_of_val(week_state.reservations.keys().next().expect("lines")),
        std::mem::size_of::<stocksync::domain::Reservation>(),
        week_state.closed_lines.len(),
        week_state.closed_lines.capacity(),
        std::mem::size_of_val(week_state.closed_lines.front().expect("closed lines")),
        std::mem::size_of::<(i64, i64)>(),
    );
    println!(
        "SkuState inline: {inline} bytes\n\
         one receipt:  {receipt_heap} heap + {inline} inline = {} bytes\n\
         a week ({} movements): {week_heap} heap + {inline} inline = {} bytes",
        receipt_heap + inline,
        week_movements.len(),
        week_heap + inline,
    );
    // Budgets with a little margin (see BENCHMARKS.md, "SKU state size"), so growth is seen.
    assert!(
        receipt_heap + inline <= 320,
        "one receipt: {receipt_heap} + {inline}"
    );
    // Issue 9 added per-line accounting (returned units and the last edit version: 24
    // bytes a line, 960 bytes over the week's 40 lines); the budget grew by as much.
    assert!(
        week_heap + inline <= 8_960,
        "a week: {week_heap} + {inline}"
    );
}
