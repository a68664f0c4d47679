//! Tests of the PostgreSQL backend against a real server: they run when
//! `STOCKSYNC_TEST_POSTGRES` holds a connection URL (`scripts/test.sh` sets it), each in a
//! fresh schema that is dropped at the end; without it each test prints that it was
//! skipped. The backend-generic contract is `store::conformance`'s; these test what is
//! PostgreSQL's own (migrations, the version check, fencing under concurrency, large
//! batches, redaction) and the SQL of every method.

use super::*;
use crate::store::{DeadLetterQuery, EventOutcomeRecord, Fence};
use std::sync::Arc;
use std::time::Instant;

/// A fresh schema on the test server, dropped (with everything in it) when this is dropped,
/// also after a failed assertion.
struct TestSchema {
    url: String,
    schema: String,
}

impl TestSchema {
    /// `None` (and a line saying so) when `STOCKSYNC_TEST_POSTGRES` is not set.
    fn new(test: &str) -> Option<Self> {
        let Some(url) = std::env::var("STOCKSYNC_TEST_POSTGRES")
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            println!("skipped {test}: STOCKSYNC_TEST_POSTGRES is not set");
            return None;
        };
        let schema = format!("sst_{}", uuid::Uuid::new_v4().simple());
        Some(Self { url, schema })
    }

    fn config(&self) -> PostgresStoreConfig {
        PostgresStoreConfig {
            url: self.url.clone(),
            schema: self.schema.clone(),
            pool_size: 4,
            connect_timeout_ms: 10_000,
            ..PostgresStoreConfig::default()
        }
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.config()).await.unwrap()
    }

    /// A connection of its own (outside the store's pool), working in the schema.
    async fn raw(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .unwrap();
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Its own thread and runtime: this may run inside the test's runtime, or during a
        // panic. The tests run on a multi-threaded runtime so that, while this blocks one
        // worker, the store's connection tasks still run and end (a connection left inside
        // a transaction would hold locks the DROP waits for).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                let task = tokio::spawn(connection);
                let result = client
                    .batch_execute(&format!(
                        "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                    ))
                    .await
                    .map_err(|e| e.to_string());
                drop(client);
                let _ = task.await;
                result
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.schema);
        }
    }
}

fn movement(sku: &str, seq: u64, source: &str, sale: bool) -> Vec<u8> {
    let kind = if sale {
        crate::domain::MovementKind::Sale {
            reservation: format!("shop:o{seq}:1"),
            quantity: 1,
            location: None,
            route: Vec::new(),
        }
    } else {
        crate::domain::MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: seq,
        }
    };
    codec::encode_movement(&crate::domain::Movement {
        schema_version: crate::domain::SCHEMA_VERSION,
        sku: sku.into(),
        idempotency_key: format!("{sku}:{seq}"),
        source: source.into(),
        occurred_at_ms: Some(1),
        kind,
    })
}

fn event(sku: &str, seq: u64) -> EventRecord {
    EventRecord {
        sku: sku.into(),
        seq,
        idempotency_key: format!("{sku}:{seq}"),
        key_expires_at_ms: 1_000,
        recorded_at_ms: 10,
        movement: movement(sku, seq, "wms-1", false),
        movement_hash: Some(seq),
    }
}

