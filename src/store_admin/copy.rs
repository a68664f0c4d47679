//! `stocksync store copy --from CONFIG --to CONFIG`: every record one store holds, written
//! into another through the [`Store`] trait (embedded → PostgreSQL or ScyllaDB, and back),
//! resumably, then verified.
//!
//! What is copied, and how:
//! - **Per SKU** ([`Store::list_skus`], paged): its events ([`Store::events`], paged) with
//!   their idempotency keys, key expiries, record times and movement hashes as stored
//!   ([`Store::events_with_hashes`]);
//!   the outcomes of events that were not plain `applied` ([`Store::query_events`] with the
//!   SKU filter); its newest snapshot and its dead letters ([`Store::dead_letters`]).
//!   Events go into [`Store::commit`] batches of at most `batch_events`; a SKU's snapshot
//!   and dead letters follow its last event, in the same or a later batch.
//! - **Offset watermarks** of the source config's Kafka consumer group ([`Store::offsets`]);
//!   offsets only move forward, so copying them twice is harmless.
//! - **Pushed values** of every channel of the source config ([`Store::pushed`]).
//! - **Hold expiries** ([`Store::hold_expiries`], paged; upserts).
//! - **Reservation requests** found through their ledger movements: a reservation line's
//!   movement key is `{id}:{line}:{reserve|compensate|commit|release}`, so each such key
//!   names a request id, read with [`Store::reservation`] (writes keep the first record).
//! - **The push log** ([`Store::query_push_log`], paged by time window) and **the config
//!   audit** ([`Store::config_changes`], its newest [`CONFIG_AUDIT_MAX`] rows): only the rows
//!   of a window the target lacks are appended, so a second run adds nothing.
//!
//! What is not copied (the trait has no way to list it): the WooCommerce order-line index
//! ([`Store::order_lines`] reads one known order; the decoder relearns lines from the next
//! payload of each order, and a line removed from an order before its first payload after
//! the move goes unnoticed), reservation requests refused before any line moved stock (no
//! movement names them), ownership epochs (the next owner acquires its own), and idempotency
//! keys' history beyond the events (a backend that expires keys natively has none).
//!
//! Resuming: a SKU whose events are in the target up to the source's last seq, with the
//! same newest snapshot, is skipped; a SKU partly copied continues from the target's next
//! seq (batches are atomic, so the target never holds half an event).
//!
//! A target that already holds events for a SKU is checked first: each of its events must
//! be the source's event of the same seq (seq, key and movement bytes, as the checksum
//! hashes them). When they differ the SKU is a conflict ([`SkuConflict`], with the first
//! differing seq): nothing is written for it, the copy carries on with the other SKUs, and
//! the CLI exits 1. A target holding SKUs none of which the source has is refused before
//! anything is written ([`check_target`]; the CLI exits 2).
//!
//! Verification ([`verify`]): counts per table and a SHA-256 per SKU over each event's
//! `(seq, key, movement bytes)` in order and the newest snapshot's `(seq, state bytes)`,
//! compared between source and target; every mismatch is listed.
//!
//! May depend on: `config`, `store`, `clock`.

use crate::store::{
    CommitBatch, ConfigAuditRecord, DeadLetterQuery, EventQuery, EventRecord, PushLogQuery,
    PushLogRecord, Store, StoreError,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// SKUs read per [`Store::list_skus`] page.
const SKU_PAGE: usize = 500;
/// Events read per [`Store::events`] or [`Store::query_events`] page.
const EVENT_PAGE: usize = 1_000;
/// Hold expiries read per page.
const HOLD_PAGE: usize = 1_000;
/// Push-log rows read per page (grown for a millisecond holding more rows than this).
const PUSH_LOG_PAGE: usize = 1_000;
/// Most push-log rows one millisecond may hold before the copy gives up on paging it.
const PUSH_LOG_PAGE_MAX: usize = 1_000_000;
/// Most config audit rows copied and compared (the newest ones).
pub const CONFIG_AUDIT_MAX: usize = 100_000;
/// Most dead letters copied per SKU.
const DEAD_LETTERS_PER_SKU: usize = 100_000;
/// Most reservation ids collected from movement keys.
const RESERVATION_IDS_MAX: usize = 1_000_000;
/// Most mismatches listed one by one (the rest are counted).
const MISMATCHES_LISTED: usize = 1_000;

/// What to copy besides the SKUs: the names the trait needs to read the rest, taken from
/// the source config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyScope {
    /// Kafka consumer groups whose offset watermarks are copied (`[kafka] group_id`).
    pub groups: Vec<String>,
    /// Channel ids whose pushed values are copied (`[[channels]] id`).
    pub channels: Vec<String>,
}

