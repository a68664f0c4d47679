//! Request URLs, authentication and bodies of the WooCommerce adapter (PLATFORMS.md §2 Auth,
//! §2.2 Set stock).

use serde_json::{Value, json};

/// The REST namespace under the site URL.
pub const API_PREFIX: &str = "/wp-json/wc/v3";

/// How the consumer key and secret travel (§2 Auth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `consumer_key` (`ck_…`).
    pub consumer_key: String,
    /// `consumer_secret` (`cs_…`).
    pub consumer_secret: String,
    /// `true`: `?consumer_key=…&consumer_secret=…`; `false`: HTTP Basic.
    pub in_query: bool,
}

impl Credentials {
    /// Adds the credentials to a request whose URL was built by [`api_url`].
    pub fn apply(
        &self,
        url: &str,
        client: &reqwest::Client,
        method: reqwest::Method,
    ) -> reqwest::RequestBuilder {
        if self.in_query {
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!(
                "{url}{separator}consumer_key={}&consumer_secret={}",
                encode_query_value(&self.consumer_key),
                encode_query_value(&self.consumer_secret)
            );
            client.request(method, url)
        } else {
            client
                .request(method, url)
                .basic_auth(&self.consumer_key, Some(&self.consumer_secret))
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `{site}/wp-json/wc/v3{path}`; `path` starts with `/`.
pub fn api_url(site_url: &str, path: &str) -> String {
    format!("{site_url}{API_PREFIX}{path}")
}

/// The batch path of a group: `/products/batch` (`None`) or
/// `/products/{parent}/variations/batch`.
pub fn batch_path(group: Option<u64>) -> String {
    match group {
        None => "/products/batch".to_owned(),
        Some(parent) => format!("/products/{parent}/variations/batch"),
    }
}

/// The list path of a group with `include=` ids: `/products?include=…&per_page=100` or
/// `/products/{parent}/variations?include=…&per_page=100`.
pub fn list_path(group: Option<u64>, ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let base = match group {
        None => "/products".to_owned(),
        Some(parent) => format!("/products/{parent}/variations"),
    };
    format!(
        "{base}?include={}&per_page={}",
        ids.join(","),
        ids.len().max(1)
    )
}

/// One `update[]` entry: `manage_stock: true` and `stock_quantity` together, because
/// `stock_quantity` has no effect unless `manage_stock` is true on that object (§2.2).
pub fn update_entry(id: u64, quantity: u64) -> Value {
    json!({ "id": id, "manage_stock": true, "stock_quantity": quantity })
}

/// A batch body with only `update[]`: `{"update":[{"id":…,"manage_stock":true,"stock_quantity":…}]}`.
pub fn batch_update_body(entries: &[(u64, u64)]) -> Value {
    let update: Vec<Value> = entries
        .iter()
        .map(|(id, quantity)| update_entry(*id, *quantity))
        .collect();
    json!({ "update": update })
}
