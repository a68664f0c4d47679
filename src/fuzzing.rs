//! Property checks over arbitrary input for every IO-free decoder, shared by the
//! `cargo fuzz` targets (`fuzz/fuzz_targets/`, libFuzzer, nightly) and the stable
//! proptest run (`src/fuzzing/proptests.rs`, part of `cargo test`).
//!
//! Each entry point takes arbitrary bytes, runs one family of decoders on them and panics
//! only when a decoder panics or a stated property breaks: a decoder answers every input
//! with a value or an error. Where it is cheap, the value is checked too: a decoded
//! movement is validated (it may pass or fail, but must not panic), a binary movement
//! re-encodes to the same movement, the fast movement reader agrees with the derived
//! deserializer, a record without its SKU key is refused.
//!
//! Not part of the API: hidden from the docs, kept public only so the fuzz crate (a
//! separate package) can reach the decoders without them being made public one by one.
//!
//! May depend on: `config`, `domain`, `ingest` (decoders only), `store::codec`,
//! `platforms` (payload decoders), `channels` (response decoders), `web::movements`
//! (the REST body reader).

#[cfg(test)]
mod proptests;

use crate::channels::{amazon, bolcom, shopify, woocommerce};
use crate::config::{ChannelConfig, Config, interpolate};
use crate::domain::{FastMovementReader, Movement};
use crate::ingest::amazon::decode as amazon_in;
use crate::ingest::bolcom::decode as bolcom_in;
use crate::ingest::kafka::{DecodeError, MessageOrigin};
use crate::ingest::shopify::decode as shopify_in;
use crate::ingest::woocommerce::decode as woo_in;
use crate::platforms::bolcom::payload;
use crate::platforms::http::HttpAnswer;
use crate::store::codec;
use std::sync::OnceLock;

/// The channels the platform decoders are run for: one per platform, each with a listing
/// mapping so the mapped and the unmapped SKU paths are both reached.
const CHANNELS_TOML: &str = r#"
[[locations]]
id = "WH-1"
[[locations]]
id = "FBA-NL"

[[channels]]
id = "shop"
kind = "shopify"
locations = ["WH-1"]
[channels.shopify]
shop_url = "http://127.0.0.1:9"
access_token = "t"
webhook_secret = "s"
location_id = 1
[[channels.shopify.listings]]
sku = "SKU-A"
inventory_item_id = 1001

[[channels]]
id = "woo"
kind = "woocommerce"
locations = ["WH-1"]
[channels.woocommerce]
site_url = "http://127.0.0.1:9"
consumer_key = "ck"
consumer_secret = "cs"
webhook_secret = "s"

[[channels]]
id = "amazon-nl"
kind = "amazon"
locations = ["WH-1"]
[channels.amazon]
client_id = "c"
client_secret = "s"
refresh_token = "r"
seller_id = "A2EXAMPLESELLER"
marketplace_id = "A1805IZSGTT6HS"
[[channels.amazon.listings]]
sku = "SKU-B"
seller_sku = "SKU-B-NL"

[[channels]]
id = "bol-nl"
kind = "bolcom"
locations = ["WH-1"]
[channels.bolcom]
client_id = "id"
client_secret = "secret"
[[channels.bolcom.listings]]
sku = "SKU-MAPPED"
offer_id = "offer-9"
"#;

/// The channel `id` of [`CHANNELS_TOML`].
fn channel(id: &str) -> &'static ChannelConfig {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG
        .get_or_init(|| Config::from_toml(CHANNELS_TOML).expect("the fuzzing channels parse"))
        .channel(id)
        .expect("the fuzzing channel exists")
}

/// Splits off the first byte (a selector among a target's decoders; 0 when empty).
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, data),
    }
}

/// A platform answer as `platforms::http::read_answer` builds it: status from the first
/// two bytes (100..=599), the rest as the body (lossy UTF-8, JSON or `Null`).
fn answer(data: &[u8]) -> HttpAnswer {
    let (status, body) = match data {
        [high, low, rest @ ..] => (100 + u16::from_be_bytes([*high, *low]) % 500, rest),
        _ => (200, data),
    };
    let text = String::from_utf8_lossy(body).into_owned();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    };
    HttpAnswer {
        status,
        text,
        body,
        ..HttpAnswer::default()
    }
}

