//! The synthetic movement stream: which SKU (Zipf skew or always a new one) and which kind
//! (a mix of receipts, sales, cancellations and fulfilments).
//!
//! The generator keeps a model of what it has sent so the ledger never has a reason to
//! refuse a movement: a sale is only offered where the model has the units available
//! (otherwise a receipt goes first), and a cancellation or fulfilment only names a sale
//! generated at least `settle_movements` movements earlier (so the sale is durable before
//! its follow-up is sent, even with many requests in flight). Every queue in the model is
//! bounded.
//!
//! Depends on `domain` only.

use super::zipf::{SplitMix64, Zipf};
use crate::domain::{Movement, MovementKind, SCHEMA_VERSION, Sku};
use std::collections::VecDeque;

/// The source name every generated movement carries.
pub const SOURCE: &str = "loadgen";
/// The one location the generated movements use.
pub const LOCATION: &str = "WH-1";
/// Most open reservations the model tracks; beyond it sales turn into receipts.
pub const MAX_OPEN_RESERVATIONS: usize = 200_000;
/// Units of one generated receipt.
const RECEIPT_UNITS: u64 = 20;

/// Relative weights of the movement kinds (need not sum to 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    /// Weight of receipts.
    pub receipts: u32,
    /// Weight of channel sales (each creates a reservation line).
    pub sales: u32,
    /// Weight of cancellations of earlier sales.
    pub cancellations: u32,
    /// Weight of fulfilments (shipments) of earlier sales.
    pub fulfilments: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            receipts: 25,
            sales: 40,
            cancellations: 10,
            fulfilments: 25,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.receipts)
            + u64::from(self.sales)
            + u64::from(self.cancellations)
            + u64::from(self.fulfilments)
    }
}

/// How the stream is shaped.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// SKUs drawn from (`LG-0000000` …); ignored with `new_skus_only`.
    pub skus: usize,
    /// Zipf exponent of the SKU popularity (0 = uniform).
    pub zipf_exponent: f64,
    /// Every movement is a receipt for a SKU never named before.
    pub new_skus_only: bool,
    /// The kinds' weights.
    pub mix: Mix,
    /// Seed of the random sequence.
    pub seed: u64,
    /// Makes idempotency keys and new SKU names unique to this run.
    pub run_id: String,
    /// A cancellation or fulfilment names a sale generated at least this many movements
    /// earlier.
    pub settle_movements: u64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            skus: 10_000,
            zipf_exponent: 1.1,
            new_skus_only: false,
            mix: Mix::default(),
            seed: 1,
            run_id: "run".to_owned(),
            settle_movements: 50_000,
        }
    }
}

/// Why a workload cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The SKU count or exponent is out of range.
    #[error(
        "zipf over {skus} SKUs with exponent {exponent} is out of range (1..=10,000,000 SKUs, exponent >= 0)"
    )]
    Zipf {
        /// SKUs asked for.
        skus: usize,
        /// Exponent asked for.
        exponent: f64,
    },
    /// Every weight is zero.
    #[error("the movement mix has no non-zero weight")]
    EmptyMix,
}

struct OpenSale {
    sku: u32,
    reservation: u64,
    quantity: u64,
    generated_at: u64,
}

/// The stateful generator. Not `Sync`: one owner draws batches.
pub struct Workload {
    options: WorkloadOptions,
    zipf: Option<Zipf>,
    rng: SplitMix64,
    /// Units the model believes are available (on hand − reserved) per SKU rank.
    available: Vec<i64>,
    open: VecDeque<OpenSale>,
    generated: u64,
}

impl Workload {
    /// A generator for `options`.
    pub fn new(options: WorkloadOptions) -> Result<Self, WorkloadError> {
        if options.mix.total() == 0 {
            return Err(WorkloadError::EmptyMix);
        }
        let (zipf, available) = if options.new_skus_only {
            (None, Vec::new())
        } else {
            let zipf =
                Zipf::new(options.skus, options.zipf_exponent).ok_or(WorkloadError::Zipf {
                    skus: options.skus,
                    exponent: options.zipf_exponent,
                })?;
            (Some(zipf), vec![0; options.skus])
        };
        Ok(Self {
            rng: SplitMix64::new(options.seed),
            options,
            zipf,
            available,
            open: VecDeque::new(),
            generated: 0,
        })
    }

    /// The SKU name of a rank.
    pub fn sku_name(rank: usize) -> String {
        format!("LG-{rank:07}")
    }

    /// Movements generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// The next `count` movements.
    pub fn batch(&mut self, count: usize) -> Vec<Movement> {
        (0..count).map(|_| self.next_movement()).collect()
    }

