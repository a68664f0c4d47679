//! Outgoing webhooks, sent exactly as `class-wc-webhook.php` sends them (PLATFORMS.md §2.4):
//! headers, signature, the form-encoded ping, the weak delivery id and the success range.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// Delivery timeout (`http_request_timeout` of 60 s in core, §2.4).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The User-Agent core sends (`WooCommerce/<ver> Hookshot (WordPress/<ver>)`).
pub const USER_AGENT: &str = "WooCommerce/9.9.0 Hookshot (WordPress/6.8.1)";

/// `X-WC-Webhook-Signature`: base64(HMAC-SHA256(key = webhook secret, msg = body)) (§2.4).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    crate::signing::sign(secret, body)
}

/// `X-WC-Webhook-Delivery-ID`: `wp_hash(webhook_id . strtotime('now'))`, so it has
/// second resolution: two deliveries of one webhook in the same second share it (§2.4).
/// (The sandbox hashes with SHA-256 instead of WordPress's salted MD5; the shape is 32 hex.)
pub fn delivery_id(webhook_id: u64, unix_secs: i64) -> String {
    let digest = Sha256::digest(format!("sandbox-salt{webhook_id}{unix_secs}").as_bytes());
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// True for the statuses core counts as delivered: 200–302 (§2.4).
pub fn is_success(status: u16) -> bool {
    (200..=302).contains(&status)
}

/// One signed delivery.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub webhook_id: u64,
    pub topic: String,
    pub source: String,
    pub secret: String,
    pub delivery_id: String,
    /// `trim(wp_json_encode(payload))`.
    pub body: Vec<u8>,
}

/// POSTs one delivery; returns the status or the transport error's message.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    url: &str,
    delivery: &Delivery,
) -> Result<u16, String> {
    let (resource, event) = delivery
        .topic
        .split_once('.')
        .unwrap_or((delivery.topic.as_str(), ""));
    let response = client
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header("Content-Type", "application/json")
        .header("User-Agent", USER_AGENT)
        .header("X-WC-Webhook-Source", &delivery.source)
        .header("X-WC-Webhook-Topic", &delivery.topic)
        .header("X-WC-Webhook-Resource", resource)
        .header("X-WC-Webhook-Event", event)
        .header(
            "X-WC-Webhook-Signature",
            webhook_signature(&delivery.secret, &delivery.body),
        )
        .header("X-WC-Webhook-ID", delivery.webhook_id.to_string())
        .header("X-WC-Webhook-Delivery-ID", &delivery.delivery_id)
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|error| error.to_string())?;
    Ok(response.status().as_u16())
}

/// The ping sent when a webhook is created: form-encoded `webhook_id=<id>`, no X-WC
/// headers and no signature (§2.4).
pub(crate) async fn ping(
    client: &reqwest::Client,
    url: &str,
    webhook_id: u64,
) -> Result<u16, String> {
    let response = client
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", USER_AGENT)
        .body(format!("webhook_id={webhook_id}"))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    Ok(response.status().as_u16())
}
