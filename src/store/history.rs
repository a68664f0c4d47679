//! Movement history for the audit API and the `stocksync history` CLI: filtered rows of the
//! event log with the levels each movement left behind, and their CSV export.
//!
//! Owns: [`MovementRow`] (the shape both the JSON API and the CSV share), [`movement_rows`]
//! and [`write_csv`]. Resulting levels are not stored with each event (that would grow every
//! hot-path write); they are recomputed by replaying the SKU's log from its first event with
//! the pure state machine, at most [`MAX_REPLAY_EVENTS`] events per SKU and page.
//!
//! May depend on: `domain`, the [`Store`] trait.

use super::{EventQuery, Store, StoreError};
use crate::domain::{Movement, Sku, SkuState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A SKU with more events than this before the page's last one gets no `levels` (the
/// replay would be too long for an interactive query).
pub const MAX_REPLAY_EVENTS: u64 = 200_000;

/// The most rows one history query returns.
pub const MAX_LIMIT: usize = 10_000;

/// Stock at one location after a movement, in base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelAfter {
    /// The location id.
    pub location: String,
    /// Units physically there.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
    /// on_hand − reserved.
    pub available: i64,
}

/// One movement of the history, as the API and CSV show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MovementRow {
    /// Cursor for the next page (`after=`).
    pub cursor: u64,
    /// The SKU.
    pub sku: String,
    /// Sequence number within the SKU.
    pub seq: u64,
    /// When the ledger recorded it, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// When the source says it happened, in milliseconds since the Unix epoch, if known.
    pub occurred_at_ms: Option<i64>,
    /// Who produced it (`wms-1`, `shopify:main`).
    pub source: String,
    /// The movement's kind (`receipt`, `sale`, …).
    pub kind: String,
    /// The movement's idempotency key.
    pub idempotency_key: String,
    /// The whole movement as recorded.
    pub movement: serde_json::Value,
    /// Levels per location after the movement; `None` when not computed (replay too long).
    pub levels_after: Option<Vec<LevelAfter>>,
    /// What the event did: `applied` (also every event stored before outcomes were),
    /// `parked` (it waits for its order line) or `ignored` (recorded, no effect).
    #[serde(default = "applied")]
    pub outcome: String,
    /// Why it was parked or ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    /// Parked movements this event applied (their effects are part of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unparked: Option<u64>,
    /// Parked movements this event expired into the dead-letter store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<u64>,
}

fn applied() -> String {
    "applied".to_owned()
}