impl CopyScope {
    /// The scope of a config: its Kafka group, if any, and its channels.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            groups: config
                .kafka
                .iter()
                .map(|kafka| kafka.group_id.clone())
                .collect(),
            channels: config
                .channels
                .iter()
                .map(|channel| channel.id.clone())
                .collect(),
        }
    }
}

/// Whether two store configs name the same store (the same embedded file, PostgreSQL URL
/// and schema, or ScyllaDB contact points and keyspace): copying a store into itself would
/// skip everything and verify nothing.
pub fn same_store(a: &crate::config::StoreConfig, b: &crate::config::StoreConfig) -> bool {
    use crate::config::StoreBackend;
    a.backend == b.backend
        && match a.backend {
            StoreBackend::Embedded => {
                let canonical =
                    |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
                canonical(&a.path) == canonical(&b.path)
            }
            StoreBackend::Postgres => {
                a.postgres.url == b.postgres.url && a.postgres.schema == b.postgres.schema
            }
            StoreBackend::Scylla => {
                a.scylla.keyspace == b.scylla.keyspace
                    && a.scylla
                        .nodes
                        .iter()
                        .any(|node| b.scylla.nodes.contains(node))
            }
        }
}

/// How a copy runs.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Most events per [`Store::commit`] (at least 1).
    pub batch_events: usize,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Now, in milliseconds since the Unix epoch (loads decide key expiry with it).
    pub now_ms: i64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            batch_events: 1_000,
            progress: false,
            now_ms: crate::clock::system().now_ms(),
        }
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// SKUs in the source.
    pub skus: u64,
    /// SKUs that had something to copy.
    pub skus_copied: u64,
    /// SKUs already complete in the target.
    pub skus_skipped: u64,
    /// Events written.
    pub events: u64,
    /// Commits made.
    pub commits: u64,
    /// Push-log rows appended.
    pub push_log_rows: u64,
    /// Config audit rows appended.
    pub config_audit_rows: u64,
    /// Reservation requests written.
    pub reservations: u64,
    /// SKUs left alone because the target's events differ from the source's (at most
    /// [`MISMATCHES_LISTED`] listed; nothing was written for them).
    pub conflicts: Vec<SkuConflict>,
    /// Conflicting SKUs beyond those listed.
    pub conflicts_unlisted: u64,
}

/// A SKU whose events in the target are not the source's: the copy wrote nothing for it,
/// since appending the source's later events would mix two ledgers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkuConflict {
    /// The SKU.
    pub sku: String,
    /// The first seq at which the two stores differ.
    pub seq: u64,
    /// How they differ there, in words.
    pub reason: String,
}

/// Why a copy does not start.
#[derive(Debug, thiserror::Error)]
pub enum CopyRefused {
    /// The target already holds SKUs and none of them is in the source: it is another
    /// store's data, not an earlier copy of this one.
    #[error(
        "the target already holds {target_skus} SKUs and none of them is in the source \
         (first: {first:?}); it is not an earlier copy of this store. Copy into an empty store"
    )]
    UnrelatedTarget {
        /// SKUs the target holds.
        target_skus: u64,
        /// The first of them.
        first: String,
    },
    /// A store error while checking.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One table's row count on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCount {
    /// The table (`skus`, `events`, `snapshots`, `offsets:<group>`, `pushed:<channel>`, …).
    pub table: String,
    /// Rows in the source.
    pub source: u64,
    /// Rows in the target.
    pub target: u64,
}

/// The result of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Row counts per table.
    pub counts: Vec<TableCount>,
    /// SKUs compared by checksum.
    pub skus_checked: u64,
    /// Every difference found, in words (at most [`MISMATCHES_LISTED`]).
    pub mismatches: Vec<String>,
    /// Differences found beyond those listed.
    pub mismatches_unlisted: u64,
}

impl VerifyReport {
    /// True when source and target agree on every count and checksum.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.mismatches_unlisted == 0
    }

    fn mismatch(&mut self, what: String) {
        if self.mismatches.len() < MISMATCHES_LISTED {
            self.mismatches.push(what);
        } else {
            self.mismatches_unlisted += 1;
        }
    }

    fn count(&mut self, table: impl Into<String>, source: u64, target: u64) {
        let table = table.into();
        if source != target {
            self.mismatch(format!(
                "{table}: {source} rows in the source, {target} in the target"
            ));
        }
        self.counts.push(TableCount {
            table,
            source,
            target,
        });
    }

    /// The report as lines of text: the counts table, then the mismatches.
    pub fn render(&self) -> String {
        let mut out = String::from("table                          source      target\n");
        for count in &self.counts {
            out.push_str(&format!(
                "{:<28} {:>10}  {:>10}{}\n",
                count.table,
                count.source,
                count.target,
                if count.source == count.target {
                    ""
                } else {
                    "  MISMATCH"
                }
            ));
        }
        out.push_str(&format!("SKU checksums compared: {}\n", self.skus_checked));
        if self.ok() {
            out.push_str("verified: source and target agree\n");
        } else {
            out.push_str(&format!(
                "{} mismatches:\n",
                self.mismatches.len() as u64 + self.mismatches_unlisted
            ));
            for mismatch in &self.mismatches {
                out.push_str(&format!("  {mismatch}\n"));
            }
            if self.mismatches_unlisted > 0 {
                out.push_str(&format!("  … and {} more\n", self.mismatches_unlisted));
            }
        }
        out
    }
}

