//! Compact per-SKU memory of idempotency keys, and the stable hashes the ledger uses.
//!
//! Owns: [`KeyFilter`] (what a live SKU remembers of its unexpired idempotency keys: eight
//! bytes per key), [`fnv1a`] (the stable hash behind SKU → shard routing and key
//! fingerprints).
//!
//! A [`KeyFilter`] entry is a 56-bit fingerprint of the key and an 8-bit coarse expiry
//! bucket, kept sorted. It only ever answers "maybe seen" or "certainly not seen": a hit is
//! confirmed exactly by the shard (its not-yet-durable keys, then the store's index), so a
//! fingerprint collision costs one store lookup and never drops a movement, and an entry
//! kept past its expiry costs the same and nothing else. An unexpired key is never reported
//! "not seen": its bucket lies at most 64 buckets ahead of the current one and so reads as
//! live in the circular comparison (see [`KeyFilter::maybe_contains`]).
//!
//! Also owns [`movement_hash`], the content hash kept with each key so a key reused for
//! another movement is told apart from a redelivery. It is kept only where the key is
//! confirmed exactly (the not-yet-durable keys of a SKU, the store's key table), never in
//! the [`KeyFilter`], which stays at eight bytes a key.
//!
//! May depend on: `domain` and `store::codec` (for [`movement_hash`]).

/// The hash of `movement` as submitted that decides whether a second movement with the
/// same idempotency key (of the same SKU: keys are scoped per SKU) is a redelivery
/// (`duplicate`) or another movement (`IdempotencyConflict`).
///
/// The first 8 bytes (big-endian) of SHA-256 over the movement's stored binary encoding
/// (`store::codec::encode_movement`: source, type and every field of the kind), taken with
/// `occurred_at_ms` and `source` cleared and `schema_version` set to the current one: those
/// may legitimately differ between deliveries of one event (a producer stamping its send
/// time, the same order arriving by webhook and by the backstop poller, a newer contract
/// version); everything that changes stock (the type and every field of the kind) may not.
/// The SKU and the key themselves are the same by definition. Computed before the ledger
/// records its own decisions (route, count basis, time) into the movement. Stable across
/// builds as long as the encoding is: the hashes stored in the key table by earlier builds
/// stay comparable (a test holds it to that definition).
///
/// Runs on every applied movement, so it encodes the canonical form straight from the
/// borrowed kind into a reused per-thread buffer (no copy of the movement, no allocation
/// once warm; the buffer is given back after an unusually large movement).
pub fn movement_hash(movement: &crate::domain::Movement) -> u64 {
    use sha2::{Digest, Sha256};
    use std::cell::RefCell;
    /// Buffers larger than this are not kept between calls, in bytes.
    const KEEP_BYTES: usize = 4_096;
    thread_local! {
        static CANONICAL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    CANONICAL.with_borrow_mut(|buffer| {
        buffer.clear();
        crate::store::codec::encode_movement_into(
            buffer,
            crate::domain::SCHEMA_VERSION,
            "",
            None,
            &movement.kind,
        );
        let digest = Sha256::digest(buffer.as_slice());
        if buffer.capacity() > KEEP_BYTES {
            *buffer = Vec::new();
        }
        let mut first = [0_u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    })
}

/// Buckets per TTL: a key's coarse expiry is rounded down to `ttl / BUCKETS_PER_TTL`.
const BUCKETS_PER_TTL: i64 = 64;

/// The FNV-1a 64-bit hash of `bytes`.
///
/// Stable by construction (fixed offset basis and prime, no per-process seed), so it may
/// decide placement that must agree between builds, processes and instances: SKU → shard
/// today, and later Kafka partitions and instances → shards.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// The shard (in `0..shards`) that owns `sku`: FNV-1a of the SKU's UTF-8 bytes modulo the
/// shard count. `shards` must be at least 1.
pub fn shard_of(sku: &str, shards: usize) -> usize {
    debug_assert!(shards >= 1);
    (fnv1a(sku.as_bytes()) % shards.max(1) as u64) as usize
}

/// How keys become fingerprints and times become expiry buckets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyScheme {
    /// Width of one expiry bucket, in milliseconds (at least 1).
    bucket_ms: i64,
    /// Fingerprint bits kept (56 normally; tests narrow it to force collisions).
    fingerprint_mask: u64,
}

impl KeyScheme {
    /// The scheme for keys remembered `ttl_secs` seconds.
    pub(crate) fn new(ttl_secs: u64) -> Self {
        let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            bucket_ms: (ttl_ms / BUCKETS_PER_TTL).max(1),
            fingerprint_mask: FINGERPRINT_MASK,
        }
    }

    /// The same scheme keeping only the fingerprint bits in `mask` (a test hook: a tiny
    /// mask makes different keys collide).
    #[cfg(test)]
    pub(crate) fn with_fingerprint_mask(mut self, mask: u64) -> Self {
        self.fingerprint_mask = mask & FINGERPRINT_MASK;
        self
    }

    /// The 56-bit fingerprint of `key`.
    pub(crate) fn fingerprint(&self, key: &str) -> u64 {
        let hash = fnv1a(key.as_bytes());
        // Fold the high bits in so that keys differing only at the end spread well.
        (hash ^ (hash >> 29)) & self.fingerprint_mask
    }

    /// The 8-bit bucket of a time (milliseconds since the epoch), modulo 256.
    fn bucket(&self, at_ms: i64) -> u8 {
        (at_ms.max(0) / self.bucket_ms) as u8
    }
}