/// Reads the history rows matching `query` (its `limit` capped at [`MAX_LIMIT`]), with the
/// resulting levels when `with_levels`.
///
/// Errors: the store's error; [`StoreError::Corrupt`] when a recorded movement cannot be
/// decoded.
pub async fn movement_rows(
    store: &dyn Store,
    query: &EventQuery,
    with_levels: bool,
) -> Result<Vec<MovementRow>, StoreError> {
    let mut query = query.clone();
    query.limit = query.limit.clamp(1, MAX_LIMIT);
    let events = store.query_events(&query).await?;
    let mut rows = Vec::with_capacity(events.len());
    for history in events {
        let event = history.event;
        let movement = event.movement_json()?;
        // A stored outcome that does not decode reads as applied (the row is still shown).
        let outcome: serde_json::Value = history
            .outcome
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(serde_json::Value::Null);
        let text = |field: &str| {
            movement
                .get(field)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        rows.push(MovementRow {
            cursor: history.cursor,
            source: text("source"),
            kind: text("type"),
            occurred_at_ms: movement.get("occurred_at_ms").and_then(|v| v.as_i64()),
            sku: event.sku,
            seq: event.seq,
            recorded_at_ms: event.recorded_at_ms,
            idempotency_key: event.idempotency_key,
            movement,
            levels_after: None,
            outcome: outcome
                .get("outcome")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("applied")
                .to_owned(),
            outcome_reason: outcome
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            unparked: outcome.get("unparked").and_then(serde_json::Value::as_u64),
            dead_lettered: outcome
                .get("dead_lettered")
                .and_then(serde_json::Value::as_u64),
        });
    }
    if with_levels {
        attach_levels(store, &mut rows).await?;
    }
    Ok(rows)
}

/// Replays each SKU of the page once, up to its highest sequence number on the page.
async fn attach_levels(store: &dyn Store, rows: &mut [MovementRow]) -> Result<(), StoreError> {
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    for row in rows.iter() {
        let entry = highest.entry(row.sku.clone()).or_default();
        *entry = (*entry).max(row.seq);
    }
    let mut levels: HashMap<(String, u64), Vec<LevelAfter>> = HashMap::new();
    let wanted: std::collections::HashSet<(String, u64)> =
        rows.iter().map(|row| (row.sku.clone(), row.seq)).collect();
    for (sku, last) in highest {
        if last > MAX_REPLAY_EVENTS {
            continue;
        }
        let events = store.events(&sku, 1, last as usize).await?;
        let mut state = SkuState::new(Sku(sku.clone()));
        for event in events {
            let corrupt = |message: String| StoreError::Corrupt {
                sku: sku.clone(),
                message,
            };
            let movement: Movement = event.movement()?;
            state
                .apply(&movement, event.seq)
                .map_err(|e| corrupt(format!("event {} no longer applies: {e}", event.seq)))?;
            if wanted.contains(&(sku.clone(), event.seq)) {
                let after = state
                    .levels()
                    .into_iter()
                    .map(|level| LevelAfter {
                        location: level.location.to_string(),
                        on_hand: level.on_hand,
                        reserved: level.reserved,
                        available: level.available(),
                    })
                    .collect();
                levels.insert((sku.clone(), event.seq), after);
            }
        }
    }
    for row in rows.iter_mut() {
        row.levels_after = levels.remove(&(row.sku.clone(), row.seq));
    }
    Ok(())
}

/// Writes `rows` as CSV with the header
/// `cursor,recorded_at_ms,occurred_at_ms,sku,seq,source,kind,idempotency_key,outcome,outcome_reason,levels_after,movement`;
/// `outcome` is `applied`, `parked` or `ignored` (with its reason), `levels_after` is `location:on_hand/reserved/available` joined by `;`, `movement` the JSON.
///
/// Errors: the writer's I/O error.
pub fn write_csv<W: std::io::Write>(rows: &[MovementRow], writer: W) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record([
        "cursor",
        "recorded_at_ms",
        "occurred_at_ms",
        "sku",
        "seq",
        "source",
        "kind",
        "idempotency_key",
        "outcome",
        "outcome_reason",
        "levels_after",
        "movement",
    ])?;
    for row in rows {
        let levels = row
            .levels_after
            .as_ref()
            .map(|levels| {
                levels
                    .iter()
                    .map(|l| {
                        format!(
                            "{}:{}/{}/{}",
                            l.location, l.on_hand, l.reserved, l.available
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .unwrap_or_default();
        csv.write_record([
            row.cursor.to_string(),
            row.recorded_at_ms.to_string(),
            row.occurred_at_ms
                .map(|v| v.to_string())
                .unwrap_or_default(),
            row.sku.clone(),
            row.seq.to_string(),
            row.source.clone(),
            row.kind.clone(),
            row.idempotency_key.clone(),
            row.outcome.clone(),
            row.outcome_reason.clone().unwrap_or_default(),
            levels,
            row.movement.to_string(),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{CommitBatch, EventRecord};

    /// A row as the JSON layout stored it (the movement's serde JSON).
    fn event(seq: u64, json: &str) -> EventRecord {
        let movement: Movement = serde_json::from_str(json).unwrap();
        EventRecord {
            sku: "QUINCE-7".into(),
            seq,
            idempotency_key: format!("orchard:{seq}"),
            key_expires_at_ms: 1,
            recorded_at_ms: 1_000 + seq as i64,
            movement: serde_json::to_vec(&movement).unwrap(),
            movement_hash: None,
        }
    }

    /// The same row in the binary layout.
    fn binary(seq: u64, json: &str) -> EventRecord {
        let movement: Movement = serde_json::from_str(json).unwrap();
        EventRecord {
            movement: crate::store::codec::encode_movement(&movement),
            ..event(seq, json)
        }
    }

    const RECEIPT: &str = r#"{"sku":"QUINCE-7","idempotency_key":"orchard:1","source":"orchard-wms","type":"receipt","location":"BARN","quantity":9}"#;
    const ADJUSTMENT: &str = r#"{"sku":"QUINCE-7","idempotency_key":"orchard:2","source":"orchard-wms","type":"adjustment","location":"BARN","delta":-2,"reason":"bruised"}"#;

    /// Old JSON rows and new binary rows, mixed in one log, show the same history.
    #[tokio::test]
    async fn json_and_binary_rows_show_the_same_movements_and_levels() {
        let mut shown = Vec::new();
        for (first, second) in [
            (event(1, RECEIPT), event(2, ADJUSTMENT)),
            (event(1, RECEIPT), binary(2, ADJUSTMENT)),
            (binary(1, RECEIPT), binary(2, ADJUSTMENT)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
            store
                .commit(CommitBatch {
                    events: vec![first, second],
                    ..Default::default()
                })
                .await
                .unwrap();
            for kind in ["receipt", "adjustment"] {
                let query = EventQuery {
                    kind: Some(kind.into()),
                    source: Some("orchard-wms".into()),
                    limit: 10,
                    ..Default::default()
                };
                let rows = movement_rows(&store, &query, true).await.unwrap();
                assert_eq!(rows.len(), 1, "{kind}");
                let mut out = Vec::new();
                write_csv(&rows, &mut out).unwrap();
                shown.push(String::from_utf8(out).unwrap());
            }
        }
        assert_eq!(shown[0], shown[2]);
        assert_eq!(shown[0], shown[4]);
        assert_eq!(shown[1], shown[3]);
        assert_eq!(shown[1], shown[5]);
        assert!(shown[1].contains("bruised"), "{}", shown[1]);
    }

    #[tokio::test]
    async fn rows_carry_the_levels_each_movement_left_and_export_as_csv() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        store
            .commit(CommitBatch {
                events: vec![event(1, RECEIPT), event(2, ADJUSTMENT)],
                ..Default::default()
            })
            .await
            .unwrap();
        let query = EventQuery {
            kind: Some("adjustment".into()),
            limit: 10,
            ..Default::default()
        };
        let rows = movement_rows(&store, &query, true).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, "orchard-wms");
        let levels = rows[0].levels_after.as_ref().unwrap();
        assert_eq!((levels[0].on_hand, levels[0].available), (7, 7));
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[1].contains("QUINCE-7,2,orchard-wms,adjustment,orchard:2,applied,,BARN:7/0/7"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_csv_shows_a_parked_movements_outcome_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.db")).unwrap();
        store
            .commit(CommitBatch {
                events: vec![event(1, RECEIPT)],
                outcomes: vec![crate::store::EventOutcomeRecord {
                    sku: "QUINCE-7".into(),
                    seq: 1,
                    outcome_json: r#"{"outcome":"parked","reason":"waits for its sale"}"#.into(),
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        let query = EventQuery {
            limit: 10,
            ..Default::default()
        };
        let rows = movement_rows(&store, &query, false).await.unwrap();
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(",outcome,outcome_reason,"), "{text}");
        assert!(lines[1].contains(",parked,waits for its sale,"), "{text}");
    }
}