/// The progress bar: SKUs done of all, rate and ETA; hidden unless wanted and on a terminal.
fn progress_bar(total: u64, wanted: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} SKUs · {per_sec} · ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Counts the SKUs of `store` (one pass over [`Store::list_skus`]).
async fn count_skus(store: &dyn Store) -> Result<u64, StoreError> {
    let mut after: Option<String> = None;
    let mut count = 0u64;
    loop {
        let page = store.list_skus(after.as_deref(), SKU_PAGE).await?;
        count += page.len() as u64;
        if page.len() < SKU_PAGE {
            return Ok(count);
        }
        after = page.last().cloned();
    }
}

/// The last seq a store holds for `sku` and its newest snapshot's seq (0 and `None` for
/// an unknown SKU).
async fn last_seq(
    store: &dyn Store,
    sku: &str,
    now_ms: i64,
) -> Result<(u64, Option<crate::store::SnapshotRecord>), StoreError> {
    let loaded = store.load_sku(sku, now_ms).await?;
    let snapshot_seq = loaded.snapshot.as_ref().map_or(0, |s| s.seq);
    let last = loaded
        .events_after
        .last()
        .map_or(snapshot_seq, |e| e.seq.max(snapshot_seq));
    Ok((last, loaded.snapshot))
}

/// The reservation request id a reservation line's movement key names, if it is one
/// (`{id}:{line}:{reserve|compensate|commit|release}`).
pub fn reservation_id_of_key(key: &str) -> Option<&str> {
    let (rest, step) = key.rsplit_once(':')?;
    if !matches!(step, "reserve" | "compensate" | "commit" | "release") {
        return None;
    }
    let (id, line) = rest.rsplit_once(':')?;
    if id.is_empty() || line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(id)
}

/// A commit batch being filled, written when it holds `limit` events.
struct Pending<'a> {
    target: &'a dyn Store,
    batch: CommitBatch,
    limit: usize,
    commits: u64,
}

impl Pending<'_> {
    async fn flush_if_full(&mut self) -> Result<(), StoreError> {
        if self.batch.events.len() >= self.limit {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.target.commit(batch).await?;
        self.commits += 1;
        Ok(())
    }
}

/// The outcomes of `sku`'s events from `from_seq` on, by seq ([`Store::query_events`]).
async fn outcomes(
    source: &dyn Store,
    sku: &str,
    from_seq: u64,
) -> Result<BTreeMap<u64, String>, StoreError> {
    let mut found = BTreeMap::new();
    let mut after = None;
    loop {
        let page = source
            .query_events(&EventQuery {
                sku: Some(sku.to_owned()),
                after,
                limit: EVENT_PAGE,
                ..EventQuery::default()
            })
            .await?;
        for row in &page {
            if row.event.seq >= from_seq
                && let Some(outcome) = &row.outcome
            {
                found.insert(row.event.seq, outcome.clone());
            }
        }
        match page.last() {
            Some(last) if page.len() == EVENT_PAGE => after = Some(last.cursor),
            _ => return Ok(found),
        }
    }
}

/// What [`copy_sku`] did with a SKU.
enum SkuCopied {
    /// Events added (the snapshot and dead letters follow).
    Copied(u64),
    /// The target already had it all.
    Complete,
    /// The target's events differ from the source's: nothing written.
    Conflict(SkuConflict),
}

