//! A crash in the middle of a group commit: a writer process is killed (SIGKILL) between
//! the write and the acknowledgement, then the store is reopened and checked.
//!
//! [`run_writer`] is the writer (`stocksync store-crash-writer --config FILE --acks FILE
//! --round N`, hidden from `--help`): through [`crate::store::open`] it commits batches in a
//! loop, each with events for 2 to [`SKUS`] SKUs (1 to 3 events each), their idempotency
//! keys, a snapshot per SKU at its last event and the offset watermark `crash-writer/crash/N`
//! = batch number + 1, and after each `Ok` appends one line to the acks file (written in one
//! `write` call: a kill leaves whole lines). Every key names its batch, the batch's event
//! count and the SKU's event count in it: `c{round}.{batch}/{total}/{per_sku}/{sku}/{seq}`,
//! so a check can tell a whole batch from a part of one without the writer's memory.
//!
//! [`crash_mid_group_commit`] runs rounds of start writer → wait a random moment → SIGKILL
//! → reopen, wait until the store is quiet (a server may finish a transaction the killed
//! writer had sent) and check ([`check_after_crash`]): every acknowledged batch is fully present;
//! no batch is partly present (all or nothing per batch; on ScyllaDB, whose batches are
//! atomic per SKU partition only, all or nothing per SKU and batch); every visible event has
//! its key and every key its event; each SKU's seq is gapless and its snapshot is at its
//! last event; the batches of a round present are a prefix of the ones it wrote, and the
//! offset watermark agrees with them.
//!
//! May depend on: `config`, `domain`, `clock`, the rest of `store`.

use super::{DAY_MS, StoreFactory, now_ms, open, snapshot, store_toml, watermark};
use crate::config::StoreConfig;
use crate::store::{CommitBatch, EventRecord, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How many SKUs the writer spreads its batches over.
pub const SKUS: usize = 48;
/// The consumer group of the writer's offset watermarks (one partition per round).
pub const GROUP: &str = "crash-writer";
/// The topic of the writer's offset watermarks.
pub const TOPIC: &str = "crash";
/// The source of the writer's movements.
const SOURCE: &str = "crash-writer";

/// SKU `i` of the writer.
pub fn sku(i: usize) -> String {
    format!("CRASH-{i:02}")
}

/// One acknowledged batch, as a line of the acks file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    /// The round (the writer's `--round`).
    pub round: u32,
    /// The batch number within the round, from 0.
    pub batch: u64,
    /// `(sku, seq, idempotency key)` of every event of the batch.
    pub events: Vec<(String, u64, String)>,
}

/// What a key of the writer says about its event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyInfo {
    round: u32,
    batch: u64,
    total: u64,
    per_sku: u64,
}

fn key(round: u32, batch: u64, total: u64, per_sku: u64, sku: &str, seq: u64) -> String {
    format!("c{round}.{batch}/{total}/{per_sku}/{sku}/{seq}")
}

fn parse_key(key: &str) -> Option<KeyInfo> {
    let mut parts = key.split('/');
    let (round, batch) = parts.next()?.strip_prefix('c')?.split_once('.')?;
    Some(KeyInfo {
        round: round.parse().ok()?,
        batch: batch.parse().ok()?,
        total: parts.next()?.parse().ok()?,
        per_sku: parts.next()?.parse().ok()?,
    })
}