/// Validates every movement: each passes or fails, none panics.
fn validate_all<'a>(movements: impl IntoIterator<Item = &'a Movement>) {
    for movement in movements {
        let _ = movement.validate();
    }
}

/// The Kafka movement decoder (`ingest::kafka::decode_movement`) on one record value.
///
/// Properties: a record without a key is never accepted; when the only fault is the
/// missing key, the same value keyed by its SKU decodes to a valid movement of that SKU
/// and keyed by anything else is refused; the fast reader never vouches for a value the
/// derived deserializer refuses or reads differently.
pub fn kafka_movement(data: &[u8]) {
    let origin = MessageOrigin {
        topic: "movements",
        partition: 3,
        offset: 42,
    };
    let decode = crate::ingest::kafka::decode_movement;
    match decode(None, Some(data), &origin) {
        Ok(movement) => panic!("a record without a key was accepted: {movement:?}"),
        Err(DecodeError::MissingKey { sku }) => {
            let movement = decode(Some(sku.as_bytes()), Some(data), &origin)
                .expect("the value keyed by its sku decodes");
            assert_eq!(movement.sku.0, sku);
            assert!(movement.validate().is_ok(), "an accepted movement is valid");
            let mut other = sku.into_bytes();
            other.push(b'!');
            assert!(matches!(
                decode(Some(&other), Some(data), &origin),
                Err(DecodeError::KeyMismatch { .. })
            ));
        }
        Err(error) => {
            let _ = error.reason();
            let _ = error.to_string();
        }
    }
    fast_reader_agrees(data);
}

/// The fast movement reader accepts only what the derived deserializer reads the same.
fn fast_reader_agrees(data: &[u8]) {
    if let Some(fast) = FastMovementReader::movement(data) {
        let exact: Movement = serde_json::from_slice(data)
            .expect("the derived deserializer reads what the fast reader read");
        assert_eq!(fast, exact, "the fast reader and the derived one disagree");
        let _ = fast.validate();
    }
}

/// The stored movement codec (`store::codec`): binary `MOVEMENT_V2`/`V1` rows, the JSON
/// rows of the earlier layout, and snapshot states.
///
/// Properties: whatever decodes re-encodes to bytes that decode to the same movement
/// (state); a movement the fast reader reads from the bytes round-trips through the
/// binary layout, and every strict prefix of its encoding is an error.
pub fn stored_movement(data: &[u8]) {
    let (sku, key) = ("SKU-FUZZ", "key-fuzz");
    if let Ok(movement) = codec::decode_movement(data, sku, key) {
        let bytes = codec::encode_movement(&movement);
        let again = codec::decode_movement(&bytes, &movement.sku.0, &movement.idempotency_key)
            .expect("an encoded movement decodes");
        assert_eq!(again, movement, "a decoded movement re-encodes to itself");
        let _ = movement.validate();
    }
    let _ = codec::movement_json_value(data, sku, key);
    let _ = codec::movement_matches(data, Some("src"), Some("receipt"));
    let _ = codec::movement_matches(data, None, Some("sale"));
    if let Ok(state) = codec::decode_state(data) {
        let again =
            codec::decode_state(&codec::encode_state(&state)).expect("an encoded state decodes");
        assert_eq!(again, state, "a decoded state re-encodes to itself");
    }
    if let Some(movement) = FastMovementReader::movement(data) {
        let bytes = codec::encode_movement(&movement);
        let sku = movement.sku.0.as_str();
        let key = movement.idempotency_key.as_str();
        let again = codec::decode_movement(&bytes, sku, key).expect("an encoded movement decodes");
        assert_eq!(
            again, movement,
            "a movement round-trips through MOVEMENT_V2"
        );
        for end in 0..bytes.len() {
            assert!(
                codec::decode_movement(&bytes[..end], sku, key).is_err(),
                "a truncated movement ({end} of {} bytes) decoded",
                bytes.len()
            );
        }
    }
}

