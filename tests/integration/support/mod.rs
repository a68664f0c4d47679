//! Shared helpers for integration tests: a real Kafka-protocol broker (tansu) on a loopback
//! port, a real ledger over the embedded store in a temp dir, a store whose commits can be
//! held back, Kafka produce/consume helpers, and polling with a deadline.
//!
//! Every helper binds `127.0.0.1` random ports and temp dirs, so tests run in parallel.
//! A module of the integration test binary (`tests/integration/main.rs`); use it with
//! `use crate::support;`.

use async_trait::async_trait;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::future::Future;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use stocksync::config::KafkaConfig;
use stocksync::domain::NullSink;
use stocksync::ledger::{Ledger, LedgerOptions};
use stocksync::store::embedded::EmbeddedStore;
use stocksync::store::{
    CommitBatch, EventRecord, LoadedSku, OffsetWatermark, OrderLineRecord, PushedRecord, Store,
    StoreError,
};
use tempfile::TempDir;
use tokio::sync::watch;

/// The tansu version the tests are written against (`scripts/test.sh` installs it).
pub const TANSU_VERSION: &str = "0.6.0";

/// A name unique within this machine for a long while: `{prefix}-{pid}-{counter}-{nanos}`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where the tansu binary is: `$TANSU_BIN`, `$CARGO_HOME/bin/tansu`, `~/.cargo/bin/tansu`,
/// then `PATH`. Panics with instructions when it is nowhere (tests must not pass silently).
pub fn tansu_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        candidates.push(path.into());
    }
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin/tansu"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/tansu"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("tansu")));
    }
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Kafka tests need the tansu {TANSU_VERSION} broker, which is not installed \
             (looked at $TANSU_BIN, $CARGO_HOME/bin, ~/.cargo/bin and PATH). \
             Run `bash scripts/test.sh`: it installs tansu and kafka-python, then runs every test."
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind 127.0.0.1:0")
}

/// A tansu broker with in-memory storage on a random loopback port; killed on drop.
pub struct TansuBroker {
    child: Child,
    port: u16,
    binary: PathBuf,
    // The broker writes its log here; dropped (deleted) with the broker.
    _log_dir: TempDir,
}