/// The writer: commits batches through the store of `config` until killed (or after
/// `max_batches`), appending an [`Ack`] line to `acks` after each commit returned `Ok`.
/// Resumes each SKU after its last stored event.
///
/// Errors: the store's (opening, loading, a failed commit) or the acks file's.
pub async fn run_writer(
    config: &StoreConfig,
    acks: &Path,
    round: u32,
    max_batches: u64,
) -> anyhow::Result<()> {
    let store = crate::store::open(config).await?;
    let names: Vec<String> = (0..SKUS).map(sku).collect();
    let loaded = store.load_skus(&names, now_ms()).await?;
    let mut last: Vec<u64> = loaded
        .iter()
        .map(|one| {
            let from_events = one.loaded.events_after.last().map(|e| e.seq);
            from_events
                .or(one.loaded.snapshot.as_ref().map(|s| s.seq))
                .unwrap_or(0)
        })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acks)?;
    for batch in 0..max_batches {
        let mut chosen: Vec<(usize, u64)> = (0..SKUS)
            .filter(|_| rand::random_range(0..3) == 0)
            .map(|i| (i, rand::random_range(1..=3)))
            .collect();
        if chosen.len() < 2 {
            chosen = vec![(batch as usize % SKUS, 2), ((batch as usize + 1) % SKUS, 1)];
        }
        let total: u64 = chosen.iter().map(|(_, n)| n).sum();
        let now = now_ms();
        let mut commit = CommitBatch {
            offsets: vec![watermark(GROUP, TOPIC, round as i32, batch as i64 + 1)],
            ..CommitBatch::default()
        };
        let mut ack = Ack {
            round,
            batch,
            events: Vec::new(),
        };
        for &(i, n) in &chosen {
            let name = sku(i);
            for seq in last[i] + 1..=last[i] + n {
                let key = key(round, batch, total, n, &name, seq);
                let movement = super::movement(&name, &key, SOURCE, "receipt", 1);
                commit.events.push(EventRecord {
                    sku: name.clone(),
                    seq,
                    idempotency_key: key.clone(),
                    key_expires_at_ms: now + DAY_MS,
                    recorded_at_ms: now,
                    movement: crate::store::codec::encode_movement(&movement),
                    movement_hash: Some(seq),
                });
                ack.events.push((name.clone(), seq, key));
            }
            commit.snapshots.push(snapshot(&name, last[i] + n));
        }
        store.commit(commit).await?;
        for &(i, n) in &chosen {
            last[i] += n;
        }
        let mut line = serde_json::to_string(&ack)?;
        line.push('\n');
        file.write_all(line.as_bytes())?;
        file.flush()?;
    }
    Ok(())
}

/// What one check after a crash found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashFindings {
    /// Batches present per round (a prefix of the round's batches).
    pub present: BTreeMap<u32, u64>,
    /// Batches acknowledged per round.
    pub acknowledged: BTreeMap<u32, u64>,
    /// Events in the store.
    pub events: u64,
}

impl CrashFindings {
    /// Rounds whose in-flight batch was durable but never acknowledged (killed between the
    /// write and the acknowledgement).
    pub fn durable_unacknowledged(&self) -> usize {
        self.present
            .iter()
            .filter(|(round, present)| {
                **present > self.acknowledged.get(round).copied().unwrap_or(0)
            })
            .count()
    }
}

/// Reads the whole lines of an acks file (a line cut by the kill is not one).
fn read_acks(path: &Path) -> Vec<Ack> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("ack line {line:?}: {e}")))
        .collect()
}

/// What a check reads of the writer's SKUs (events, snapshot) and offsets: a sign of change.
async fn fingerprint(store: &dyn Store) -> Vec<i64> {
    let mut seen = Vec::with_capacity(SKUS * 2);
    for i in 0..SKUS {
        let name = sku(i);
        let events = store.events(&name, 1, 1_000_000).await.expect("events");
        let loaded = store.load_sku(&name, now_ms()).await.expect("load_sku");
        seen.push(events.len() as i64);
        seen.push(loaded.snapshot.map_or(-1, |s| s.seq as i64));
    }
    let offsets = store.offsets(GROUP).await.expect("offsets");
    seen.extend(offsets.iter().map(|w| w.next_offset));
    seen
}

/// Waits until two reads 100 ms apart agree: a server may still finish a transaction the
/// killed writer had sent (PostgreSQL commits it unless it noticed the closed connection
/// first), and the check reads SKU by SKU, not in one snapshot.
///
/// Panics when the store is still changing after 10 s.
async fn settle(store: &dyn Store) {
    let mut last = fingerprint(store).await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fingerprint(store).await;
        if now == last {
            return;
        }
        last = now;
    }
    panic!("the store was still changing 10 s after the writer was killed");
}