/// Copies one SKU's missing events (and outcomes), then its snapshot and dead letters,
/// into `pending`. A target already holding events for the SKU is first checked against
/// the source ([`first_difference`]); when they differ nothing is written for the SKU.
async fn copy_sku(
    source: &dyn Store,
    pending: &mut Pending<'_>,
    sku: &str,
    now_ms: i64,
    reservation_ids: &mut BTreeSet<String>,
) -> Result<SkuCopied, StoreError> {
    let (source_last, source_snapshot) = last_seq(source, sku, now_ms).await?;
    let (target_last, target_snapshot) = last_seq(pending.target, sku, now_ms).await?;
    if target_last > 0
        && let Some((seq, reason)) = first_difference(source, pending.target, sku).await?
    {
        return Ok(SkuCopied::Conflict(SkuConflict {
            sku: sku.to_owned(),
            seq,
            reason,
        }));
    }
    // Reservation ids are collected from every event, copied or not, so a resumed copy
    // still finds the requests of SKUs an earlier run completed.
    let mut from = 1u64;
    let complete = target_last >= source_last
        && source_snapshot.as_ref().map(|s| s.seq) == target_snapshot.as_ref().map(|s| s.seq);
    let outcomes = if complete {
        BTreeMap::new()
    } else {
        outcomes(source, sku, target_last.saturating_add(1)).await?
    };
    let mut added = 0u64;
    loop {
        let page = if complete {
            source.events(sku, from, EVENT_PAGE).await?
        } else {
            source.events_with_hashes(sku, from, EVENT_PAGE).await?
        };
        for event in &page {
            if let Some(id) = reservation_id_of_key(&event.idempotency_key)
                && reservation_ids.len() < RESERVATION_IDS_MAX
            {
                reservation_ids.insert(id.to_owned());
            }
            if complete || event.seq <= target_last {
                continue;
            }
            let event = event.clone();
            if let Some(outcome) = outcomes.get(&event.seq) {
                pending
                    .batch
                    .outcomes
                    .push(crate::store::EventOutcomeRecord {
                        sku: sku.to_owned(),
                        seq: event.seq,
                        outcome_json: outcome.clone(),
                    });
            }
            pending.batch.events.push(event);
            added += 1;
            pending.flush_if_full().await?;
        }
        match page.last() {
            Some(last) if page.len() == EVENT_PAGE => from = last.seq.saturating_add(1),
            _ => break,
        }
    }
    if complete {
        return Ok(SkuCopied::Complete);
    }
    if let Some(snapshot) = source_snapshot {
        pending.batch.snapshots.push(snapshot);
    }
    let dead = source
        .dead_letters(&DeadLetterQuery {
            sku: Some(sku.to_owned()),
            limit: DEAD_LETTERS_PER_SKU,
        })
        .await?;
    pending.batch.dead_letters.extend(dead);
    Ok(SkuCopied::Copied(added))
}

/// Pages through a store's push log, newest window first (as the store answers): each
/// [`PushLogWindows::next`] gives a window's rows and its bounds `[from_ms, to_ms)`
/// (`None`: unbounded). A page is cut before its oldest millisecond, so no millisecond is
/// split between two windows.
struct PushLogWindows<'a> {
    store: &'a dyn Store,
    to_ms: Option<i64>,
    done: bool,
}

/// One window of the push log: its rows (newest first) and bounds.
type PushLogWindow = (Vec<PushLogRecord>, Option<i64>, Option<i64>);

impl<'a> PushLogWindows<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Self {
            store,
            to_ms: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<PushLogWindow>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut limit = PUSH_LOG_PAGE;
        loop {
            let mut page = self
                .store
                .query_push_log(&PushLogQuery {
                    to_ms: self.to_ms,
                    limit,
                    ..PushLogQuery::default()
                })
                .await?;
            if page.len() < limit {
                self.done = true;
                return Ok(Some((page, None, self.to_ms)));
            }
            let oldest = page.iter().map(|r| r.at_ms).min().unwrap_or(i64::MIN);
            page.retain(|r| r.at_ms > oldest);
            if page.is_empty() {
                // One millisecond holds a whole page: read it with a bigger page.
                if limit >= PUSH_LOG_PAGE_MAX {
                    return Err(StoreError::Backend {
                        operation: "query_push_log",
                        message: format!(
                            "more than {PUSH_LOG_PAGE_MAX} push-log rows at {oldest} ms: cannot page them"
                        ),
                    });
                }
                limit = limit.saturating_mul(4).min(PUSH_LOG_PAGE_MAX);
                continue;
            }
            let from_ms = oldest.saturating_add(1);
            let to_ms = self.to_ms.replace(from_ms);
            return Ok(Some((page, Some(from_ms), to_ms)));
        }
    }
}

