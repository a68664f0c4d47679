//! `[cluster]`: several instances on one shared store.
//!
//! Owns: [`ClusterConfig`] and its validation.
//!
//! May depend on: nothing but serde.

use serde::{Deserialize, Serialize};

/// Most partitions `[cluster] partitions` may name.
pub const MAX_CLUSTER_PARTITIONS: u32 = 1_024;

/// `[cluster]`: absent on a single instance (it claims the whole store). With it, the
/// instances sharing one store (PostgreSQL or ScyllaDB) split the SKUs by partition of the
/// movements topic: each partition has one owner at a time, taken with a lease in the store
/// (see README "Running several instances").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name among the instances, unique (at most 100 bytes of letters,
    /// digits, `-`, `_`, `.`); default: `host-pid`. Instances are ordered by it when the
    /// partitions are divided.
    #[serde(default)]
    pub member_id: Option<String>,
    /// The base URL the other instances reach this one's HTTP API at
    /// (`http://10.0.0.5:8080`); movements for SKUs this instance owns are forwarded there.
    /// Default: `http://` and the address `http.listen` was bound to, which must then be a
    /// specific address (not `0.0.0.0`).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// Partitions the SKUs are divided into: the partition count of the movements topic
    /// (a SKU's partition is `murmur2(sku) mod partitions`, as Kafka's producers compute
    /// it). Every instance must use the same number; 1 to 1,024.
    pub partitions: u32,
    /// An instance that has not renewed its leases for this long loses its partitions to
    /// the others, in milliseconds (default 10,000; at least 3 × `heartbeat_ms`).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How often leases are renewed and the division of partitions is checked, in
    /// milliseconds (default 2,000).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// The credential the instances present to each other when they forward work
    /// (`Authorization: Bearer …`); the same on every instance, at least 32 characters.
    /// Use `${STOCKSYNC_CLUSTER_TOKEN}`.
    pub token: String,
}

fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_heartbeat_ms() -> u64 {
    2_000
}

impl ClusterConfig {
    /// Appends one message per problem: partitions out of range, a heartbeat that does not
    /// fit three times into the session timeout, a bad member id, URL or token.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.partitions == 0 || self.partitions > MAX_CLUSTER_PARTITIONS {
            problems.push(format!(
                "cluster.partitions must be 1 to {MAX_CLUSTER_PARTITIONS} (the movements topic's partition count), not {}",
                self.partitions
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms.saturating_mul(3) > self.session_timeout_ms {
            problems.push(format!(
                "cluster.heartbeat_ms ({}) must be positive and at most a third of cluster.session_timeout_ms ({})",
                self.heartbeat_ms, self.session_timeout_ms
            ));
        }
        if let Some(id) = &self.member_id
            && (id.is_empty()
                || id.len() > 100
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            problems.push(format!(
                "cluster.member_id {id:?} must be 1 to 100 letters, digits, '-', '_' or '.'"
            ));
        }
        if let Some(advertised) = &self.advertise_url {
            let url = advertised.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() < "http://x".len()
            {
                problems.push(format!(
                    "cluster.advertise_url {advertised:?} must be an http:// or https:// base URL"
                ));
            }
        }
        if self.token.chars().count() < 32 {
            problems.push("cluster.token must be at least 32 characters".to_owned());
        }
    }
}
