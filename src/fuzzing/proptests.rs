//! The stable fuzzing run: every entry point of [`crate::fuzzing`] under proptest, part of
//! `cargo test` on any toolchain (a few seconds in all). Inputs are a mix of arbitrary
//! bytes, arbitrary JSON-ish values over the decoders' own field names, and the seed
//! corpus of the libFuzzer targets (`fuzz/corpus/<target>/`) with random edits.
//! Regression tests for the crashes fuzzing found are at the end.

use proptest::prelude::*;
use serde_json::Value;

/// Field names the decoders read, so generated objects reach past "missing field".
const KEYS: &[&str] = &[
    "schema_version",
    "sku",
    "idempotency_key",
    "source",
    "occurred_at_ms",
    "type",
    "location",
    "quantity",
    "delta",
    "reason",
    "on_hand",
    "watermark",
    "basis",
    "booked",
    "reservation",
    "route",
    "expires_at_ms",
    "write_off",
    "restock",
    "version",
    "to",
    "purchase_order",
    "expected_at_ms",
    "transfer",
    "from",
    "rejected",
    "quarantine",
    "id",
    "line_items",
    "refund_line_items",
    "line_item",
    "line_item_id",
    "restock_type",
    "location_id",
    "available",
    "inventory_item_id",
    "cancelled_at",
    "status",
    "order",
    "refund",
    "meta_data",
    "key",
    "value",
    "variation_id",
    "product_id",
    "date_modified_gmt",
    "Payload",
    "OrderChangeNotification",
    "Summary",
    "OrderItems",
    "OrderItemId",
    "SellerSKU",
    "Quantity",
    "QuantityShipped",
    "QuantityOrdered",
    "OrderStatus",
    "FulfillmentType",
    "NotificationMetadata",
    "NotificationId",
    "NotificationType",
    "payload",
    "Orders",
    "AmazonOrderId",
    "inventorySummaries",
    "sellerSku",
    "lastUpdatedTime",
    "inventoryDetails",
    "fulfillableQuantity",
    "issues",
    "messageId",
    "severity",
    "code",
    "message",
    "errors",
    "processingStatus",
    "fulfillmentAvailability",
    "fulfillmentChannelCode",
    "orders",
    "orderId",
    "orderItems",
    "orderItemId",
    "quantityShipped",
    "quantityCancelled",
    "fulfilment",
    "method",
    "offer",
    "offerId",
    "reference",
    "product",
    "ean",
    "returns",
    "returnItems",
    "rmaId",
    "expectedQuantity",
    "processStatusId",
    "stock",
    "amount",
    "data",
    "userErrors",
    "nodes",
    "quantities",
    "name",
    "update",
    "stock_quantity",
    "manage_stock",
    "error",
    "inventory_levels",
    "inventory_level",
];

/// Strings that mean something to some decoder.
const WORDS: &[&str] = &[
    "",
    "SKU-A",
    "SKU-B-NL",
    "WH-1",
    "receipt",
    "sale",
    "count",
    "cancellation",
    "return",
    "fulfilment",
    "order_edit",
    "reassign",
    "inbound",
    "transfer_dispatch",
    "book",
    "physical",
    "ORDER_CHANGE",
    "MFN",
    "AFN",
    "Canceled",
    "Shipped",
    "Unshipped",
    "FBR",
    "FBB",
    "offer-9",
    "cancelled",
    "refunded",
    "processing",
    "true",
    "-1",
    "1e400",
    "2030-01-01T10:00:00Z",
    "_restock_refunded_items",
    "DONE",
    "ERROR",
    "PENDING",
    "9223372036854775807",
    "18446744073709551615",
    "\u{0}",
    "é/ü x",
];

/// A JSON-ish value over [`KEYS`] and [`WORDS`], with extreme numbers.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "[^\u{0}]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect(),
                )
            }),
        ]
    })
}

/// The seed corpus of a libFuzzer target.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| std::fs::read(entry.expect("a corpus entry").path()).expect("a seed"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} has seeds", folder.display());
    seeds
}

/// One edit of a seed: at a position (as a fraction of its length), a kind and a byte.
type Edit = (prop::sample::Index, u8, u8);

fn apply(mut bytes: Vec<u8>, edits: Vec<Edit>) -> Vec<u8> {
    for (at, kind, byte) in edits {
        let len = bytes.len();
        match kind % 4 {
            0 if len > 0 => bytes[at.index(len)] = byte,
            1 => bytes.insert(at.index(len + 1), byte),
            2 if len > 0 => {
                bytes.remove(at.index(len));
            }
            _ => bytes.truncate(at.index(len + 1)),
        }
    }
    bytes
}

/// Inputs for one target: arbitrary bytes, a selector byte then JSON-ish text, or an
/// edited seed.
fn input(target: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds = seeds(target);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (any::<u8>(), json()).prop_map(|(selector, value)| {
            let mut bytes = vec![selector];
            bytes.extend(serde_json::to_vec(&value).expect("a value serialises"));
            bytes
        }),
        json().prop_map(|value| serde_json::to_vec(&value).expect("a value serialises")),
        (
            prop::sample::select(seeds),
            prop::collection::vec(any::<Edit>(), 0..6)
        )
            .prop_map(|(seed, edits)| apply(seed, edits)),
    ]
}

macro_rules! fuzz_props {
    ($($target:ident),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 400,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                fn $target(data in input(stringify!($target))) {
                    super::$target(&data);
                }
            )*
        }
    };
}

fuzz_props!(
    kafka_movement,
    stored_movement,
    rest_movements,
    shopify,
    woocommerce,
    amazon,
    bolcom,
    config,
);

/// A target's name and entry point.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_seed_passes_its_target() {
    let targets: [Target; 8] = [
        ("kafka_movement", super::kafka_movement),
        ("stored_movement", super::stored_movement),
        ("rest_movements", super::rest_movements),
        ("shopify", super::shopify),
        ("woocommerce", super::woocommerce),
        ("amazon", super::amazon),
        ("bolcom", super::bolcom),
        ("config", super::config),
    ];
    for (target, run) in targets {
        for seed in seeds(target) {
            run(&seed);
        }
    }
}