impl TansuBroker {
    /// Starts a broker and waits until it accepts connections. Panics (with the broker's
    /// log) when it cannot start.
    // The child returned inside `Self` is killed and reaped by `Drop`.
    #[allow(clippy::zombie_processes)]
    pub fn start() -> Self {
        let binary = tansu_binary();
        let log_dir = tempfile::tempdir().expect("temp dir for the tansu log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let log_path = log_dir.path().join(format!("tansu-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("create tansu log");
            let mut child = Command::new(&binary)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut exited = false;
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        binary,
                        _log_dir: log_dir,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Most likely another process took the port between bind and listen: retry.
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("tansu broker did not start; last log:\n{last_log}");
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `partitions` partitions using `tansu topic create`.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let output = Command::new(&self.binary)
            .args(["topic", "create", name])
            .args(["--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("run tansu topic create");
        assert!(
            output.status.success(),
            "tansu topic create {name} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kafka ingest config for tests: small batches, short waits.
pub fn kafka_config(
    bootstrap: &str,
    group: &str,
    topic: &str,
    dead_letter_topic: &str,
) -> KafkaConfig {
    KafkaConfig {
        brokers: bootstrap.to_owned(),
        group_id: group.to_owned(),
        movements_topic: topic.to_owned(),
        dead_letter_topic: dead_letter_topic.to_owned(),
        atp_topic: None,
        batch_max: 64,
        batch_wait_ms: 5,
        max_in_flight: 1024,
        consumer_overrides: Default::default(),
    }
}

/// A ledger over an embedded store in its own temp dir (needs a tokio runtime).
pub struct TestLedger {
    /// The ledger.
    pub ledger: Ledger,
    /// The store behind it (possibly wrapped).
    pub store: Arc<dyn Store>,
    // Keeps the database folder alive.
    _dir: TempDir,
}

impl TestLedger {
    /// A fresh ledger over a new database.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the store");
        let store: Arc<dyn Store> = Arc::new(open_store(dir.path()));
        Self::over(store, dir)
    }

    /// A ledger over `store` (for wrapped stores such as [`GatedStore`]).
    pub fn over(store: Arc<dyn Store>, dir: TempDir) -> Self {
        let ledger = Ledger::start(store.clone(), Arc::new(NullSink), LedgerOptions::default());
        Self {
            ledger,
            store,
            _dir: dir,
        }
    }
}

/// Opens the embedded store at `dir/stocksync.db`.
pub fn open_store(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(&dir.join("stocksync.db")).expect("open embedded store")
}

/// A store whose commits wait while the gate is closed, delegating everything to `inner`.
/// Lets a test observe the system while a movement is accepted but not yet durable.
///
/// It can also hold back one SKU alone ([`GatedStore::hold_loads_of`]): loading that SKU
/// waits, so its movements wait in the ledger (unwritten) while other SKUs' movements are
/// applied and written (the ledger's committer writes one batch at a time, so a closed
/// commit gate would hold every SKU back).
pub struct GatedStore {
    inner: Arc<dyn Store>,
    open: watch::Sender<bool>,
    held: watch::Sender<Option<String>>,
    held_loads: AtomicU64,
}

impl GatedStore {
    /// Wraps `inner`; the gate starts `open` or closed.
    pub fn new(inner: Arc<dyn Store>, open: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            open: watch::channel(open).0,
            held: watch::channel(None).0,
            held_loads: AtomicU64::new(0),
        })
    }

    /// Opens or closes the gate. Commits already waiting proceed when it opens.
    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    /// Makes every load of `sku` wait until another SKU (or `None`) is held; loads already
    /// waiting for a SKU no longer held proceed. Commits are not affected.
    pub fn hold_loads_of(&self, sku: Option<&str>) {
        self.held.send_replace(sku.map(str::to_owned));
    }

    /// How many loads of a held SKU have been held back so far (waiting or released).
    pub fn held_loads(&self) -> u64 {
        self.held_loads.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn order_lines(
        &self,
        channel: &str,
        order_id: &str,
    ) -> Result<Vec<OrderLineRecord>, StoreError> {
        self.inner.order_lines(channel, order_id).await
    }
    async fn record_order_lines(
        &self,
        records: &[OrderLineRecord],
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .record_order_lines(records, forget_before_ms)
            .await
    }
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.inner.commit(batch).await
    }
    async fn load_sku(&self, sku: &str, now_ms: i64) -> Result<LoadedSku, StoreError> {
        let mut held = self.held.subscribe();
        if held.borrow().as_deref() == Some(sku) {
            self.held_loads.fetch_add(1, Ordering::Relaxed);
            let _ = held.wait_for(|held| held.as_deref() != Some(sku)).await;
        }
        self.inner.load_sku(sku, now_ms).await
    }
    async fn events(
        &self,
        sku: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events(sku, from_seq, limit).await
    }
    async fn list_skus(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_skus(after, limit).await
    }
    async fn offsets(&self, group: &str) -> Result<Vec<OffsetWatermark>, StoreError> {
        self.inner.offsets(group).await
    }
    async fn record_pushed(&self, records: &[PushedRecord]) -> Result<(), StoreError> {
        self.inner.record_pushed(records).await
    }
    async fn pushed(&self, channel: &str) -> Result<Vec<PushedRecord>, StoreError> {
        self.inner.pushed(channel).await
    }
    async fn expire_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.inner.expire_keys(now_ms).await
    }
    async fn query_events(
        &self,
        query: &stocksync::store::EventQuery,
    ) -> Result<Vec<stocksync::store::HistoryEvent>, StoreError> {
        self.inner.query_events(query).await
    }
    async fn append_push_log(
        &self,
        records: &[stocksync::store::PushLogRecord],
    ) -> Result<(), StoreError> {
        self.inner.append_push_log(records).await
    }
    async fn query_push_log(
        &self,
        query: &stocksync::store::PushLogQuery,
    ) -> Result<Vec<stocksync::store::PushLogRecord>, StoreError> {
        self.inner.query_push_log(query).await
    }
    async fn prune_push_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.prune_push_log(before_ms).await
    }
    async fn prune_events(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        self.inner.prune_events(before_ms, now_ms).await
    }
    async fn record_config_change(
        &self,
        record: &stocksync::store::ConfigAuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.record_config_change(record).await
    }
    async fn config_changes(
        &self,
        limit: usize,
    ) -> Result<Vec<stocksync::store::ConfigAuditRecord>, StoreError> {
        self.inner.config_changes(limit).await
    }
    async fn hold_expiries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<stocksync::store::HoldExpiryRecord>, StoreError> {
        self.inner.hold_expiries(after, limit).await
    }
    async fn reservation(
        &self,
        id: &str,
    ) -> Result<Option<stocksync::store::ReservationRecord>, StoreError> {
        self.inner.reservation(id).await
    }
}

/// A Rust (rdkafka) producer for tests.
pub struct TestProducer {
    producer: FutureProducer,
}

impl TestProducer {
    /// Connects to `bootstrap`.
    pub fn new(bootstrap: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("message.timeout.ms", "20000")
            .create()
            .expect("create test producer");
        Self { producer }
    }