fn events(skus: usize, per_sku: u64) -> Vec<EventRecord> {
    let mut out = Vec::new();
    for seq in 1..=per_sku {
        for sku in 0..skus {
            out.push(event(&format!("SKU-{sku:05}"), seq));
        }
    }
    out
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

use crate::store::codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_server_and_the_cause_never_the_password() {
    // No server needed: port 1 on loopback refuses.
    let config = PostgresStoreConfig {
        url: "postgres://ledger:pw-hidden@127.0.0.1:1/stocksync".to_owned(),
        connect_timeout_ms: 5_000,
        ..PostgresStoreConfig::default()
    };
    let message = match PostgresStore::open(&config).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("opened a store on port 1"),
    };
    assert!(
        message.contains("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    assert!(!message.contains("pw-hidden"), "{message}");
    let multi: tokio_postgres::Config = "host=a,b port=1,2 password=x".parse().unwrap();
    assert_eq!(endpoints(&multi), "a:1,b:2");
    let one_port: tokio_postgres::Config = "host=a,b port=7".parse().unwrap();
    assert_eq!(endpoints(&one_port), "a:7,b:7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_notices_are_not_sent_to_the_store_s_connections() {
    let Some(db) = TestSchema::new("server_notices_are_not_sent_to_the_store_s_connections") else {
        return;
    };
    let store = db.open().await;
    let client = store.client("test").await.unwrap();
    let level: String = client
        .query_one("SHOW client_min_messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_and_opening_again_changes_nothing() {
    let Some(db) = TestSchema::new("migrations_are_applied_once_and_opening_again_changes_nothing")
    else {
        return;
    };
    // Two instances starting at once on a fresh schema: the advisory lock lets one apply.
    let config = db.config();
    let (first, second) = tokio::join!(PostgresStore::open(&config), PostgresStore::open(&config));
    let (first, _second) = (first.unwrap(), second.unwrap());
    first
        .commit(CommitBatch {
            events: vec![event("A", 1)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let again = db.open().await;
    let raw = db.raw().await;
    let versions: Vec<i32> = raw
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        versions,
        schema::MIGRATIONS
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    assert_eq!(again.events("A", 1, 10).await.unwrap().len(), 1);
    assert_eq!(again.backend_name(), "postgres");
    // Every pooled connection starts in the schema with the configured statement timeout.
    let client = again.client("test").await.unwrap();
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(setting("search_path").await, db.schema);
    assert_eq!(setting("statement_timeout").await, "10s");
    // The registry opens this backend for `backend = "postgres"`.
    let opened = crate::store::open(&crate::config::StoreConfig {
        backend: crate::config::StoreBackend::Postgres,
        postgres: db.config(),
        ..crate::config::StoreConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(opened.backend_name(), "postgres");
    assert!(opened.sku_exists("A").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_schema_a_missing_behind_or_newer_schema_is_refused() {
    let Some(db) =
        TestSchema::new("without_create_schema_a_missing_behind_or_newer_schema_is_refused")
    else {
        return;
    };
    let check_only = PostgresStoreConfig {
        create_schema: false,
        ..db.config()
    };
    let message = |result: Result<PostgresStore, StoreError>| match result {
        Err(StoreError::Backend {
            operation: "open",
            message,
        }) => message,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a schema it should refuse"),
    };
    let missing = message(PostgresStore::open(&check_only).await);
    assert!(
        missing.contains(&db.schema) && missing.contains("version 0"),
        "{missing}"
    );
    // Nothing was created by the check.
    let raw = db.raw().await;
    assert_eq!(
        count(
            &raw,
            &format!(
                "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
                db.schema
            )
        )
        .await,
        0
    );
    db.open().await;
    PostgresStore::open(&check_only).await.unwrap();
    // Behind: the last migration is not recorded.
    raw.execute(
        "DELETE FROM schema_migrations WHERE version = $1",
        &[&schema::latest_version()],
    )
    .await
    .unwrap();
    let behind = message(PostgresStore::open(&check_only).await);
    assert!(
        behind.contains(&format!("needs version {}", schema::latest_version())),
        "{behind}"
    );
    raw.execute(
        "INSERT INTO schema_migrations (version, name) VALUES ($1, 'x'), (999, 'future')",
        &[&schema::latest_version()],
    )
    .await
    .unwrap();
    let newer = message(PostgresStore::open(&check_only).await);
    assert!(newer.contains("newer than this build"), "{newer}");
    let newer = message(PostgresStore::open(&db.config()).await);
    assert!(newer.contains("newer than this build"), "{newer}");
}

fn fenced(sku: &str, seq: u64, epoch: u64) -> CommitBatch {
    CommitBatch {
        events: vec![event(sku, seq)],
        fences: vec![Fence {
            scope: "movements/0".into(),
            epoch,
        }],
        ..CommitBatch::default()
    }
}

/// Waits until some backend is blocked by `pid`'s locks.
async fn until_blocked_by(raw: &tokio_postgres::Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = raw
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "nothing ever waited for {pid}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_is_checked_inside_the_commit_against_a_concurrent_acquire() {
    let Some(db) =
        TestSchema::new("a_fence_is_checked_inside_the_commit_against_a_concurrent_acquire")
    else {
        return;
    };
    let store = Arc::new(db.open().await);
    assert_eq!(store.current_epoch("movements/0").await.unwrap(), None);
    assert_eq!(store.acquire_epoch("movements/0", "a").await.unwrap(), 1);
    store.commit(fenced("A", 1, 1)).await.unwrap();

    // An acquire in flight (what acquire_epoch's UPDATE does, not yet committed): a commit
    // under the old epoch waits for it, then sees the new epoch and writes nothing.
    let mut acquirer = db.raw().await;
    let pid: i32 = acquirer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let tx = acquirer.transaction().await.unwrap();
    tx.execute(
        "UPDATE ownership SET epoch = epoch + 1, owner = 'b' WHERE scope = 'movements/0'",
        &[],
    )
    .await
    .unwrap();
    let committing = tokio::spawn({
        let store = store.clone();
        async move { store.commit(fenced("A", 2, 1)).await }
    });
    let observer = db.raw().await;
    until_blocked_by(&observer, pid).await;
    tx.commit().await.unwrap();
    let error = committing.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Fenced {
                epoch: 1,
                current: 2,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.events("A", 1, 10).await.unwrap().len(), 1);

    // A commit in flight holds its fence's row: an acquire waits for it to finish.
    let mut committer = db.raw().await;
    let pid: i32 = committer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let tx = committer.transaction().await.unwrap();
    tx.query(
        "SELECT epoch FROM ownership WHERE scope = ANY($1::text[]) FOR SHARE",
        &[&vec!["movements/0"]],
    )
    .await
    .unwrap();
    let acquiring = tokio::spawn({
        let store = store.clone();
        async move { store.acquire_epoch("movements/0", "c").await }
    });
    until_blocked_by(&observer, pid).await;
    tx.commit().await.unwrap();
    assert_eq!(acquiring.await.unwrap().unwrap(), 3);

    // Many writers under epoch 3 racing an acquire: each commit either landed whole before
    // the new epoch or was refused whole; none under epoch 3 lands after it.
    let writers: Vec<_> = (0..24u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.commit(fenced(&format!("R{n}"), 1, 3)).await })
        })
        .collect();
    let epoch = store.acquire_epoch("movements/0", "d").await.unwrap();
    assert_eq!(epoch, 4);
    for (n, writer) in writers.into_iter().enumerate() {
        let sku = format!("R{n}");
        let stored = store.events(&sku, 1, 10).await.unwrap().len();
        match writer.await.unwrap() {
            Ok(()) => assert_eq!(stored, 1, "{sku} acknowledged but not stored"),
            Err(StoreError::Fenced { current: 4, .. }) => {
                assert_eq!(stored, 0, "{sku} refused but stored")
            }
            Err(other) => panic!("{sku}: {other}"),
        }
    }
    assert!(matches!(
        store.commit(fenced("late", 1, 3)).await,
        Err(StoreError::Fenced { current: 4, .. })
    ));
    store.commit(fenced("late", 1, 4)).await.unwrap();
    assert_eq!(
        store.current_epoch("movements/0").await.unwrap(),
        Some((4, "d".to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_commit_in_one_transaction() {
    let Some(db) = TestSchema::new("ten_thousand_events_commit_in_one_transaction") else {
        return;
    };
    let store = db.open().await;
    let batch = events(1_000, 10);
    assert_eq!(batch.len(), 10_000);
    store
        .commit(CommitBatch {
            events: batch.clone(),
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let raw = db.raw().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM events").await, 10_000);
    assert_eq!(
        count(&raw, "SELECT count(*) FROM idempotency_keys").await,
        10_000
    );
    assert_eq!(
        count(&raw, "SELECT count(DISTINCT xmin::text) FROM events").await,
        1,
        "one transaction wrote them all"
    );
    // The history follows the batch's order.
    let history = store
        .query_events(&EventQuery {
            limit: 20_000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let order: Vec<_> = history
        .iter()
        .map(|row| (row.event.sku.as_str(), row.event.seq))
        .collect();
    let expected: Vec<_> = batch.iter().map(|e| (e.sku.as_str(), e.seq)).collect();
    assert_eq!(order, expected);
    assert_eq!(store.list_skus(None, 5_000).await.unwrap().len(), 1_000);
    let loaded = store.load_sku("SKU-00007", 0).await.unwrap();
    assert_eq!(
        loaded
            .events_after
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_sequence_number_fails_the_whole_batch() {
    let Some(db) = TestSchema::new("a_duplicate_sequence_number_fails_the_whole_batch") else {
        return;
    };
    let store = db.open().await;
    store
        .commit(CommitBatch {
            events: vec![event("A", 1)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let error = store
        .commit(CommitBatch {
            events: vec![event("B", 1), event("A", 1), event("C", 1)],
            snapshots: vec![SnapshotRecord {
                sku: "B".into(),
                seq: 1,
                state: b"s".to_vec(),
            }],
            offsets: vec![OffsetWatermark {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                next_offset: 9,
            }],
            ..CommitBatch::default()
        })
        .await
        .unwrap_err();
    let StoreError::Backend {
        operation: "commit",
        message,
    } = &error
    else {
        panic!("{error}");
    };
    // The server's own message: a unique violation.
    assert!(
        message.contains("23505") && message.contains("duplicate key"),
        "{message}"
    );
    for sku in ["B", "C"] {
        assert!(!store.sku_exists(sku).await.unwrap(), "{sku}");
        assert!(store.load_sku(sku, 0).await.unwrap().snapshot.is_none());
    }
    assert!(store.offsets("g").await.unwrap().is_empty());
    // The same batch again, every event already stored as given (a retry after a lost
    // acknowledgement), is acknowledged without writing anything twice; a stored event
    // with other content is still a conflict.
    let landed = CommitBatch {
        events: vec![event("A", 1)],
        ..CommitBatch::default()
    };
    store.commit(landed.clone()).await.unwrap();
    assert_eq!(store.events("A", 1, 10).await.unwrap().len(), 1);
    let mut changed = landed;
    changed.events[0].movement = movement("A", 1, "another-source", false);
    assert!(matches!(
        store.commit(changed).await,
        Err(StoreError::Backend {
            operation: "commit",
            ..
        })
    ));
    // The pool's connection is usable again.
    store
        .commit(CommitBatch {
            events: vec![event("B", 1)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    assert!(store.sku_exists("B").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_password_is_overridden_and_never_shown() {
    let Some(db) = TestSchema::new("the_url_password_is_overridden_and_never_shown") else {
        return;
    };
    let parsed: tokio_postgres::Config = db.url.parse().unwrap();
    let Some(real) = parsed
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
    else {
        println!(
            "skipped the_url_password_is_overridden_and_never_shown: the test URL has no password"
        );
        return;
    };
    let wrong = "wrong-pw-7f3a9c";
    let wrong_url = db
        .url
        .replacen(&format!(":{real}@"), &format!(":{wrong}@"), 1);
    assert_ne!(
        wrong_url, db.url,
        "the test URL's password is in its user info"
    );
    let refused = PostgresStore::open(&PostgresStoreConfig {
        url: wrong_url.clone(),
        ..db.config()
    })
    .await
    .err()
    .expect("a wrong password is refused");
    let shown = format!("{refused} {refused:?}");
    assert!(!shown.contains(wrong) && !shown.contains(&real), "{shown}");
    assert!(shown.contains("password"), "the server's reason: {shown}");
    let store = PostgresStore::open(&PostgresStoreConfig {
        url: wrong_url,
        password: Some(real.clone()),
        ..db.config()
    })
    .await
    .unwrap();
    assert!(store.list_skus(None, 1).await.unwrap().is_empty());
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let error = PostgresStore::open(&PostgresStoreConfig {
        url: format!("{}{separator}sslmode=bogus", db.url),
        ..db.config()
    })
    .await
    .err()
    .expect("an unknown sslmode is refused")
    .to_string();
    assert!(error.contains("not a valid connection string"), "{error}");
    assert!(!error.contains(&real), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_keeps_the_embedded_semantics() {
    let Some(db) = TestSchema::new("every_method_keeps_the_embedded_semantics") else {
        return;
    };
    let store = db.open().await;
    let snapshot = |sku: &str, seq| SnapshotRecord {
        sku: sku.into(),
        seq,
        state: format!("state-{seq}").into_bytes(),
    };
    let offset = |next_offset| OffsetWatermark {
        group: "g".into(),
        topic: "t".into(),
        partition: 1,
        next_offset,
    };
    let mut first = vec![event("a", 1), event("B", 1), event("a", 2), event("a", 3)];
    first[2].movement = movement("a", 2, "shop:alpha", true);
    first[2].recorded_at_ms = 20;
    first[3].recorded_at_ms = 30;
    first[3].movement_hash = Some(u64::MAX - 1);
    first[3].key_expires_at_ms = 5_000;
    store
        .commit(CommitBatch {
            events: first,
            snapshots: vec![snapshot("a", 2), snapshot("a", 1)],
            offsets: vec![offset(9)],
            outcomes: vec![EventOutcomeRecord {
                sku: "a".into(),
                seq: 2,
                outcome_json: r#"{"outcome":"parked"}"#.into(),
            }],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    // An older snapshot and a lower offset never replace newer ones.
    store
        .commit(CommitBatch {
            snapshots: vec![snapshot("a", 1)],
            offsets: vec![offset(4)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let loaded = store.load_sku("a", 500).await.unwrap();
    assert_eq!(loaded.snapshot.as_ref().unwrap().seq, 2);
    assert_eq!(loaded.snapshot.unwrap().state, b"state-2");
    assert_eq!(
        loaded
            .events_after
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![3]
    );
    let mut keys = loaded.idempotency_keys;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("a:1".to_owned(), 1),
            ("a:2".to_owned(), 2),
            ("a:3".to_owned(), 3)
        ]
    );
    assert_eq!(store.offsets("g").await.unwrap(), vec![offset(9)]);
    // Byte order ("B" < "a"), whatever the database's collation.
    assert_eq!(store.list_skus(None, 10).await.unwrap(), vec!["B", "a"]);
    assert_eq!(store.list_skus(Some("B"), 10).await.unwrap(), vec!["a"]);
    assert!(store.sku_exists("a").await.unwrap() && !store.sku_exists("z").await.unwrap());

    // Keys: expiry honoured, the hash's 64 bits kept, expired rows really deleted.
    assert_eq!(
        store
            .find_idempotency_key_hash("a", "a:3", 1_000)
            .await
            .unwrap(),
        Some((3, Some(u64::MAX - 1)))
    );
    assert_eq!(
        store.find_idempotency_key("a", "a:1", 999).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        store.find_idempotency_key("a", "a:1", 1_000).await.unwrap(),
        None
    );
    assert_eq!(store.expire_keys(1_000).await.unwrap(), 3);
    assert_eq!(store.expire_keys(1_000).await.unwrap(), 0);
    assert_eq!(
        store.load_sku("a", 0).await.unwrap().idempotency_keys,
        vec![("a:3".to_owned(), 3)]
    );
    // The history keeps every event and its key expiry.
    assert_eq!(store.events("a", 2, 10).await.unwrap().len(), 2);

    // Batch load: input order, duplicates and unknown SKUs, key expiries.
    let batch = store
        .load_skus(&["a".into(), "nobody".into(), "B".into(), "a".into()], 0)
        .await
        .unwrap();
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[0].loaded.snapshot.as_ref().unwrap().seq, 2);
    assert_eq!(batch[0].keys[0].expires_at_ms, 5_000);
    assert!(batch[1].loaded.snapshot.is_none() && batch[1].loaded.events_after.is_empty());
    assert_eq!(batch[2].loaded.events_after.len(), 1);
    assert!(batch[2].keys.is_empty(), "B's key expired and was deleted");
    assert_eq!(batch[3].loaded.events_after.len(), 1);
    assert!(store.load_skus(&[], 0).await.unwrap().is_empty());

    // History: filters in SQL, outcomes, cursor paging.
    let query = |q: EventQuery| {
        let store = &store;
        async move {
            store
                .query_events(&EventQuery { limit: 10, ..q })
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.event.sku, row.event.seq))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(query(EventQuery::default()).await.len(), 4);
    let by_source = EventQuery {
        source: Some("shop:alpha".into()),
        ..EventQuery::default()
    };
    assert_eq!(query(by_source).await, vec![("a".to_owned(), 2)]);
    let by_kind = EventQuery {
        kind: Some("receipt".into()),
        sku: Some("a".into()),
        ..EventQuery::default()
    };
    assert_eq!(
        query(by_kind).await,
        vec![("a".to_owned(), 1), ("a".to_owned(), 3)]
    );
    let window = EventQuery {
        from_ms: Some(15),
        to_ms: Some(30),
        ..EventQuery::default()
    };
    assert_eq!(query(window).await, vec![("a".to_owned(), 2)]);
    let page = store
        .query_events(&EventQuery {
            sku: Some("a".into()),
            limit: 2,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page[1].outcome.as_deref(), Some(r#"{"outcome":"parked"}"#));
    assert_eq!(page[0].outcome, None);
    let next = EventQuery {
        sku: Some("a".into()),
        after: Some(page[1].cursor),
        ..EventQuery::default()
    };
    assert_eq!(query(next).await, vec![("a".to_owned(), 3)]);
    let next_global = EventQuery {
        after: Some(page[1].cursor),
        ..EventQuery::default()
    };
    assert_eq!(query(next_global).await, vec![("a".to_owned(), 3)]);

    // Pushed values, push log, config audit.
    for quantity in [3, 5] {
        store
            .record_pushed(&[PushedRecord {
                channel: "c".into(),
                sku: "a".into(),
                quantity,
                pushed_at_ms: 1,
            }])
            .await
            .unwrap();
    }
    assert_eq!(store.pushed("c").await.unwrap()[0].quantity, 5);
    let push = |channel: &str, sku: &str, at_ms: i64| PushLogRecord {
        channel: channel.into(),
        sku: sku.into(),
        quantity: 4,
        change_from: Some(3),
        outcome: "accepted".into(),
        detail: None,
        requests: 1,
        at_ms,
    };
    store
        .append_push_log(&[
            push("s1", "a", 10),
            push("s1", "B", 20),
            push("s2", "a", 30),
        ])
        .await
        .unwrap();
    let rows = store
        .query_push_log(&PushLogQuery {
            sku: Some("a".into()),
            limit: 10,
            ..PushLogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![30, 10]
    );
    assert_eq!(rows[1], push("s1", "a", 10));
    assert_eq!(store.prune_push_log(25).await.unwrap(), 2);
    assert_eq!(
        store
            .query_push_log(&PushLogQuery {
                limit: 10,
                ..PushLogQuery::default()
            })
            .await
            .unwrap(),
        vec![push("s2", "a", 30)]
    );
    for n in 0..3 {
        store
            .record_config_change(&ConfigAuditRecord {
                at_ms: n,
                action: "loaded".into(),
                actor: "startup".into(),
                config_hash: format!("h{n}"),
                config_json: "{}".into(),
            })
            .await
            .unwrap();
    }
    let changes = store.config_changes(2).await.unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| c.config_hash.as_str())
            .collect::<Vec<_>>(),
        vec!["h2", "h1"]
    );

    // Hold expiries (last change per SKU wins, None deletes) and reservations (the first
    // request stays, a refusal sticks).
    let expiry = |sku: &str, at| HoldExpiryRecord {
        sku: sku.into(),
        next_expiry_ms: at,
    };
    let reservation = |refusal: Option<&str>| ReservationRecord {
        id: "r1".into(),
        request_json: if refusal.is_some() { "later" } else { "first" }.into(),
        refusal_json: refusal.map(str::to_owned),
        created_at_ms: 5,
    };
    store
        .commit(CommitBatch {
            hold_expiries: vec![
                expiry("A", Some(10)),
                expiry("B", Some(20)),
                expiry("A", Some(30)),
            ],
            reservations: vec![reservation(None)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    store
        .commit(CommitBatch {
            hold_expiries: vec![expiry("B", None)],
            reservations: vec![reservation(Some("[]")), reservation(None)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.hold_expiries(None, 10).await.unwrap(),
        vec![expiry("A", Some(30))]
    );
    assert!(store.hold_expiries(Some("A"), 10).await.unwrap().is_empty());
    let stored = store.reservation("r1").await.unwrap().unwrap();
    assert_eq!(stored.request_json, "first");
    assert_eq!(stored.refusal_json.as_deref(), Some("[]"));
    assert_eq!(store.reservation("r2").await.unwrap(), None);

    // Order lines: upsert keeping the highest version, forgotten after retention.
    let line = |order: &str, line: &str, version, seen| OrderLineRecord {
        channel: "woo".into(),
        order_id: order.into(),
        line_id: line.into(),
        sku: format!("SKU-{line}"),
        version,
        seen_at_ms: seen,
    };
    store
        .record_order_lines(&[line("1", "a", 10, 100), line("1", "b", 10, 100)], 0)
        .await
        .unwrap();
    store
        .record_order_lines(&[line("1", "a", 5, 200), line("2", "c", 7, 200)], 0)
        .await
        .unwrap();
    assert_eq!(
        store.order_lines("woo", "1").await.unwrap(),
        vec![line("1", "a", 10, 200), line("1", "b", 10, 100)]
    );
    store.record_order_lines(&[], 150).await.unwrap();
    assert_eq!(
        store.order_lines("woo", "1").await.unwrap(),
        vec![line("1", "a", 10, 200)]
    );

    // Dead letters: written once, newest first, forgotten after retention.
    let letter = |sku: &str, parked_seq: u64, expired_at_ms: i64| DeadLetterRecord {
        sku: sku.into(),
        parked_seq,
        expired_seq: parked_seq + 1,
        idempotency_key: format!("k{parked_seq}"),
        source: "wms-1".into(),
        kind: "fulfilment".into(),
        movement_json: "{}".into(),
        reason: "waits for its sale".into(),
        parked_at_ms: 0,
        expired_at_ms,
        keep_until_ms: expired_at_ms + 1_000,
    };
    let with_letters = |letters| CommitBatch {
        dead_letters: letters,
        ..CommitBatch::default()
    };
    store
        .commit(with_letters(vec![letter("A", 2, 100)]))
        .await
        .unwrap();
    store
        .commit(with_letters(vec![letter("A", 2, 100)]))
        .await
        .unwrap();
    store
        .commit(with_letters(vec![letter("B", 5, 500)]))
        .await
        .unwrap();
    let all = DeadLetterQuery {
        sku: None,
        limit: 10,
    };
    let skus = |rows: Vec<DeadLetterRecord>| rows.into_iter().map(|r| r.sku).collect::<Vec<_>>();
    assert_eq!(
        skus(store.dead_letters(&all).await.unwrap()),
        vec!["B", "A"]
    );
    let only_a = DeadLetterQuery {
        sku: Some("A".into()),
        limit: 10,
    };
    assert_eq!(
        store.dead_letters(&only_a).await.unwrap(),
        vec![letter("A", 2, 100)]
    );
    store
        .commit(with_letters(vec![letter("C", 7, 1_200)]))
        .await
        .unwrap();
    assert_eq!(
        skus(store.dead_letters(&all).await.unwrap()),
        vec!["C", "B"]
    );

    // After close, calls fail with a clear error instead of hanging.
    store.close().await.unwrap();
    let closed = store.list_skus(None, 1).await.unwrap_err();
    assert!(closed.to_string().contains("closed"), "{closed}");
}

/// Wall time of a group commit of 1,000 and of 10,000 events and of `load_skus` of 1,000
/// SKUs on the test server (printed; run with `--nocapture`). Asserts only what was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_batch_load_timings() {
    let Some(db) = TestSchema::new("commit_and_batch_load_timings") else {
        return;
    };
    let store = db.open().await;
    // Warm the connection's statement cache.
    store
        .commit(CommitBatch {
            events: vec![event("warm", 1)],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    for (skus, per_sku) in [(1_000, 1), (1_000, 10)] {
        let mut batch = events(skus, per_sku);
        for event in &mut batch {
            event.sku = format!("{}-{}", event.sku, per_sku);
        }
        let started = Instant::now();
        store
            .commit(CommitBatch {
                events: batch,
                ..CommitBatch::default()
            })
            .await
            .unwrap();
        println!(
            "postgres commit of {} events: {:.1} ms",
            skus * per_sku as usize,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let wanted: Vec<String> = (0..1_000).map(|sku| format!("SKU-{sku:05}-10")).collect();
    store.load_skus(&wanted[..10], 0).await.unwrap();
    let started = Instant::now();
    let loaded = store.load_skus(&wanted, 0).await.unwrap();
    println!(
        "postgres load_skus of 1000 SKUs (10 events and 10 keys each): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        loaded
            .iter()
            .all(|one| one.loaded.events_after.len() == 10 && one.keys.len() == 10)
    );
}

#[test]
fn passwords_are_redacted_from_connection_strings() {
    let cases = [
        (
            "postgres://ledger:s3cret@db:5432/stocksync",
            "postgres://ledger:<redacted>@db:5432/stocksync",
        ),
        (
            "postgresql://ledger:p%40ss:word@db/stocksync?sslmode=disable",
            "postgresql://ledger:<redacted>@db/stocksync?sslmode=disable",
        ),
        (
            "postgres://ledger@db/stocksync",
            "postgres://ledger@db/stocksync",
        ),
        (
            "postgres://db/x?user=u&password=s3cret&a=b",
            "postgres://db/x?user=u&password=<redacted>&a=b",
        ),
        (
            "host=db user=u password=s3cret dbname=x",
            "host=db user=u password=<redacted> dbname=x",
        ),
        (
            "host=db password='s3 cret' dbname=x",
            "host=db password=<redacted> dbname=x",
        ),
        (
            "host=127.0.0.1 user=trial password = trialpw dbname=trial",
            "host=127.0.0.1 user=trial password = <redacted> dbname=trial",
        ),
        (
            "host=db PASSWORD\t=\t'it\\'s a b' dbname=x",
            "host=db PASSWORD\t=\t<redacted> dbname=x",
        ),
        ("password =pw", "password =<redacted>"),
        ("host=db mypassword=kept", "host=db mypassword=kept"),
        ("https://example.com/a@b", "https://example.com/a@b"),
        ("", ""),
    ];
    for (given, expected) in cases {
        assert_eq!(redact_connection_string(given), expected, "{given}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_or_url_is_refused_before_connecting() {
    let config = PostgresStoreConfig {
        url: "postgres://u:s3cret@127.0.0.1:1/x".into(),
        schema: "Bad-Name".into(),
        ..PostgresStoreConfig::default()
    };
    let error = PostgresStore::open(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("store.postgres.schema"), "{error}");
    let error = PostgresStore::open(&PostgresStoreConfig {
        url: "postgres://u:s3cret@127.0.0.1:notaport/x".into(),
        schema: "ok".into(),
        ..PostgresStoreConfig::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("not a valid connection string"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    // Nothing listens on port 1: refused within the connect timeout, without the password.
    let error = PostgresStore::open(&PostgresStoreConfig {
        url: "postgres://u:s3cret@127.0.0.1:1/x".into(),
        schema: "ok".into(),
        connect_timeout_ms: 2_000,
        ..PostgresStoreConfig::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(!error.contains("s3cret"), "{error}");
}

struct NoSink;
impl crate::domain::AvailabilitySink for NoSink {
    fn publish(&self, _changes: &[crate::domain::AvailabilityChange]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_runs_on_postgres_and_recovers_its_state_and_keys() {
    use crate::ledger::{Ack, Ledger, LedgerOptions};
    let Some(db) = TestSchema::new("the_ledger_runs_on_postgres_and_recovers_its_state_and_keys")
    else {
        return;
    };
    let receipt = |key: &str| crate::domain::Movement {
        schema_version: crate::domain::SCHEMA_VERSION,
        sku: "SKU-P".into(),
        idempotency_key: key.into(),
        source: "wms-1".into(),
        occurred_at_ms: None,
        kind: crate::domain::MovementKind::Receipt {
            location: "WH-1".into(),
            quantity: 1,
        },
    };
    let options = || LedgerOptions {
        snapshot_every_events: 3,
        ..LedgerOptions::default()
    };
    {
        let ledger = Ledger::start(Arc::new(db.open().await), Arc::new(NoSink), options());
        for n in 1..=10u64 {
            assert_eq!(
                ledger.submit(receipt(&format!("r{n}"))).await.unwrap(),
                Ack::Applied { seq: n }
            );
        }
        assert_eq!(
            ledger.submit(receipt("r4")).await.unwrap(),
            Ack::Duplicate { seq: 4 }
        );
        ledger.shutdown().await;
    }
    let store: Arc<dyn Store> = Arc::new(db.open().await);
    assert!(store.load_sku("SKU-P", 0).await.unwrap().snapshot.is_some());
    let ledger = Ledger::start(store, Arc::new(NoSink), options());
    assert_eq!(
        ledger.submit(receipt("r2")).await.unwrap(),
        Ack::Duplicate { seq: 2 },
        "keys survive the restart"
    );
    let state = ledger.state(&"SKU-P".into()).await.unwrap();
    assert_eq!(state.seq, 10);
    assert_eq!(
        state
            .location(&crate::domain::LocationId::from("WH-1"))
            .available(),
        10
    );
    assert_eq!(
        ledger.submit(receipt("r11")).await.unwrap(),
        Ack::Applied { seq: 11 }
    );
    ledger.shutdown().await;
}
