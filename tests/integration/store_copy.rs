//! `stocksync store copy` and `stocksync migrate`, embedded → embedded: everything the
//! `Store` trait can read arrives, a second run copies nothing, a target holding a prefix of
//! a SKU's events continues from there, a target whose events differ from the source's gets
//! nothing written for that SKU (a conflict), a target of another store is refused, and
//! verification catches a tampered target (the library functions, and the CLI's exit codes).

use std::path::Path;
use std::sync::Arc;
use stocksync::store::embedded::EmbeddedStore;
use stocksync::store::{
    CommitBatch, ConfigAuditRecord, DeadLetterQuery, DeadLetterRecord, EventOutcomeRecord,
    EventQuery, EventRecord, HoldExpiryRecord, OffsetWatermark, PushLogQuery, PushLogRecord,
    PushedRecord, ReservationRecord, SnapshotRecord, Store,
};
use stocksync::store_admin::copy::{self, CopyOptions, CopyScope};

/// Events of the big SKU: more than one page of the copy's reads.
const BIG: u64 = 2_500;

fn event(sku: &str, seq: u64, key: &str) -> EventRecord {
    EventRecord {
        sku: sku.into(),
        seq,
        idempotency_key: key.into(),
        key_expires_at_ms: 5_000_000 + seq as i64,
        recorded_at_ms: 1_000 + seq as i64,
        movement: format!(r#"{{"sku":"{sku}","source":"wms","type":"receipt","n":{seq}}}"#)
            .into_bytes(),
        movement_hash: Some(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    }
}

fn push(sku: &str, at_ms: i64, quantity: u64) -> PushLogRecord {
    PushLogRecord {
        channel: "copy-web".into(),
        sku: sku.into(),
        quantity,
        change_from: Some(1),
        outcome: "accepted".into(),
        detail: None,
        requests: 1,
        at_ms,
    }
}

fn scope() -> CopyScope {
    CopyScope {
        groups: vec!["copy-group".into()],
        channels: vec!["copy-web".into()],
    }
}

fn options() -> CopyOptions {
    CopyOptions {
        batch_events: 300,
        progress: false,
        now_ms: 10_000,
    }
}

fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(path).unwrap())
}