/// The unexpired idempotency keys of one SKU as `fingerprint << 8 | expiry bucket` entries
/// (see the module docs): a sorted run followed by a short unsorted tail of recent inserts.
///
/// Inserting into one sorted vector moves half of it each time, which for a hot SKU with
/// hundreds of thousands of keys in its window cost more than everything else per movement.
/// New entries go to the tail instead, which is sorted and merged into the run once it
/// holds about √n entries: an insert costs O(√n) moves amortised, a lookup a binary search
/// plus a scan of at most that many tail entries.
#[derive(Debug, Default)]
pub(crate) struct KeyFilter {
    /// `entries[..sorted]` is sorted; `entries[sorted..]` is the tail, in insertion order.
    entries: Vec<u64>,
    sorted: u32,
}

/// Fingerprint bits kept: 56, so that even a hot SKU with a million keys in its window
/// sends about one new key in 70 billion to the store for confirmation (with 24 bits it was
/// one in 17, and each confirmation scans that SKU's keys in the store).
const FINGERPRINT_MASK: u64 = (1 << 56) - 1;

/// Fewest tail entries before a merge (small filters merge rarely and scan little).
const MIN_TAIL: usize = 32;

impl KeyFilter {
    /// Builds a filter from `(key, expires_at_ms)` pairs.
    pub(crate) fn from_keys<'a>(
        scheme: &KeyScheme,
        keys: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Self {
        let mut entries: Vec<u64> = keys
            .into_iter()
            .map(|(key, expires_at_ms)| entry(scheme, key, expires_at_ms))
            .collect();
        entries.sort_unstable();
        entries.dedup();
        entries.shrink_to_fit();
        let sorted = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        Self { entries, sorted }
    }

    fn sorted_len(&self) -> usize {
        (self.sorted as usize).min(self.entries.len())
    }

