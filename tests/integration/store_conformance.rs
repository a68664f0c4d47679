//! The store conformance suite (`stocksync::store::conformance`) against every backend:
//! one test per check per backend, named `store_conformance::BACKEND::CHECK`.
//!
//! `embedded::` always runs; `postgres::` runs when `STOCKSYNC_TEST_POSTGRES` names a
//! database (every check makes its own schema in it; `scripts/test.sh` sets it), and
//! `scylla::` when `STOCKSYNC_TEST_SCYLLA=host:port` names a ScyllaDB node (every check
//! makes its own keyspace). Without its variable a test writes `skipped: BACKEND
//! conformance CHECK (VARIABLE not set)` to stderr and passes; `scripts/test.sh` sums those
//! lines up per backend after the run.
//!
//! `crash_mid_group_commit` starts the real binary's hidden `store-crash-writer`
//! subcommand against the backend and SIGKILLs it [`CRASH_ROUNDS`] times.
//!
//! Run one backend with `cargo test --test integration store_conformance::postgres::`.

use std::path::Path;
use stocksync::config::StoreBackend;
use stocksync::store::conformance::{self, StoreFactory, crash};

/// Kill rounds of the crash check (each: start the writer, kill it at a random moment,
/// reopen and check everything).
const CRASH_ROUNDS: u32 = 5;

macro_rules! backend_checks {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            backend_checks!(@each $backend;
                append_and_load,
                snapshot_and_replay,
                idempotency_key_expiry,
                event_retention,
                movement_hash_round_trip,
                offsets_only_move_forward,
                pushed_values_upsert,
                history_paging,
                push_log_query_and_prune,
                config_audit,
                hold_expiries,
                reservations_keep_first_request_and_refusal,
                order_lines_and_dead_letters,
                outcomes_in_history,
                list_skus_paging,
                load_skus_in_order,
                concurrent_writers,
                duplicate_seq_fails_the_batch,
                fencing_refuses_stale_epochs,
                concurrent_acquire_epoch,
                lease_grant_renew_and_take_over,
                lease_release,
                acquire_epoch_overrides_a_lease,
                lease_epoch_fences_commits,
                concurrent_lease_takers,
                leases_by_prefix,
                lease_limits,
                close_and_reopen
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn crash_mid_group_commit() {
                let Some(factory) =
                    StoreFactory::for_test(&$backend, "conformance crash_mid_group_commit")
                else {
                    return;
                };
                let binary = Path::new(env!("CARGO_BIN_EXE_stocksync"));
                let findings = crash::crash_mid_group_commit(&factory, binary, CRASH_ROUNDS).await;
                // Whether a kill landed between a durable write and its acknowledgement is
                // luck; reported, not asserted.
                println!(
                    "{} crash check: {} rounds, {} events, durable but unacknowledged in {} rounds",
                    factory.backend().name(),
                    CRASH_ROUNDS,
                    findings.events,
                    findings.durable_unacknowledged()
                );
                assert_eq!(findings.present.len(), CRASH_ROUNDS as usize);
            }
        }
    };
    (@each $backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(factory) =
                    StoreFactory::for_test(&$backend, concat!("conformance ", stringify!($check)))
                else {
                    return;
                };
                conformance::$check(&factory).await;
            }
        )*
    };
}

backend_checks!(embedded, StoreBackend::Embedded);
backend_checks!(postgres, StoreBackend::Postgres);
backend_checks!(scylla, StoreBackend::Scylla);
