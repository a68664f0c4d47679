//! Which partition of the movements topic a SKU's records land in: the partitioner every
//! common Kafka producer uses for keyed records, so that stocksync can tell, without
//! reading the topic, which partition (and so, with several instances, which owner) a SKU
//! belongs to (issue 13 §1).
//!
//! The rule (Apache Kafka's `DefaultPartitioner` / `BuiltInPartitioner` for records with a
//! key, and kafka-python's `DefaultPartitioner`; librdkafka's `murmur2_random` and
//! `murmur2` partitioners compute the same for keyed records): the 32-bit MurmurHash2 of
//! the key's bytes with seed `0x9747b28c` ([`murmur2`]), its sign bit cleared, modulo the
//! partition count ([`partition_for_key`]). librdkafka's own default partitioner
//! (`consistent_random`, CRC32) does **not** agree: Rust and C producers must set
//! `partitioner=murmur2_random` (README "Going to Kafka"). Records without a key are spread
//! by the producer and belong to no SKU.
//!
//! Checked three ways: the Kafka project's own test vectors below, and an integration test
//! (`tests/integration/kafka_partitioner.rs`) in which kafka-python and rdkafka (with
//! `murmur2_random`) produce keyed records to a real broker and every record lands where
//! [`partition_for_key`] says.
//!
//! May depend on: nothing else in the crate.

/// MurmurHash2's seed in Kafka's partitioner.
const SEED: u32 = 0x9747_b28c;
/// MurmurHash2's multiplier.
const M: u32 = 0x5bd1_e995;
/// MurmurHash2's shift.
const R: u32 = 24;

/// The 32-bit MurmurHash2 of `data` as Kafka computes it (`org.apache.kafka.common.utils.
/// Utils.murmur2`, read as an unsigned number: Java's `int` has the same bits).
pub fn murmur2(data: &[u8]) -> u32 {
    // Kafka mixes the length in as a Java int: lengths beyond i32 do not occur for keys.
    let length = data.len() as u32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of a record with key `key` in a topic of `partitions` partitions:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `None` for a topic of 0 partitions.
pub fn partition_for_key(key: &[u8], partitions: u32) -> Option<u32> {
    (partitions > 0).then(|| (murmur2(key) & 0x7fff_ffff) % partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors (Java `int` results), which
    /// kafka-python's `murmur2` reproduces too.
    #[test]
    fn the_hash_matches_kafkas_own_test_vectors() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "{key}");
        }
        // Every tail length (0 to 3 bytes past a 4-byte block) is covered above: 2, 6, 24,
        // 26, 48 and 3 bytes.
    }

    #[test]
    fn partitions_are_the_positive_hash_modulo_the_count() {
        // murmur2("21") is negative as a Java int: the sign bit is cleared, not negated.
        let positive = (-973_932_308_i32 as u32) & 0x7fff_ffff;
        assert_eq!(partition_for_key(b"21", 6), Some(positive % 6));
        assert_eq!(partition_for_key(b"abc", 1), Some(0));
        assert_eq!(partition_for_key(b"abc", 0), None);
    }

    proptest! {
        #[test]
        fn every_key_lands_in_range_and_always_in_the_same_partition(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            partitions in 1u32..512,
        ) {
            let partition = partition_for_key(&key, partitions).unwrap();
            prop_assert!(partition < partitions);
            prop_assert_eq!(partition_for_key(&key, partitions), Some(partition));
        }
    }
}