    /// The next movement.
    pub fn next_movement(&mut self) -> Movement {
        let index = self.generated;
        self.generated += 1;
        let Some(zipf) = &self.zipf else {
            let sku = format!("LGN-{}-{index}", self.options.run_id);
            return self.movement(sku, index, receipt(RECEIPT_UNITS));
        };
        let rank = zipf.sample(&mut self.rng);
        let mix = self.options.mix;
        let mut draw = self.rng.below(mix.total());
        let mut kind = 0;
        for weight in [mix.receipts, mix.sales, mix.cancellations] {
            if draw < u64::from(weight) {
                break;
            }
            draw -= u64::from(weight);
            kind += 1;
        }
        let settled = self.open.front().is_some_and(|sale| {
            index.saturating_sub(sale.generated_at) >= self.options.settle_movements
        });
        match kind {
            2 | 3 if settled => {
                let sale = self.open.pop_front().expect("front checked");
                let movement_kind = if kind == 2 {
                    self.available[sale.sku as usize] += sale.quantity as i64;
                    MovementKind::Cancellation {
                        reservation: self.reservation_id(sale.reservation),
                        quantity: None,
                        reason: Some("cancelled".to_owned()),
                        write_off: false,
                    }
                } else {
                    MovementKind::Fulfilment {
                        reservation: self.reservation_id(sale.reservation),
                        quantity: sale.quantity,
                        location: None,
                    }
                };
                self.movement(Self::sku_name(sale.sku as usize), index, movement_kind)
            }
            1..=3 if self.open.len() < MAX_OPEN_RESERVATIONS => {
                let quantity = 1 + self.rng.below(3);
                if self.available[rank] < quantity as i64 {
                    self.available[rank] += RECEIPT_UNITS as i64;
                    return self.movement(Self::sku_name(rank), index, receipt(RECEIPT_UNITS));
                }
                self.available[rank] -= quantity as i64;
                self.open.push_back(OpenSale {
                    sku: rank as u32,
                    reservation: index,
                    quantity,
                    generated_at: index,
                });
                let sale = MovementKind::Sale {
                    reservation: self.reservation_id(index),
                    quantity,
                    location: Some(LOCATION.into()),
                    route: Vec::new(),
                };
                self.movement(Self::sku_name(rank), index, sale)
            }
            _ => {
                self.available[rank] += RECEIPT_UNITS as i64;
                self.movement(Self::sku_name(rank), index, receipt(RECEIPT_UNITS))
            }
        }
    }

    fn reservation_id(&self, index: u64) -> String {
        format!("loadgen:{}:{index}", self.options.run_id)
    }

    fn movement(&self, sku: String, index: u64, kind: MovementKind) -> Movement {
        Movement {
            schema_version: SCHEMA_VERSION,
            sku: Sku(sku),
            idempotency_key: format!("lg:{}:{index}", self.options.run_id),
            source: SOURCE.to_owned(),
            occurred_at_ms: None,
            kind,
        }
    }
}

fn receipt(quantity: u64) -> MovementKind {
    MovementKind::Receipt {
        location: LOCATION.into(),
        quantity,
    }
}

/// A run id unique enough for keys: the start time in milliseconds, base 36.
pub fn fresh_run_id() -> String {
    let mut millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()) << 40;
    let mut digits = Vec::new();
    while millis > 0 {
        let digit = (millis % 36) as u8;
        digits.push(if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        });
        millis /= 36;
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SkuState;
    use std::collections::HashMap;

    #[test]
    fn the_stream_never_makes_the_state_machine_refuse_or_go_negative() {
        let mut workload = Workload::new(WorkloadOptions {
            skus: 50,
            settle_movements: 100,
            ..WorkloadOptions::default()
        })
        .unwrap();
        let mut states: HashMap<Sku, SkuState> = HashMap::new();
        let mut kinds: HashMap<&'static str, u64> = HashMap::new();
        for _ in 0..20_000 {
            let movement = workload.next_movement();
            movement.validate().expect("valid movement");
            *kinds.entry(movement.kind.name()).or_default() += 1;
            let state = states
                .entry(movement.sku.clone())
                .or_insert_with(|| SkuState::new(movement.sku.clone()));
            let seq = state.seq + 1;
            state
                .apply(&movement, seq)
                .unwrap_or_else(|e| panic!("{movement:?} refused: {e}"));
            for level in state.availability().locations {
                assert!(level.on_hand >= 0, "{level:?}");
                assert!(level.on_hand - level.reserved >= 0, "{level:?}");
            }
        }
        for kind in ["receipt", "sale", "cancellation", "fulfilment"] {
            assert!(kinds.get(kind).copied().unwrap_or(0) > 500, "{kinds:?}");
        }
    }

    #[test]
    fn new_skus_only_never_repeats_a_sku() {
        let mut workload = Workload::new(WorkloadOptions {
            new_skus_only: true,
            ..WorkloadOptions::default()
        })
        .unwrap();
        let batch = workload.batch(1000);
        let skus: std::collections::HashSet<_> = batch.iter().map(|m| m.sku.clone()).collect();
        assert_eq!(skus.len(), 1000);
        assert!(batch.iter().all(|m| m.kind.name() == "receipt"));
    }

    #[test]
    fn keys_are_unique_and_bad_options_are_refused() {
        let mut workload = Workload::new(WorkloadOptions::default()).unwrap();
        let keys: std::collections::HashSet<_> = workload
            .batch(5000)
            .into_iter()
            .map(|m| m.idempotency_key)
            .collect();
        assert_eq!(keys.len(), 5000);
        let empty = Mix {
            receipts: 0,
            sales: 0,
            cancellations: 0,
            fulfilments: 0,
        };
        assert!(
            Workload::new(WorkloadOptions {
                mix: empty,
                ..WorkloadOptions::default()
            })
            .is_err()
        );
        assert!(
            Workload::new(WorkloadOptions {
                skus: 0,
                ..WorkloadOptions::default()
            })
            .is_err()
        );
        assert!(!fresh_run_id().is_empty());
    }
}