    /// Sorts the tail and merges it into the sorted run (dropping duplicates): O(n) plus
    /// sorting the tail.
    fn merge_tail(&mut self) {
        let sorted = self.sorted_len();
        let mut tail = self.entries.split_off(sorted);
        tail.sort_unstable();
        if !tail.is_empty() {
            let run = std::mem::take(&mut self.entries);
            let mut merged = Vec::with_capacity(run.len() + tail.len());
            let (mut a, mut b) = (run.into_iter().peekable(), tail.into_iter().peekable());
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x <= y => a.next(),
                    (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                    (Some(_), None) => a.next(),
                    (None, None) => break,
                };
                merged.extend(next);
            }
            self.entries = merged;
        }
        self.entries.dedup();
        self.sorted = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
    }

    /// Remembers `key`, which expires at `expires_at_ms`.
    pub(crate) fn insert(&mut self, scheme: &KeyScheme, key: &str, expires_at_ms: i64) {
        let value = entry(scheme, key, expires_at_ms);
        let sorted = self.sorted_len();
        if self.entries[..sorted].binary_search(&value).is_ok()
            || self.entries[sorted..].contains(&value)
        {
            return;
        }
        self.entries.push(value);
        let tail = self.entries.len() - sorted;
        if tail >= MIN_TAIL.max(sorted.isqrt()) {
            self.merge_tail();
        }
    }

    /// False when `key` was certainly not recorded in the TTL window that contains
    /// `now_ms`; true when it may have been (confirm exactly).
    pub(crate) fn maybe_contains(&self, scheme: &KeyScheme, key: &str, now_ms: i64) -> bool {
        let fingerprint = scheme.fingerprint(key) << 8;
        let current = scheme.bucket(now_ms);
        let (run, tail) = self.entries.split_at(self.sorted_len());
        let start = run.partition_point(|e| *e < fingerprint);
        run[start..]
            .iter()
            .take_while(|e| *e & !0xff == fingerprint)
            .chain(tail.iter().filter(|e| *e & !0xff == fingerprint))
            .any(|e| is_live(*e as u8, current))
    }

    /// Forgets entries whose bucket has passed; gives back spare capacity.
    pub(crate) fn prune(&mut self, scheme: &KeyScheme, now_ms: i64) {
        let current = scheme.bucket(now_ms);
        self.entries.retain(|e| is_live(*e as u8, current));
        self.merge_tail();
        if self.entries.capacity() > self.entries.len() * 2 + 8 {
            self.entries.shrink_to_fit();
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn entry(scheme: &KeyScheme, key: &str, expires_at_ms: i64) -> u64 {
    (scheme.fingerprint(key) << 8) | u64::from(scheme.bucket(expires_at_ms))
}

/// Whether an entry with expiry bucket `bucket` is still live in bucket `current`: its
/// bucket is `current` or up to 127 buckets ahead (a live key is at most 65 ahead), modulo
/// 256. An entry more than 128 buckets past reads as live again: a false "maybe", which
/// the exact confirmation absorbs; pruning keeps that rare.
fn is_live(bucket: u8, current: u8) -> bool {
    bucket.wrapping_sub(current) < 128
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition the key table's stored hashes were written with (issue 10): SHA-256
    /// of the encoding of a copy with `occurred_at_ms` and `source` cleared and the current
    /// schema version, first 8 bytes big-endian.
    fn reference_movement_hash(movement: &crate::domain::Movement) -> u64 {
        use sha2::{Digest, Sha256};
        let mut canonical = movement.clone();
        canonical.occurred_at_ms = None;
        canonical.source.clear();
        canonical.schema_version = crate::domain::SCHEMA_VERSION;
        let digest = Sha256::digest(crate::store::codec::encode_movement(&canonical));
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    #[test]
    fn movement_hash_is_the_stored_definition_for_every_kind() {
        use crate::domain::{CountBasis, Movement, MovementKind};
        let kinds = vec![
            MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 2,
            },
            MovementKind::Adjustment {
                location: "WH-1".into(),
                delta: -3,
                reason: "breakage".into(),
            },
            MovementKind::Count {
                location: "WH-1".into(),
                on_hand: Some(7),
                watermark: 12,
                basis: Some(CountBasis::Book),
                booked: Some(vec!["line-1".into()]),
            },
            MovementKind::Sale {
                reservation: "order-1".into(),
                quantity: 1,
                location: None,
                route: vec!["WH-1".into(), "WH-2".into()],
            },
            MovementKind::Reservation {
                reservation: "order-2".into(),
                quantity: 4,
                location: Some("WH-2".into()),
                route: Vec::new(),
                expires_at_ms: Some(1_700_000_000_000),
            },
            MovementKind::Cancellation {
                reservation: "order-2".into(),
                quantity: Some(1),
                reason: Some("customer".into()),
                write_off: true,
            },
            MovementKind::TransferDispatch {
                transfer: "t-1".into(),
                from: "WH-1".into(),
                to: "WH-2".into(),
                quantity: 5,
            },
            MovementKind::Return {
                location: None,
                quantity: 1,
                reservation: Some("order-1".into()),
                restock: true,
            },
        ];
        let mut hashes = std::collections::HashSet::new();
        for kind in kinds {
            for (source, occurred_at_ms, schema_version) in [
                ("wms-1", None, crate::domain::SCHEMA_VERSION),
                ("", Some(-5), 0),
                (
                    "shopify:eu",
                    Some(1_700_000_000_123),
                    crate::domain::SCHEMA_VERSION,
                ),
            ] {
                let movement = Movement {
                    schema_version,
                    sku: "SKU-1".into(),
                    idempotency_key: "k-1".into(),
                    source: source.into(),
                    occurred_at_ms,
                    kind: kind.clone(),
                };
                assert_eq!(
                    movement_hash(&movement),
                    reference_movement_hash(&movement),
                    "{movement:?}"
                );
                hashes.insert(movement_hash(&movement));
            }
        }
        // Source, time and version do not count; the kind and its fields do.
        assert_eq!(hashes.len(), 8);
        let huge = Movement {
            schema_version: crate::domain::SCHEMA_VERSION,
            sku: "SKU-1".into(),
            idempotency_key: "k-2".into(),
            source: String::new(),
            occurred_at_ms: None,
            kind: MovementKind::Adjustment {
                location: "WH-1".into(),
                delta: 1,
                reason: "x".repeat(10_000),
            },
        };
        assert_eq!(movement_hash(&huge), reference_movement_hash(&huge));
        let small = Movement {
            kind: MovementKind::Receipt {
                location: "WH-1".into(),
                quantity: 2,
            },
            ..huge.clone()
        };
        assert_eq!(movement_hash(&small), reference_movement_hash(&small));
    }

    #[test]
    fn fnv1a_is_the_reference_hash() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_of("SKU-1", 1), 0);
        assert!(shard_of("SKU-1", 16) < 16);
    }

    #[test]
    fn keys_are_found_until_they_expire_and_pruned_after() {
        let scheme = KeyScheme::new(640); // 10 s buckets
        let now = 1_700_000_000_000;
        let ttl_ms = 640_000;
        let mut filter = KeyFilter::from_keys(&scheme, [("a", now + ttl_ms)]);
        filter.insert(&scheme, "b", now + 1_000);
        assert!(filter.maybe_contains(&scheme, "a", now));
        assert!(filter.maybe_contains(&scheme, "b", now));
        assert!(!filter.maybe_contains(&scheme, "c", now));
        // `b` expired (its bucket passed); `a` is live until its own expiry.
        let later = now + 20_000;
        assert!(!filter.maybe_contains(&scheme, "b", later));
        assert!(filter.maybe_contains(&scheme, "a", now + ttl_ms - 1));
        filter.prune(&scheme, later);
        assert_eq!(filter.len(), 1);
    }

    #[test]
    fn a_hot_sku_with_many_keys_finds_every_one_through_run_and_tail() {
        let scheme = KeyScheme::new(3600);
        let now = 1_700_000_000_000;
        let expiry = now + 3_600_000;
        let mut filter = KeyFilter::default();
        for n in 0..10_000 {
            filter.insert(&scheme, &format!("order-{n}"), expiry);
            // A repeat (in the run or still in the tail) adds nothing.
            filter.insert(&scheme, &format!("order-{}", n / 2), expiry);
        }
        assert!(filter.len() <= 10_000);
        assert!(
            filter.len() >= 9_990,
            "only fingerprint collisions may merge"
        );
        assert!((0..10_000).all(|n| filter.maybe_contains(&scheme, &format!("order-{n}"), now)));
        let strangers = (0..10_000)
            .filter(|n| filter.maybe_contains(&scheme, &format!("refund-{n}"), now))
            .count();
        assert!(strangers < 50, "{strangers} false maybes out of 10,000");
        // The tail stays short: at most about √n entries wait unsorted.
        let tail = filter.entries.len() - filter.sorted_len();
        assert!(tail <= 10_000usize.isqrt() + MIN_TAIL, "tail of {tail}");
    }

    #[test]
    fn a_narrow_mask_makes_every_key_collide() {
        let scheme = KeyScheme::new(3600).with_fingerprint_mask(0);
        let filter = KeyFilter::from_keys(&scheme, [("a", 1_000)]);
        assert!(filter.maybe_contains(&scheme, "zzz", 0));
    }
}