/// The REST movements body reader (`web::movements::parse_movements`, fast path and
/// exact path).
///
/// Properties: an accepted body holds 1..=`MAX_BATCH_MOVEMENTS` valid movements; when the
/// fast reader vouches for a body, the derived deserializer reads the same movements.
pub fn rest_movements(data: &[u8]) {
    use crate::web::movements::{MAX_BATCH_MOVEMENTS, parse_movements};
    if let Ok(movements) = parse_movements(data) {
        assert!(!movements.is_empty() && movements.len() <= MAX_BATCH_MOVEMENTS);
        for movement in &movements {
            assert!(movement.validate().is_ok(), "an accepted movement is valid");
        }
    }
    if let Some((fast, batch)) = FastMovementReader::body(data, MAX_BATCH_MOVEMENTS) {
        let exact: Vec<Movement> = if batch {
            serde_json::from_slice(data).expect("the derived deserializer reads the batch")
        } else {
            vec![serde_json::from_slice(data).expect("the derived deserializer reads it")]
        };
        assert_eq!(
            fast, exact,
            "the fast body reader and the derived one disagree"
        );
    }
    fast_reader_agrees(data);
}

/// The Shopify decoders: a webhook body of every topic (`ingest::shopify::decode`), the
/// webhook headers, and the channel's GraphQL/REST answers (`channels::shopify::response`).
pub fn shopify(data: &[u8]) {
    use shopify_in::WebhookTopic;
    let (selector, rest) = split(data);
    let channel = channel("shop");
    let topics = [
        WebhookTopic::OrdersCreate,
        WebhookTopic::OrdersUpdated,
        WebhookTopic::OrdersCancelled,
        WebhookTopic::OrdersEdited,
        WebhookTopic::RefundsCreate,
        WebhookTopic::InventoryLevelsUpdate,
    ];
    match selector % 3 {
        0 => {
            let topic = topics[usize::from(selector / 3) % topics.len()];
            if let Ok(decoded) = shopify_in::decode(channel, topic, rest) {
                assert_eq!(decoded.topic, topic);
                validate_all(&decoded.movements);
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let headers = shopify_in::WebhookHeaders::from_pairs(
                text.split('\n')
                    .filter_map(|line| line.split_once(':'))
                    .map(|(name, value)| (name, value.as_bytes())),
            );
            let _ = headers.topic().as_str();
            let _ = shopify_in::verify(channel, &headers, rest);
            let _ = WebhookTopic::parse(&text).as_str();
        }
        _ => {
            let answer = answer(rest);
            let _ = shopify::response::decode_set_quantities(&answer);
            let _ = shopify::response::decode_levels(&answer);
            let _ = shopify::response::decode_rest_set(&answer);
            let _ = shopify::response::decode_rest_levels(&answer);
        }
    }
}

/// The WooCommerce decoders: an order payload (webhook or poll) decoded as a new order and
/// as an update of the lines it names, the creation ping, and the channel's REST answers.
pub fn woocommerce(data: &[u8]) {
    let (selector, rest) = split(data);
    let channel = channel("woo");
    match selector % 3 {
        0 => {
            let Ok(order) = woo_in::parse_order(rest) else {
                return;
            };
            if let Ok(decoded) = woo_in::decode_order(channel, &order) {
                validate_all(&decoded.movements);
                if let Ok(update) = woo_in::decode_order_update(channel, &order, &decoded.lines) {
                    validate_all(&update.movements);
                }
            }
            let _ = woo_in::delivery_key(channel, "1", &order);
        }
        1 => {
            let headers = woo_in::WebhookHeaders::default();
            if let Some(id) = woo_in::is_ping(&headers, rest) {
                assert!(!id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit()));
            }
            let _ = woo_in::verify(channel, &headers, rest);
        }
        _ => {
            let answer = answer(rest);
            let _ = woocommerce::response::too_large_limit(&answer);
            let _ = woocommerce::response::decode_batch_update(&answer);
            let _ = woocommerce::response::decode_list(&answer);
        }
    }
}