/// A source with three SKUs (one over several pages), snapshots, keys with hashes, an
/// outcome, a dead letter, a reservation, offsets, pushed values, push log and config audit.
async fn seed(store: &dyn Store) {
    let mut events: Vec<EventRecord> = (1..=7)
        .map(|s| event("COPY-A", s, &format!("a-{s}")))
        .collect();
    events.push(event("COPY-B", 1, "res-1:0:reserve"));
    events.push(event("COPY-B", 2, "b-2"));
    events.push(event("COPY-B", 3, "b-3"));
    store
        .commit(CommitBatch {
            events,
            snapshots: vec![SnapshotRecord {
                sku: "COPY-A".into(),
                seq: 5,
                state: b"state-of-a-at-5".to_vec(),
            }],
            offsets: vec![
                OffsetWatermark {
                    group: "copy-group".into(),
                    topic: "stock.movements".into(),
                    partition: 0,
                    next_offset: 42,
                },
                OffsetWatermark {
                    group: "copy-group".into(),
                    topic: "stock.movements".into(),
                    partition: 1,
                    next_offset: 7,
                },
            ],
            hold_expiries: vec![HoldExpiryRecord {
                sku: "COPY-A".into(),
                next_expiry_ms: Some(90_000),
            }],
            reservations: vec![ReservationRecord {
                id: "res-1".into(),
                request_json: r#"{"lines":[]}"#.into(),
                refusal_json: None,
                created_at_ms: 1_001,
            }],
            dead_letters: vec![DeadLetterRecord {
                sku: "COPY-A".into(),
                parked_seq: 3,
                expired_seq: 6,
                idempotency_key: "a-3".into(),
                source: "wms".into(),
                kind: "fulfilment".into(),
                movement_json: "{}".into(),
                reason: "unknown order line".into(),
                parked_at_ms: 1_003,
                expired_at_ms: 1_006,
                keep_until_ms: i64::MAX / 2,
            }],
            outcomes: vec![EventOutcomeRecord {
                sku: "COPY-A".into(),
                seq: 3,
                outcome_json: r#"{"outcome":"parked","reason":"unknown order line"}"#.into(),
            }],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    for chunk in (1..=BIG).collect::<Vec<_>>().chunks(1_000) {
        store
            .commit(CommitBatch {
                events: chunk
                    .iter()
                    .map(|s| event("COPY-C", *s, &format!("c-{s}")))
                    .collect(),
                ..CommitBatch::default()
            })
            .await
            .unwrap();
    }
    store
        .commit(CommitBatch {
            snapshots: vec![SnapshotRecord {
                sku: "COPY-C".into(),
                seq: BIG - 10,
                state: b"state-of-c".to_vec(),
            }],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    store
        .record_pushed(&[PushedRecord {
            channel: "copy-web".into(),
            sku: "COPY-A".into(),
            quantity: 6,
            pushed_at_ms: 2_000,
        }])
        .await
        .unwrap();
    // Two answers in one millisecond, and a repeated row: the copy keeps them all.
    store
        .append_push_log(&[
            push("COPY-A", 3_000, 5),
            push("COPY-A", 3_001, 6),
            push("COPY-B", 3_001, 2),
            push("COPY-B", 3_001, 2),
            push("COPY-C", 3_500, 9),
        ])
        .await
        .unwrap();
    for (at_ms, action) in [(100, "loaded"), (200, "safety_stock")] {
        store
            .record_config_change(&ConfigAuditRecord {
                at_ms,
                action: action.into(),
                actor: "startup".into(),
                config_hash: format!("hash-{at_ms}"),
                config_json: "{}".into(),
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_copy_moves_everything_the_trait_reads_and_a_second_run_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("source.db"));
    let target = open(&dir.path().join("target.db"));
    seed(source.as_ref()).await;

    let report = copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert_eq!(report.skus, 3);
    assert_eq!(report.skus_copied, 3);
    assert_eq!(report.events, 7 + 3 + BIG);
    assert!(report.commits >= BIG / 300, "{report:?}");
    assert_eq!(report.push_log_rows, 5);
    assert_eq!(report.config_audit_rows, 2);
    assert_eq!(report.reservations, 1);

    let verified = copy::verify(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert!(verified.ok(), "{}", verified.render());
    assert_eq!(verified.skus_checked, 3);
    let events = verified
        .counts
        .iter()
        .find(|c| c.table == "events")
        .unwrap();
    assert_eq!((events.source, events.target), (7 + 3 + BIG, 7 + 3 + BIG));

    // The details the checksums do not cover.
    assert_eq!(
        target
            .find_idempotency_key_hash("COPY-A", "a-4", 0)
            .await
            .unwrap(),
        Some((4, event("COPY-A", 4, "a-4").movement_hash))
    );
    let history = target
        .query_events(&EventQuery {
            sku: Some("COPY-A".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(history.len(), 7);
    assert_eq!(history[2].event.key_expires_at_ms, 5_000_003);
    assert_eq!(history[2].event.recorded_at_ms, 1_003);
    assert!(history[2].outcome.as_deref().unwrap().contains("parked"));
    assert!(history[3].outcome.is_none());
    assert_eq!(
        target.offsets("copy-group").await.unwrap(),
        source.offsets("copy-group").await.unwrap()
    );
    assert_eq!(target.pushed("copy-web").await.unwrap()[0].quantity, 6);
    assert_eq!(
        target.hold_expiries(None, 10).await.unwrap(),
        source.hold_expiries(None, 10).await.unwrap()
    );
    assert_eq!(
        target.reservation("res-1").await.unwrap(),
        source.reservation("res-1").await.unwrap()
    );
    let dead = |store: Arc<dyn Store>| async move {
        store
            .dead_letters(&DeadLetterQuery {
                sku: None,
                limit: 10,
            })
            .await
            .unwrap()
    };
    assert_eq!(dead(target.clone()).await, dead(source.clone()).await);
    let all = PushLogQuery {
        limit: 100,
        ..PushLogQuery::default()
    };
    let mut copied_log = target.query_push_log(&all).await.unwrap();
    let mut source_log = source.query_push_log(&all).await.unwrap();
    copied_log.sort_by_key(|r| (r.at_ms, r.sku.clone()));
    source_log.sort_by_key(|r| (r.at_ms, r.sku.clone()));
    assert_eq!(copied_log, source_log);
    assert_eq!(
        target.config_changes(10).await.unwrap(),
        source.config_changes(10).await.unwrap()
    );

    // Run again (as after a kill at the very end): nothing is written twice.
    let again = copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert_eq!(again.skus_skipped, 3, "{again:?}");
    assert_eq!(
        (again.events, again.push_log_rows, again.config_audit_rows),
        (0, 0, 0)
    );
    let verified = copy::verify(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert!(verified.ok(), "{}", verified.render());
}

#[tokio::test]
async fn a_target_holding_a_prefix_continues_from_its_next_seq() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("source.db"));
    let target = open(&dir.path().join("target.db"));
    seed(source.as_ref()).await;
    // What a copy killed halfway leaves: COPY-C's first 1,200 events, nothing else.
    let prefix = source.events("COPY-C", 1, 1_200).await.unwrap();
    target
        .commit(CommitBatch {
            events: prefix,
            ..CommitBatch::default()
        })
        .await
        .unwrap();

    let report = copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert_eq!(report.events, 7 + 3 + BIG - 1_200, "{report:?}");
    let verified = copy::verify(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert!(verified.ok(), "{}", verified.render());
}

#[tokio::test]
async fn verification_lists_a_tampered_event_and_a_missing_row() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("source.db"));
    let target_path = dir.path().join("target.db");
    let target = open(&target_path);
    seed(source.as_ref()).await;
    copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    // Change one stored movement behind the store's back (same counts), and add a push-log
    // row the source does not have.
    let db = rusqlite::Connection::open(&target_path).unwrap();
    let changed = db
        .execute(
            "UPDATE events SET movement = 'tampered' WHERE sku = 'COPY-A' AND seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    target
        .append_push_log(&[push("COPY-A", 9_000, 1)])
        .await
        .unwrap();

    let verified = copy::verify(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert!(!verified.ok());
    let listed = verified.mismatches.join("\n");
    assert!(listed.contains("sku COPY-A: checksum differs"), "{listed}");
    assert!(
        listed.contains("push_log: 5 rows in the source, 6 in the target"),
        "{listed}"
    );
    assert_eq!(verified.mismatches.len(), 2, "{listed}");
    assert!(verified.render().contains("MISMATCH"));
}

fn config(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nbackend = \"embedded\"\npath = {:?}\n",
            dir.join(format!("{name}.db")).display().to_string()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_cli_migrates_copies_and_exits_1_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (config(dir.path(), "from"), config(dir.path(), "to"));
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stocksync"))
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, said) = run(&["migrate", "--config", from.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("migrated: backend embedded"), "{said}");
    {
        let source = open(&dir.path().join("from.db"));
        seed(source.as_ref()).await;
        source.close().await.unwrap();
    }
    let copy_args = [
        "store",
        "copy",
        "--from",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    let (code, said) = run(&copy_args);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("verified: source and target agree"), "{said}");

    let db = rusqlite::Connection::open(dir.path().join("to.db")).unwrap();
    db.execute(
        "UPDATE snapshots SET state = 'tampered' WHERE sku = 'COPY-C'",
        [],
    )
    .unwrap();
    drop(db);
    let (code, said) = run(&copy_args);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("sku COPY-C: checksum differs"), "{said}");
}

/// A target whose COPY-A has a different event at seq 1 than the source's.
async fn seed_conflicting_target(store: &dyn Store) {
    let mut other = event("COPY-A", 1, "someone-else-1");
    other.movement = br#"{"sku":"COPY-A","source":"elsewhere","type":"receipt"}"#.to_vec();
    store
        .commit(CommitBatch {
            events: vec![other],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_target_with_a_different_event_gets_nothing_for_that_sku() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("source.db"));
    let target = open(&dir.path().join("target.db"));
    seed(source.as_ref()).await;
    seed_conflicting_target(target.as_ref()).await;
    let before = target.events("COPY-A", 1, 100).await.unwrap();

    copy::check_target(source.as_ref(), target.as_ref(), 10_000)
        .await
        .expect("the target shares COPY-A with the source");
    let report = copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_eq!(report.conflicts[0].sku, "COPY-A");
    assert_eq!(report.conflicts[0].seq, 1);
    assert!(
        report.conflicts[0].reason.contains("someone-else-1"),
        "{report:?}"
    );
    // Nothing was written for COPY-A: not the source's later events, not its snapshot.
    assert_eq!(target.events("COPY-A", 1, 100).await.unwrap(), before);
    assert_eq!(
        target.load_sku("COPY-A", 10_000).await.unwrap().snapshot,
        None
    );
    // The other SKUs were copied whole.
    assert_eq!(report.events, 3 + BIG, "{report:?}");
    assert_eq!(
        target.events("COPY-C", 1, 10_000).await.unwrap(),
        source.events("COPY-C", 1, 10_000).await.unwrap()
    );
    // A target ahead of the source is a conflict too (its extra seq is not the source's).
    let extra = event("COPY-B", 4, "only-in-target");
    target
        .commit(CommitBatch {
            events: vec![extra],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let again = copy::copy(source.as_ref(), target.as_ref(), &scope(), &options())
        .await
        .unwrap();
    let skus: Vec<(&str, u64)> = again
        .conflicts
        .iter()
        .map(|c| (c.sku.as_str(), c.seq))
        .collect();
    assert_eq!(skus, vec![("COPY-A", 1), ("COPY-B", 4)], "{again:?}");
}

#[tokio::test]
async fn a_target_holding_only_unknown_skus_is_refused_and_an_empty_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let source = open(&dir.path().join("source.db"));
    let target = open(&dir.path().join("target.db"));
    seed(source.as_ref()).await;
    copy::check_target(source.as_ref(), target.as_ref(), 10_000)
        .await
        .expect("an empty target is fine");
    target
        .commit(CommitBatch {
            events: vec![event("UNRELATED-1", 1, "u-1")],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let refused = copy::check_target(source.as_ref(), target.as_ref(), 10_000)
        .await
        .expect_err("a target of another store");
    assert!(refused.to_string().contains("UNRELATED-1"), "{refused}");
}

#[tokio::test]
async fn the_cli_exits_1_on_a_conflicting_sku_and_2_on_an_unrelated_target() {
    let dir = tempfile::tempdir().unwrap();
    let from = config(dir.path(), "from");
    let (to, other) = (config(dir.path(), "to"), config(dir.path(), "other"));
    for (name, kind) in [("from", 0), ("to", 1), ("other", 2)] {
        let store = open(&dir.path().join(format!("{name}.db")));
        match kind {
            0 => seed(store.as_ref()).await,
            1 => seed_conflicting_target(store.as_ref()).await,
            _ => store
                .commit(CommitBatch {
                    events: vec![event("UNRELATED-1", 1, "u-1")],
                    ..CommitBatch::default()
                })
                .await
                .unwrap(),
        }
        store.close().await.unwrap();
    }
    let run = |to: &Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stocksync"))
            .args(["store", "copy", "--from", from.to_str().unwrap()])
            .args(["--to", to.to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, said) = run(&to);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("COPY-A: first difference at seq 1"), "{said}");
    let (code, said) = run(&other);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("none of them is in the source"), "{said}");
    let untouched = open(&dir.path().join("other.db"));
    assert_eq!(
        untouched.list_skus(None, 10).await.unwrap(),
        vec!["UNRELATED-1".to_owned()]
    );
}
