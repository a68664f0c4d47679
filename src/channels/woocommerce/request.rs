//! Request paths and bodies of the WooCommerce adapter (PLATFORMS.md §2.2 Set stock); the
//! API base and authentication are the platform client's
//! ([`crate::platforms::woocommerce`]).

use serde_json::{Value, json};

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