    /// Produces one record to `partition` and returns its offset once acknowledged.
    pub async fn send(&self, topic: &str, partition: i32, key: Option<&str>, value: &str) -> i64 {
        let mut record: FutureRecord<'_, str, str> =
            FutureRecord::to(topic).partition(partition).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition} failed: {e}"));
        assert_eq!(delivery.partition, partition);
        delivery.offset
    }
}

/// The group's committed offsets of `topic` partitions `0..partitions` (`None` where
/// nothing is committed), read with an OffsetFetch that does not join the group.
pub async fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = group_client(&bootstrap, &group);
        let mut tpl = TopicPartitionList::new();
        for partition in 0..partitions {
            tpl.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("fetch committed offsets");
        (0..partitions)
            .map(|partition| {
                match committed
                    .find_partition(&topic, partition)
                    .map(|element| element.offset())
                {
                    Some(Offset::Offset(offset)) if offset >= 0 => Some(offset),
                    _ => None,
                }
            })
            .collect()
    })
    .await
    .expect("offset reader task")
}

/// A consumer of `group` that never joins it (no subscription, no auto-commit): reads and
/// writes the group's committed offsets.
fn group_client(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a group offset client")
}

/// Commits `offsets` (`(partition, next offset)`s of `topic`) for `group` with an
/// OffsetCommit that does not join the group: sets the group's committed offsets, for
/// example behind where its consumers got to.
pub async fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    let offsets = offsets.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer = group_client(&bootstrap, &group);
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in offsets {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .expect("build offset commit");
        }
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .expect("commit offsets");
    })
    .await
    .expect("offset writer task")
}

/// Reads `topic` partitions `0..partitions` from the beginning (no group) until `expected`
/// records arrived or `timeout` passed; returns what arrived.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("create topic reader");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("build assignment");
    }
    consumer.assign(&tpl).expect("assign partitions");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < expected {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => records.push(message.detach()),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => break,
        }
    }
    records
}

/// The value of header `name` of `message`, as UTF-8.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

/// How much longer than its nominal timeout a wait may take: CI machines run the whole
/// suite on two busy cores, and a wait that ends early costs nothing extra.
pub const SLOW_MACHINE_FACTOR: u32 = 3;

/// Polls `check` every 50 ms until it returns `true`; panics after `timeout` (times
/// [`SLOW_MACHINE_FACTOR`]) saying `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let timeout = timeout * SLOW_MACHINE_FACTOR;
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `tests/kafka_python/produce.py` with `records` (one JSON object per line, see the
/// script) and returns the `(partition, offset)` of each. Panics with instructions when
/// python3 or kafka-python is missing.
pub fn produce_with_python(bootstrap: &str, records: &[serde_json::Value]) -> Vec<(i32, i64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_python/produce.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (needed for the kafka-python test; see scripts/test.sh)");
    {
        let mut stdin = child.stdin.take().expect("python stdin");
        for record in records {
            writeln!(stdin, "{record}").expect("write to python");
        }
    }
    let output = child.wait_with_output().expect("wait for python");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kafka-python producer failed (run `bash scripts/test.sh`, which installs \
         tests/kafka_python/requirements.txt):\n{stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let (partition, offset) = line.split_once(' ').expect("PARTITION OFFSET");
            (
                partition.parse().expect("partition"),
                offset.parse().expect("offset"),
            )
        })
        .collect()
}

/// The Shopify simulator with `options`, on a loopback port of its own.
pub async fn shopify_simulator(
    options: stocksync::sandbox::shopify::ShopifySimulatorOptions,
) -> stocksync::sandbox::shopify::ShopifySimulator {
    stocksync::sandbox::shopify::start(
        options,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap()
}

/// A receipt of `quantity` units at WH-1 as a Kafka record's JSON body (contract version 1).
pub fn kafka_receipt(sku: &str, key: &str, quantity: u64) -> String {
    serde_json::json!({"schema_version": 1, "sku": sku, "idempotency_key": key, "source": "test",
           "type": "receipt", "location": "WH-1", "quantity": quantity})
    .to_string()
}

/// `sku`'s on-hand at WH-1 as `ledger` holds it.
pub async fn wh1_on_hand(ledger: &stocksync::ledger::Ledger, sku: &str) -> i64 {
    ledger
        .state(&stocksync::domain::Sku::from(sku))
        .await
        .expect("ledger state")
        .location(&stocksync::domain::LocationId::from("WH-1"))
        .on_hand
}