/// Opens the store of `config` after a crash and checks it against the acknowledged
/// batches `acks` (see the module doc); `atomic_across_skus` is false on a backend whose
/// batch is atomic per SKU only.
///
/// Panics on the first violation.
pub async fn check_after_crash(
    config: &StoreConfig,
    acks: &[Ack],
    atomic_across_skus: bool,
) -> CrashFindings {
    let store = open(config).await;
    settle(store.as_ref()).await;
    let now = now_ms();
    let mut findings = CrashFindings::default();
    // batch → (total, events seen); (batch, sku) → (per_sku, seqs seen)
    let mut batches: BTreeMap<(u32, u64), (u64, u64)> = BTreeMap::new();
    let mut parts: BTreeMap<(u32, u64, String), (u64, Vec<u64>)> = BTreeMap::new();
    let mut stored: BTreeMap<(String, u64), String> = BTreeMap::new();
    for i in 0..SKUS {
        let name = sku(i);
        let events = store.events(&name, 1, 1_000_000).await.expect("events");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{name}: gapless seq"
        );
        let loaded = store.load_sku(&name, now).await.expect("load_sku");
        let mut keys = loaded.idempotency_keys.clone();
        keys.sort_by_key(|(_, seq)| *seq);
        let expected: Vec<(String, u64)> = events
            .iter()
            .map(|e| (e.idempotency_key.clone(), e.seq))
            .collect();
        assert_eq!(
            keys, expected,
            "{name}: every event has its key and every key its event"
        );
        for event in &events {
            assert_eq!(
                store
                    .find_idempotency_key(&name, &event.idempotency_key, now)
                    .await
                    .expect("find_idempotency_key"),
                Some(event.seq),
                "{name}: key {}",
                event.idempotency_key
            );
        }
        match events.last() {
            None => assert_eq!(loaded.snapshot, None, "{name}: a snapshot without events"),
            Some(newest) => {
                assert_eq!(
                    loaded.snapshot,
                    Some(snapshot(&name, newest.seq)),
                    "{name}: the snapshot is at the last event"
                );
                assert!(loaded.events_after.is_empty(), "{name}");
            }
        }
        for event in events {
            let info = parse_key(&event.idempotency_key).unwrap_or_else(|| {
                panic!("{name}: a key not of the writer: {}", event.idempotency_key)
            });
            let whole = batches
                .entry((info.round, info.batch))
                .or_insert((info.total, 0));
            assert_eq!(whole.0, info.total, "{}", event.idempotency_key);
            whole.1 += 1;
            let part = parts
                .entry((info.round, info.batch, name.clone()))
                .or_insert((info.per_sku, Vec::new()));
            part.1.push(event.seq);
            stored.insert((name.clone(), event.seq), event.idempotency_key);
            findings.events += 1;
        }
    }
    for ((round, batch, name), (per_sku, seqs)) in &parts {
        assert_eq!(
            seqs.len() as u64,
            *per_sku,
            "batch c{round}.{batch} is partly present for {name}: seqs {seqs:?}"
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: {seqs:?}"
        );
    }
    if atomic_across_skus {
        for ((round, batch), (total, seen)) in &batches {
            assert_eq!(
                seen, total,
                "batch c{round}.{batch} is partly present: {seen} of its {total} events"
            );
        }
    }
    for ack in acks {
        for (name, seq, key) in &ack.events {
            assert_eq!(
                stored.get(&(name.clone(), *seq)),
                Some(key),
                "acknowledged batch c{}.{} lost {name}/{seq}",
                ack.round,
                ack.batch
            );
        }
        *findings.acknowledged.entry(ack.round).or_default() += 1;
    }
    let rounds: BTreeSet<u32> = batches
        .keys()
        .map(|(round, _)| *round)
        .chain(findings.acknowledged.keys().copied())
        .collect();
    let offsets = store.offsets(GROUP).await.expect("offsets");
    for round in rounds {
        let present: Vec<u64> = batches
            .keys()
            .filter(|(r, _)| *r == round)
            .map(|(_, batch)| *batch)
            .collect();
        let count = present.len() as u64;
        assert_eq!(
            present,
            (0..count).collect::<Vec<_>>(),
            "round {round}: a prefix"
        );
        let acknowledged = findings.acknowledged.get(&round).copied().unwrap_or(0);
        assert!(
            count == acknowledged || count == acknowledged + 1,
            "round {round}: {count} batches present, {acknowledged} acknowledged"
        );
        let watermark = offsets
            .iter()
            .find(|w| w.topic == TOPIC && w.partition == round as i32)
            .map_or(0, |w| w.next_offset);
        if atomic_across_skus {
            assert_eq!(
                watermark, count as i64,
                "round {round}: the offset of the batches present"
            );
        } else {
            assert!(
                watermark == acknowledged as i64 || watermark == acknowledged as i64 + 1,
                "round {round}: offset {watermark}, {acknowledged} acknowledged"
            );
        }
        findings.present.insert(round, count);
    }
    if let Err(error) = store.close().await {
        panic!("closing the store after the check: {error}");
    }
    findings
}