/// Rows of `source` not in `target`, counting duplicates (a multiset difference).
fn missing<T: Clone + Eq + std::hash::Hash>(source: &[T], target: &[T]) -> Vec<T> {
    let mut have: HashMap<&T, usize> = HashMap::new();
    for row in target {
        *have.entry(row).or_default() += 1;
    }
    source
        .iter()
        .filter(|row| match have.get_mut(row) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// A push-log row as a hashable key.
type PushKey = (
    String,
    String,
    u64,
    Option<i64>,
    String,
    Option<String>,
    u32,
    i64,
);

fn push_key(r: &PushLogRecord) -> PushKey {
    (
        r.channel.clone(),
        r.sku.clone(),
        r.quantity,
        r.change_from,
        r.outcome.clone(),
        r.detail.clone(),
        r.requests,
        r.at_ms,
    )
}

/// The rows of `store`'s push log in `[from_ms, to_ms)`, at most `limit`.
async fn push_log_between(
    store: &dyn Store,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: usize,
) -> Result<Vec<PushLogRecord>, StoreError> {
    store
        .query_push_log(&PushLogQuery {
            from_ms,
            to_ms,
            limit,
            ..PushLogQuery::default()
        })
        .await
}

/// Appends the push-log rows of `source` that `target` lacks; returns how many.
async fn copy_push_log(source: &dyn Store, target: &dyn Store) -> Result<u64, StoreError> {
    let mut appended = 0u64;
    let mut windows = PushLogWindows::new(source);
    while let Some((rows, from_ms, to_ms)) = windows.next().await? {
        // Twice the window's rows: enough to see every row the target shares with it, and
        // a surplus (a target with more rows) shows in the verification counts.
        let limit = rows.len().saturating_mul(2).max(PUSH_LOG_PAGE);
        let there = push_log_between(target, from_ms, to_ms, limit).await?;
        let source_keys: Vec<PushKey> = rows.iter().map(push_key).collect();
        let target_keys: Vec<PushKey> = there.iter().map(push_key).collect();
        let mut lacking: HashMap<PushKey, usize> = missing(&source_keys, &target_keys)
            .into_iter()
            .fold(HashMap::new(), |mut map, key| {
                *map.entry(key).or_default() += 1;
                map
            });
        if lacking.is_empty() {
            continue;
        }
        // Oldest first, as they were appended.
        let mut write: Vec<PushLogRecord> = rows
            .into_iter()
            .rev()
            .filter(|row| match lacking.get_mut(&push_key(row)) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .collect();
        write.sort_by_key(|row| row.at_ms);
        target.append_push_log(&write).await?;
        appended += write.len() as u64;
    }
    Ok(appended)
}

fn audit_key(r: &ConfigAuditRecord) -> (i64, String, String, String, String) {
    (
        r.at_ms,
        r.action.clone(),
        r.actor.clone(),
        r.config_hash.clone(),
        r.config_json.clone(),
    )
}

/// Appends the config audit rows of `source` that `target` lacks, oldest first.
async fn copy_config_audit(source: &dyn Store, target: &dyn Store) -> Result<u64, StoreError> {
    let from: Vec<_> = source.config_changes(CONFIG_AUDIT_MAX).await?;
    let there: Vec<_> = target.config_changes(CONFIG_AUDIT_MAX).await?;
    let there_keys: Vec<_> = there.iter().map(audit_key).collect();
    let from_keys: Vec<_> = from.iter().map(audit_key).collect();
    let mut lacking: HashMap<_, usize> =
        missing(&from_keys, &there_keys)
            .into_iter()
            .fold(HashMap::new(), |mut map, key| {
                *map.entry(key).or_default() += 1;
                map
            });
    let mut written = 0u64;
    for record in from.iter().rev() {
        if let Some(n) = lacking.get_mut(&audit_key(record))
            && *n > 0
        {
            *n -= 1;
            target.record_config_change(record).await?;
            written += 1;
        }
    }
    Ok(written)
}

/// Copies everything `source` holds (see the module doc) into `target`, resuming where an
/// earlier copy stopped. Does not verify: call [`verify`] after it.
///
/// Errors: the first store error; what was committed before it stays, and a second run
/// continues from there.
pub async fn copy(
    source: &dyn Store,
    target: &dyn Store,
    scope: &CopyScope,
    options: &CopyOptions,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport {
        skus: count_skus(source).await?,
        ..CopyReport::default()
    };
    let bar = progress_bar(report.skus, options.progress);
    bar.set_message("copying");
    let mut pending = Pending {
        target,
        batch: CommitBatch::default(),
        limit: options.batch_events.max(1),
        commits: 0,
    };
    let mut reservation_ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = source.list_skus(after.as_deref(), SKU_PAGE).await?;
        for sku in &page {
            match copy_sku(
                source,
                &mut pending,
                sku,
                options.now_ms,
                &mut reservation_ids,
            )
            .await?
            {
                SkuCopied::Copied(events) => {
                    report.skus_copied += 1;
                    report.events += events;
                }
                SkuCopied::Complete => report.skus_skipped += 1,
                SkuCopied::Conflict(conflict) => {
                    if report.conflicts.len() < MISMATCHES_LISTED {
                        report.conflicts.push(conflict);
                    } else {
                        report.conflicts_unlisted += 1;
                    }
                }
            }
            bar.inc(1);
        }
        if page.len() < SKU_PAGE {
            break;
        }
        after = page.last().cloned();
    }
    pending.flush().await?;
    bar.finish_and_clear();

    // Tables keyed by something else than a SKU's events.
    for group in &scope.groups {
        pending.batch.offsets = source.offsets(group).await?;
        pending.flush().await?;
    }
    let mut after: Option<String> = None;
    loop {
        let page = source.hold_expiries(after.as_deref(), HOLD_PAGE).await?;
        after = page.last().map(|r| r.sku.clone());
        let full = page.len() == HOLD_PAGE;
        pending.batch.hold_expiries = page;
        pending.flush().await?;
        if !full {
            break;
        }
    }
    for id in &reservation_ids {
        if let Some(record) = source.reservation(id).await? {
            pending.batch.reservations.push(record);
            report.reservations += 1;
            if pending.batch.reservations.len() >= pending.limit {
                pending.flush().await?;
            }
        }
    }
    pending.flush().await?;
    report.commits = pending.commits;
    for channel in &scope.channels {
        let values = source.pushed(channel).await?;
        if !values.is_empty() {
            target.record_pushed(&values).await?;
        }
    }
    report.push_log_rows = copy_push_log(source, target).await?;
    report.config_audit_rows = copy_config_audit(source, target).await?;
    Ok(report)
}

/// One SKU as [`verify`] sees it on one side.
struct SkuSummary {
    events: u64,
    snapshot: bool,
    dead_letters: u64,
    checksum: [u8; 32],
}

/// Feeds one event into a SKU checksum: its seq (8 bytes, big-endian), key and movement
/// bytes (each prefixed by its length, 8 bytes big-endian).
fn hash_event(hash: &mut Sha256, event: &EventRecord) {
    hash.update(event.seq.to_be_bytes());
    hash.update((event.idempotency_key.len() as u64).to_be_bytes());
    hash.update(event.idempotency_key.as_bytes());
    hash.update((event.movement.len() as u64).to_be_bytes());
    hash.update(&event.movement);
}

/// One event's checksum ([`hash_event`] alone): what the prefix check compares.
fn event_digest(event: &EventRecord) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash_event(&mut hash, event);
    hash.finalize().into()
}

/// Pages through one SKU's events in seq order.
struct EventCursor<'a> {
    store: &'a dyn Store,
    sku: &'a str,
    page: std::collections::VecDeque<EventRecord>,
    from: u64,
    done: bool,
}