/// The Amazon decoders: the ORDER_CHANGE notification, the Orders API answers (`getOrders`
/// and `getOrderItems`), FBA inventory summaries, and the channel's Listings/Feeds answers.
pub fn amazon(data: &[u8]) {
    let (selector, rest) = split(data);
    let channel = channel("amazon-nl");
    match selector % 5 {
        0 => {
            if let Ok(amazon_in::Decoded::OrderChange(notification)) =
                amazon_in::decode_notification(rest)
            {
                let decoded = amazon_in::order_movements(channel, &notification.order);
                validate_all(&decoded.movements);
            }
        }
        1 => {
            if let Ok(page) = amazon_in::decode_order_page(rest) {
                for order in &page.orders {
                    if let Ok(state) = amazon_in::decode_order_items(order, rest) {
                        validate_all(&amazon_in::order_movements(channel, &state).movements);
                    }
                }
            }
        }
        2 => {
            // An items answer for a fixed listed order.
            let order = amazon_in::ListedOrder {
                amazon_order_id: "405-0000000-0000000".to_owned(),
                order_status: "Unshipped".to_owned(),
                fulfilment: amazon_in::Fulfilment::Mfn,
                last_update_ms: 0,
                cancel_reason: None,
            };
            if let Ok(state) = amazon_in::decode_order_items(&order, rest) {
                validate_all(&amazon_in::order_movements(channel, &state).movements);
            }
            let _ = amazon_in::parse_time_ms(&String::from_utf8_lossy(rest));
        }
        3 => {
            if let Ok(page) = amazon_in::decode_summaries(rest) {
                for summary in &page.summaries {
                    let _ = amazon_in::fba_count(channel, "FBA-NL", summary).validate();
                }
            }
        }
        _ => {
            let answer = answer(rest);
            let _ = amazon::response::decode_patch(&answer);
            let _ = amazon::response::decode_listing_quantity(&answer);
            let _ = amazon::response::decode_feed_status(&answer);
            let _ = amazon::response::decode_listing_fulfilment(&answer);
            let messages = usize::from(selector / 5) % 8;
            let outcomes = amazon::response::map_processing_report(&answer.body, messages);
            assert_eq!(outcomes.len(), messages, "one outcome per message");
        }
    }
}

/// The Bol.com decoders: order lists, orders, returns, process statuses and the channel's
/// offer answers.
pub fn bolcom(data: &[u8]) {
    let (selector, rest) = split(data);
    let channel = channel("bol-nl");
    match selector % 4 {
        0 => {
            if let Ok(orders) = bolcom_in::decode_order_list(rest) {
                for order in &orders {
                    let _ = order.fingerprint();
                }
            }
        }
        1 => {
            if let Ok(order) = bolcom_in::decode_order(rest) {
                validate_all(&bolcom_in::order_movements(channel, &order).movements);
                let _ = bolcom_in::resolve_return(&order, "8712345678901");
            }
        }
        2 => {
            if let Ok(lines) = bolcom_in::decode_returns(rest) {
                for line in &lines {
                    if let Some(movement) =
                        bolcom_in::return_movement(channel, line, "SKU-A", Some("1"))
                    {
                        let _ = movement.validate();
                    }
                }
            }
        }
        _ => {
            let answer = answer(rest);
            let _ = payload::decode_process_status(&answer);
            let _ = bolcom::response::offer_refusal(&answer);
            let _ = bolcom::response::decode_offer_amount(&answer);
        }
    }
}

/// The config parser (`Config::from_toml`, then `validate`) and the `${VAR}` interpolation.
///
/// Properties: text without `$` interpolates to itself; escaping every `${` as `$${`
/// interpolates back to the original text; a lookup never sees a name containing `}`.
pub fn config(data: &[u8]) {
    let (selector, rest) = split(data);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector.is_multiple_of(2) {
        if let Ok(config) = Config::from_toml(text) {
            let _ = config.validate();
        }
        return;
    }
    let lookup = |name: &str| {
        assert!(
            !name.contains('}'),
            "a variable name holds a brace: {name:?}"
        );
        name.len().is_multiple_of(2).then(|| format!("<{name}>"))
    };
    let interpolated = interpolate(text, lookup);
    if !text.contains('$') {
        assert_eq!(interpolated.as_deref(), Ok(text));
    }
    let escaped = text.replace("${", "$${");
    assert_eq!(
        interpolate(&escaped, |_| None).as_deref(),
        Ok(text),
        "escaped text interpolates back to itself"
    );
}