/// The crash check: `rounds` times, starts `binary store-crash-writer` on one fresh store
/// of `factory`, waits until it acknowledged a batch plus a random 0–150 ms, SIGKILLs it,
/// and checks the reopened store with [`check_after_crash`]. Returns the last findings.
///
/// Panics when the writer fails or a check finds a violation.
pub async fn crash_mid_group_commit(
    factory: &StoreFactory,
    binary: &Path,
    rounds: u32,
) -> CrashFindings {
    let config = factory.fresh_config();
    let dir = tempfile::tempdir().expect("a temp dir for the crash writer");
    let config_path = dir.path().join("stocksync.toml");
    std::fs::write(&config_path, store_toml(&config)).expect("write the writer's config");
    let acks_path = dir.path().join("acks.jsonl");
    let mut findings = CrashFindings::default();
    for round in 0..rounds {
        let log_path = dir.path().join(format!("writer-{round}.log"));
        let log = std::fs::File::create(&log_path).expect("the writer's log");
        let mut child = std::process::Command::new(binary)
            .arg("store-crash-writer")
            .arg("--config")
            .arg(&config_path)
            .arg("--acks")
            .arg(&acks_path)
            .args(["--round", &round.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if read_acks(&acks_path).iter().any(|ack| ack.round == round) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the crash writer exited ({status}) before acknowledging a batch:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the crash writer acknowledged nothing in 90 s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..150))).await;
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the crash writer exited ({status}) before the kill:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        child.kill().expect("SIGKILL the crash writer"); // SIGKILL on Unix
        child.wait().expect("reap the crash writer");
        let acks = read_acks(&acks_path);
        findings = check_after_crash(&config, &acks, factory.atomic_across_skus()).await;
        assert!(findings.events > 0);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_tells_its_batch_and_counts() {
        let key = key(3, 41, 12, 2, "CRASH-07", 9);
        assert_eq!(key, "c3.41/12/2/CRASH-07/9");
        assert_eq!(
            parse_key(&key),
            Some(KeyInfo {
                round: 3,
                batch: 41,
                total: 12,
                per_sku: 2
            })
        );
        assert_eq!(parse_key("CRASH-07#9"), None);
    }

    #[test]
    fn a_line_cut_by_the_kill_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks");
        let ack = Ack {
            round: 0,
            batch: 0,
            events: vec![("CRASH-01".into(), 1, "k".into())],
        };
        let line = serde_json::to_string(&ack).unwrap();
        std::fs::write(&path, format!("{line}\n{}", &line[..10])).unwrap();
        assert_eq!(read_acks(&path), vec![ack]);
    }
}