impl<'a> EventCursor<'a> {
    fn new(store: &'a dyn Store, sku: &'a str) -> Self {
        Self {
            store,
            sku,
            page: std::collections::VecDeque::new(),
            from: 1,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<EventRecord>, StoreError> {
        if self.page.is_empty() && !self.done {
            let page = self.store.events(self.sku, self.from, EVENT_PAGE).await?;
            self.done = page.len() < EVENT_PAGE;
            if let Some(last) = page.last() {
                self.from = last.seq.saturating_add(1);
            }
            self.page = page.into();
        }
        Ok(self.page.pop_front())
    }
}

/// Compares every event the target holds for `sku` with the source's event of the same
/// seq (seq, key and movement bytes, as the verification checksum hashes them). `None`
/// when each target event is the source's; otherwise the first differing seq and why.
async fn first_difference(
    source: &dyn Store,
    target: &dyn Store,
    sku: &str,
) -> Result<Option<(u64, String)>, StoreError> {
    let mut ours = EventCursor::new(source, sku);
    let mut theirs = EventCursor::new(target, sku);
    let mut source_event = ours.next().await?;
    while let Some(target_event) = theirs.next().await? {
        // Source seqs the target skipped: the target lacks them below its last seq.
        if let Some(event) = source_event.as_ref().filter(|e| e.seq < target_event.seq) {
            return Ok(Some((event.seq, "the target lacks this event".to_owned())));
        }
        match source_event {
            Some(event) if event.seq == target_event.seq => {
                if event_digest(&event) != event_digest(&target_event) {
                    let what = if event.idempotency_key != target_event.idempotency_key {
                        format!(
                            "key {:?} in the source, {:?} in the target",
                            event.idempotency_key, target_event.idempotency_key
                        )
                    } else {
                        "same key, different movement".to_owned()
                    };
                    return Ok(Some((event.seq, what)));
                }
                source_event = ours.next().await?;
            }
            _ => {
                return Ok(Some((
                    target_event.seq,
                    "the source has no event at this seq".to_owned(),
                )));
            }
        }
    }
    Ok(None)
}

/// Refuses a target that holds SKUs none of which the source has (see [`CopyRefused`]).
/// An empty target, or one sharing at least one SKU with the source, passes.
pub async fn check_target(
    source: &dyn Store,
    target: &dyn Store,
    now_ms: i64,
) -> Result<(), CopyRefused> {
    let mut after: Option<String> = None;
    let mut target_skus = 0u64;
    let mut first: Option<String> = None;
    loop {
        let page = target.list_skus(after.as_deref(), SKU_PAGE).await?;
        for sku in &page {
            target_skus += 1;
            first.get_or_insert_with(|| sku.clone());
            let (last, snapshot) = last_seq(source, sku, now_ms).await?;
            if last > 0 || snapshot.is_some() {
                return Ok(());
            }
        }
        if page.len() < SKU_PAGE {
            break;
        }
        after = page.last().cloned();
    }
    match first {
        None => Ok(()),
        Some(first) => Err(CopyRefused::UnrelatedTarget { target_skus, first }),
    }
}

/// Reads a SKU's events and newest snapshot and hashes them: SHA-256 over, per event in
/// order, its seq (8 bytes, big-endian), key and movement bytes (each prefixed by its
/// length, 8 bytes big-endian), then the snapshot's seq and state bytes the same way.
async fn summarise(
    store: &dyn Store,
    sku: &str,
    now_ms: i64,
    mut on_event: impl FnMut(&EventRecord),
) -> Result<SkuSummary, StoreError> {
    let mut hash = Sha256::new();
    let mut events = 0u64;
    let mut from = 1u64;
    loop {
        let page = store.events(sku, from, EVENT_PAGE).await?;
        for event in &page {
            hash_event(&mut hash, event);
            on_event(event);
        }
        events += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == EVENT_PAGE => from = last.seq.saturating_add(1),
            _ => break,
        }
    }
    let snapshot = store.load_sku(sku, now_ms).await?.snapshot;
    if let Some(snapshot) = &snapshot {
        hash.update(b"snapshot");
        hash.update(snapshot.seq.to_be_bytes());
        hash.update((snapshot.state.len() as u64).to_be_bytes());
        hash.update(&snapshot.state);
    }
    let dead_letters = store
        .dead_letters(&DeadLetterQuery {
            sku: Some(sku.to_owned()),
            limit: DEAD_LETTERS_PER_SKU,
        })
        .await?
        .len() as u64;
    Ok(SkuSummary {
        events,
        snapshot: snapshot.is_some(),
        dead_letters,
        checksum: hash.finalize().into(),
    })
}

/// Counts a store's push-log rows.
async fn count_push_log(store: &dyn Store) -> Result<u64, StoreError> {
    let mut count = 0u64;
    let mut windows = PushLogWindows::new(store);
    while let Some((rows, _, _)) = windows.next().await? {
        count += rows.len() as u64;
    }
    Ok(count)
}

/// Counts a store's hold-expiry rows.
async fn count_hold_expiries(store: &dyn Store) -> Result<u64, StoreError> {
    let mut after: Option<String> = None;
    let mut count = 0u64;
    loop {
        let page = store.hold_expiries(after.as_deref(), HOLD_PAGE).await?;
        count += page.len() as u64;
        if page.len() < HOLD_PAGE {
            return Ok(count);
        }
        after = page.last().map(|r| r.sku.clone());
    }
}

/// Compares `target` with `source`: counts per table (SKUs, events, snapshots, dead
/// letters, offsets per group, pushed values per channel, hold expiries, reservations,
/// push log, config audit) and a checksum per SKU. Every difference is a mismatch.
///
/// Errors: the first store error of either side.
pub async fn verify(
    source: &dyn Store,
    target: &dyn Store,
    scope: &CopyScope,
    options: &CopyOptions,
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let source_skus = count_skus(source).await?;
    let target_skus = count_skus(target).await?;
    report.count("skus", source_skus, target_skus);
    let bar = progress_bar(source_skus, options.progress);
    bar.set_message("verifying");
    let (mut events, mut snapshots, mut dead) = ([0u64; 2], [0u64; 2], [0u64; 2]);
    let mut reservation_ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = source.list_skus(after.as_deref(), SKU_PAGE).await?;
        for sku in &page {
            let here = summarise(source, sku, options.now_ms, |event| {
                if let Some(id) = reservation_id_of_key(&event.idempotency_key)
                    && reservation_ids.len() < RESERVATION_IDS_MAX
                {
                    reservation_ids.insert(id.to_owned());
                }
            })
            .await?;
            let there = summarise(target, sku, options.now_ms, |_| {}).await?;
            for (side, summary) in [&here, &there].into_iter().enumerate() {
                events[side] += summary.events;
                snapshots[side] += u64::from(summary.snapshot);
                dead[side] += summary.dead_letters;
            }
            if here.checksum != there.checksum {
                report.mismatch(format!(
                    "sku {sku}: checksum differs ({} events{} in the source, {} events{} in the target)",
                    here.events,
                    if here.snapshot { " + snapshot" } else { "" },
                    there.events,
                    if there.snapshot { " + snapshot" } else { "" },
                ));
            }
            report.skus_checked += 1;
            bar.inc(1);
        }
        if page.len() < SKU_PAGE {
            break;
        }
        after = page.last().cloned();
    }
    bar.finish_and_clear();
    report.count("events", events[0], events[1]);
    report.count("snapshots", snapshots[0], snapshots[1]);
    report.count("dead_letters", dead[0], dead[1]);
    for group in &scope.groups {
        let mut here = source.offsets(group).await?;
        let mut there = target.offsets(group).await?;
        report.count(
            format!("offsets:{group}"),
            here.len() as u64,
            there.len() as u64,
        );
        here.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        there.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        if here.len() == there.len() && here != there {
            report.mismatch(format!("offsets:{group}: watermarks differ"));
        }
    }
    for channel in &scope.channels {
        let mut here = source.pushed(channel).await?;
        let mut there = target.pushed(channel).await?;
        report.count(
            format!("pushed:{channel}"),
            here.len() as u64,
            there.len() as u64,
        );
        here.sort_by(|a, b| a.sku.cmp(&b.sku));
        there.sort_by(|a, b| a.sku.cmp(&b.sku));
        if here.len() == there.len() && here != there {
            report.mismatch(format!("pushed:{channel}: values differ"));
        }
    }
    report.count(
        "hold_expiries",
        count_hold_expiries(source).await?,
        count_hold_expiries(target).await?,
    );
    let (mut here, mut there) = (0u64, 0u64);
    for id in &reservation_ids {
        let a = source.reservation(id).await?;
        let b = target.reservation(id).await?;
        here += u64::from(a.is_some());
        there += u64::from(b.is_some());
        if a.is_some() && b.is_some() && a != b {
            report.mismatch(format!("reservation {id}: the records differ"));
        }
    }
    report.count("reservations", here, there);
    report.count(
        "push_log",
        count_push_log(source).await?,
        count_push_log(target).await?,
    );
    report.count(
        "config_audit",
        source.config_changes(CONFIG_AUDIT_MAX).await?.len() as u64,
        target.config_changes(CONFIG_AUDIT_MAX).await?.len() as u64,
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_are_read_from_line_movement_keys() {
        assert_eq!(reservation_id_of_key("r-1:0:reserve"), Some("r-1"));
        assert_eq!(
            reservation_id_of_key("cart:42:3:compensate"),
            Some("cart:42")
        );
        assert_eq!(reservation_id_of_key("order-7:release"), None);
        assert_eq!(reservation_id_of_key("r-1:x:commit"), None);
        assert_eq!(reservation_id_of_key(":0:commit"), None);
        assert_eq!(reservation_id_of_key("plain-key"), None);
    }

    #[tokio::test]
    async fn the_default_hash_read_agrees_with_the_embedded_one() {
        use crate::store::embedded::EmbeddedStore;
        use crate::store::fault::FaultyStore;
        let dir = tempfile::tempdir().unwrap();
        let embedded: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(EmbeddedStore::open(&dir.path().join("s.db")).unwrap());
        let event = |seq: u64, key: &str, hash: Option<u64>| EventRecord {
            sku: "H".into(),
            seq,
            idempotency_key: key.into(),
            // The first key has expired: its hash is still copied.
            key_expires_at_ms: if seq == 1 { 1 } else { i64::MAX },
            recorded_at_ms: 10,
            movement: vec![1, 2, seq as u8],
            movement_hash: hash,
        };
        let events = vec![
            event(1, "k1", Some(11)),
            event(2, "k2", None),
            event(3, "k3", Some(u64::MAX)),
        ];
        embedded
            .commit(CommitBatch {
                events: events.clone(),
                ..CommitBatch::default()
            })
            .await
            .unwrap();
        // FaultyStore forwards the key lookup but not this method: the trait's default body.
        let by_default = FaultyStore::new(embedded.clone())
            .events_with_hashes("H", 1, 10)
            .await
            .unwrap();
        let by_override = embedded.events_with_hashes("H", 1, 10).await.unwrap();
        assert_eq!(by_override, events);
        assert_eq!(by_default, events);
        assert_eq!(
            embedded.events_with_hashes("H", 3, 10).await.unwrap(),
            events[2..]
        );
    }

    #[test]
    fn a_store_is_not_copied_into_itself() {
        use crate::config::{StoreBackend, StoreConfig};
        let a = StoreConfig::default();
        let mut b = StoreConfig::default();
        assert!(same_store(&a, &b));
        b.path = "data/other.db".into();
        assert!(!same_store(&a, &b));
        let mut pg = StoreConfig {
            backend: StoreBackend::Postgres,
            ..StoreConfig::default()
        };
        pg.postgres.url = "postgres://db/stock".into();
        let mut other_schema = pg.clone();
        assert!(same_store(&pg, &other_schema));
        other_schema.postgres.schema = "copy".into();
        assert!(!same_store(&pg, &other_schema));
        assert!(!same_store(&pg, &a));
    }

    #[test]
    fn missing_rows_count_duplicates() {
        assert_eq!(missing(&[1, 1, 2, 3], &[1, 3]), vec![1, 2]);
        assert!(missing(&[1, 2], &[2, 1, 1]).is_empty());
    }
}
