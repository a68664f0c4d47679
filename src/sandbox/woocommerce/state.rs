//! The simulated shop's data and its pure rules: products and variations with
//! `manage_stock` (PLATFORMS.md §2.2), orders and the stock they reduce or restore by status
//! (§2.3), refunds with `api_restock`. No I/O, no clock: callers pass `now_ms`.

use super::{SimOrderLine, SimulatorError, WoocommerceSimulatorOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Statuses whose entry reduces stock (WooCommerce core `wc_maybe_reduce_stock_levels`).
pub(crate) const REDUCING_STATUSES: [&str; 3] = ["processing", "on-hold", "completed"];
/// Statuses whose entry restores reduced stock (`wc_maybe_increase_stock_levels`).
pub(crate) const RESTORING_STATUSES: [&str; 2] = ["cancelled", "pending"];
/// Every status the simulator accepts (§2.3).
pub(crate) const STATUSES: [&str; 9] = [
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "checkout-draft",
    "trash",
];
/// Most value changes remembered per stock holder.
const HISTORY_MAX: usize = 1_000;

/// A product (simple or variable parent).
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    /// Used when stock is not managed.
    pub stock_status: String,
    /// `no | notify | yes`.
    pub backorders: String,
    pub date_modified_ms: i64,
    pub variations: Vec<u64>,
    pub history: Vec<i64>,
}

/// A variation of a product.
#[derive(Clone, Debug)]
pub(crate) struct Variation {
    pub id: u64,
    pub parent_id: u64,
    pub sku: String,
    /// `false` means "parent" when the parent manages stock.
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub stock_status: String,
    pub backorders: String,
    pub date_modified_ms: i64,
    pub history: Vec<i64>,
}

/// One order line.
#[derive(Clone, Debug)]
pub(crate) struct OrderLine {
    pub id: u64,
    pub product_id: u64,
    pub variation_id: u64,
    pub sku: String,
    pub quantity: u64,
    /// `_reduced_stock` meta: units actually reduced and not yet restored.
    pub reduced: u64,
    /// `_restock_refunded_items` meta: units put back by refunds.
    pub restocked: u64,
}

/// One refund of an order.
#[derive(Clone, Debug)]
pub(crate) struct Refund {
    pub id: u64,
    pub reason: String,
    /// Units per line id (positive; shown negative in the refund resource).
    pub lines: Vec<(u64, u64)>,
    pub restocked: bool,
    pub date_created_ms: i64,
}

/// One order.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub id: u64,
    pub status: String,
    pub date_created_ms: i64,
    pub date_modified_ms: i64,
    pub lines: Vec<OrderLine>,
    pub refunds: Vec<Refund>,
}

impl Order {
    /// Units of a line refunded so far, over every refund.
    pub fn refunded_units(&self, line_id: u64) -> u64 {
        self.refunds
            .iter()
            .flat_map(|refund| refund.lines.iter())
            .filter(|(id, _)| *id == line_id)
            .map(|(_, units)| *units)
            .sum()
    }
}

/// One change of [`ShopState::edit_lines`]: an existing line's new quantity (`id` set; 0
/// removes it) or a new line (`product_id` set).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct LineChange {
    /// The order line to change; absent for a new line.
    #[serde(default)]
    pub id: Option<u64>,
    /// The product of a new line.
    #[serde(default)]
    pub product_id: Option<u64>,
    /// The variation of a new line (0: none).
    #[serde(default)]
    pub variation_id: u64,
    /// The line's quantity in whole units after the change (0 removes the line).
    pub quantity: u64,
}

/// Most lines an order may have (edits adding more are refused).
pub(crate) const ORDER_LINES_MAX: usize = 250;

/// Where a line's stock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    Product(u64),
    Variation(u64),
}

/// The whole shop.
#[derive(Debug, Default)]
pub(crate) struct ShopState {
    pub products: BTreeMap<u64, Product>,
    pub variations: BTreeMap<u64, Variation>,
    pub orders: BTreeMap<u64, Order>,
    next_id: u64,
}

/// `2025-01-31T10:00:00` (UTC, second resolution, no zone), as `*_gmt` fields are written.
pub(crate) fn gmt(ms: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.trim_end_matches('Z').to_owned()
}

/// Parses `2025-01-31T10:00:00`, with or without `Z`/fraction, into epoch milliseconds.
pub(crate) fn parse_gmt(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let elapsed = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(elapsed.as_millis()).ok()
}

fn push_history(history: &mut Vec<i64>, value: Option<i64>) {
    if let Some(value) = value {
        if history.len() >= HISTORY_MAX {
            history.remove(0);
        }
        history.push(value);
    }
}

fn derived_status(managed: bool, quantity: Option<i64>, backorders: &str, stored: &str) -> String {
    if !managed {
        return stored.to_owned();
    }
    match quantity.unwrap_or(0) {
        q if q > 0 => "instock".to_owned(),
        _ if backorders != "no" => "onbackorder".to_owned(),
        _ => "outofstock".to_owned(),
    }
}

/// `manage_stock` as sent: `true`/`false`, `"true"`/`"false"`, `"parent"` (variations).
/// Returns `Some(true)` to manage here, `Some(false)` not to (or to defer to the parent).
fn manage_stock_value(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" | "parent" => Some(false),
            _ => None,
        },
        Value::Number(number) => Some(number.as_i64() != Some(0)),
        _ => None,
    }
}

/// A REST error object `{"code","message","data":{"status"}}`.
pub(crate) fn rest_error(code: &str, message: &str, status: u16) -> Value {
    json!({ "code": code, "message": message, "data": { "status": status } })
}

impl ShopState {
    /// A shop whose ids start at `first_id`.
    pub fn new(first_id: u64) -> Self {
        Self {
            next_id: first_id.max(1),
            ..Self::default()
        }
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn reserve_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id + 1);
    }

    /// Creates or replaces a simple product managing its stock.
    pub fn upsert_product(&mut self, id: u64, sku: &str, stock: Option<i64>, now_ms: i64) {
        self.reserve_id(id);
        let product = self.products.entry(id).or_insert_with(|| Product {
            id,
            sku: sku.to_owned(),
            name: format!("Sandbox product {id}"),
            manage_stock: true,
            stock_quantity: None,
            stock_status: "instock".to_owned(),
            backorders: "no".to_owned(),
            date_modified_ms: now_ms,
            variations: Vec::new(),
            history: Vec::new(),
        });
        product.sku = sku.to_owned();
        product.manage_stock = stock.is_some();
        product.stock_quantity = stock;
        product.date_modified_ms = now_ms;
        push_history(&mut product.history, stock);
    }

    /// Creates or replaces a variation; `stock: None` means `manage_stock: "parent"`.
    pub fn upsert_variation(
        &mut self,
        parent_id: u64,
        id: u64,
        sku: &str,
        stock: Option<i64>,
        now_ms: i64,
    ) {
        self.reserve_id(parent_id);
        self.reserve_id(id);
        let parent = self.products.entry(parent_id).or_insert_with(|| Product {
            id: parent_id,
            sku: format!("PARENT-{parent_id}"),
            name: format!("Sandbox variable product {parent_id}"),
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".to_owned(),
            backorders: "no".to_owned(),
            date_modified_ms: now_ms,
            variations: Vec::new(),
            history: Vec::new(),
        });
        if !parent.variations.contains(&id) {
            parent.variations.push(id);
        }
        let variation = self.variations.entry(id).or_insert_with(|| Variation {
            id,
            parent_id,
            sku: sku.to_owned(),
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".to_owned(),
            backorders: "no".to_owned(),
            date_modified_ms: now_ms,
            history: Vec::new(),
        });
        variation.sku = sku.to_owned();
        variation.manage_stock = stock.is_some();
        variation.stock_quantity = stock;
        variation.date_modified_ms = now_ms;
        push_history(&mut variation.history, stock);
    }

    /// Sets the parent product's own managed stock (for variations with `"parent"`).
    pub fn set_product_stock(&mut self, id: u64, stock: Option<i64>, now_ms: i64) -> bool {
        let Some(product) = self.products.get_mut(&id) else {
            return false;
        };
        product.manage_stock = stock.is_some();
        product.stock_quantity = stock;
        product.date_modified_ms = now_ms;
        push_history(&mut product.history, stock);
        true
    }

    /// The REST product resource.
    pub fn product_json(&self, product: &Product) -> Value {
        json!({
            "id": product.id,
            "name": product.name,
            "type": if product.variations.is_empty() { "simple" } else { "variable" },
            "status": "publish",
            "sku": product.sku,
            "date_modified_gmt": gmt(product.date_modified_ms),
            "manage_stock": product.manage_stock,
            "stock_quantity": if product.manage_stock { json!(product.stock_quantity) } else { Value::Null },
            "stock_status": derived_status(product.manage_stock, product.stock_quantity, &product.backorders, &product.stock_status),
            "backorders": product.backorders,
            "backorders_allowed": product.backorders != "no",
            "backordered": product.manage_stock && product.stock_quantity.unwrap_or(0) < 0,
            "variations": product.variations,
        })
    }

    /// The REST variation resource: `manage_stock` is `"parent"` when the variation does not
    /// manage stock and its parent does; `stock_quantity` is then the parent's.
    pub fn variation_json(&self, variation: &Variation) -> Value {
        let parent = self.products.get(&variation.parent_id);
        let parent_managed = parent.is_some_and(|parent| parent.manage_stock);
        let (manage_stock, quantity, managed) = if variation.manage_stock {
            (json!(true), variation.stock_quantity, true)
        } else if parent_managed {
            (
                json!("parent"),
                parent.and_then(|parent| parent.stock_quantity),
                true,
            )
        } else {
            (json!(false), None, false)
        };
        json!({
            "id": variation.id,
            "parent_id": variation.parent_id,
            "sku": variation.sku,
            "date_modified_gmt": gmt(variation.date_modified_ms),
            "manage_stock": manage_stock,
            "stock_quantity": quantity,
            "stock_status": derived_status(managed, quantity, &variation.backorders, &variation.stock_status),
            "backorders": variation.backorders,
            "backorders_allowed": variation.backorders != "no",
        })
    }

    /// Applies a product update body (`PUT /products/{id}` or a batch `update[]` entry).
    /// `stock_quantity` only counts when `manage_stock` is true on the product after the
    /// update (§2.2). Errors are REST error objects with their status.
    pub fn update_product(&mut self, id: u64, body: &Value, now_ms: i64) -> Result<Value, Value> {
        let product = self
            .products
            .get_mut(&id)
            .ok_or_else(|| rest_error("woocommerce_rest_product_invalid_id", "Invalid ID.", 400))?;
        if let Some(flag) = body.get("manage_stock").and_then(manage_stock_value) {
            product.manage_stock = flag;
        }
        apply_common(
            body,
            product.manage_stock,
            &mut product.stock_quantity,
            &mut product.stock_status,
            &mut product.backorders,
            &mut product.history,
        );
        if let Some(sku) = body.get("sku").and_then(Value::as_str) {
            product.sku = sku.to_owned();
        }
        product.date_modified_ms = now_ms;
        let product = product.clone();
        Ok(self.product_json(&product))
    }

    /// Applies a variation update body; `manage_stock: "parent"` hands stock to the parent.
    pub fn update_variation(
        &mut self,
        parent_id: u64,
        id: u64,
        body: &Value,
        now_ms: i64,
    ) -> Result<Value, Value> {
        if !self.products.contains_key(&parent_id) {
            return Err(rest_error(
                "woocommerce_rest_product_invalid_id",
                "Invalid ID.",
                400,
            ));
        }
        let variation = self
            .variations
            .get_mut(&id)
            .filter(|variation| variation.parent_id == parent_id)
            .ok_or_else(|| {
                rest_error(
                    "woocommerce_rest_product_variation_invalid_id",
                    "Invalid ID.",
                    400,
                )
            })?;
        if let Some(flag) = body.get("manage_stock").and_then(manage_stock_value) {
            variation.manage_stock = flag;
        }
        apply_common(
            body,
            variation.manage_stock,
            &mut variation.stock_quantity,
            &mut variation.stock_status,
            &mut variation.backorders,
            &mut variation.history,
        );
        variation.date_modified_ms = now_ms;
        let variation = variation.clone();
        Ok(self.variation_json(&variation))
    }

    /// Creates a simple product (batch `create[]`).
    pub fn create_product(&mut self, body: &Value, now_ms: i64) -> Value {
        let id = self.fresh_id();
        let sku = body.get("sku").and_then(Value::as_str).unwrap_or_default();
        self.upsert_product(id, sku, None, now_ms);
        match self.update_product(id, body, now_ms) {
            Ok(json) | Err(json) => json,
        }
    }

    /// Creates a variation (batch `create[]`).
    pub fn create_variation(&mut self, parent_id: u64, body: &Value, now_ms: i64) -> Value {
        let id = self.fresh_id();
        let sku = body.get("sku").and_then(Value::as_str).unwrap_or_default();
        self.upsert_variation(parent_id, id, sku, None, now_ms);
        match self.update_variation(parent_id, id, body, now_ms) {
            Ok(json) | Err(json) => json,
        }
    }

    /// Deletes a product (batch `delete[]`).
    pub fn delete_product(&mut self, id: u64) -> Result<Value, Value> {
        let json = self
            .products
            .get(&id)
            .map(|product| self.product_json(product))
            .ok_or_else(|| rest_error("woocommerce_rest_product_invalid_id", "Invalid ID.", 400))?;
        if let Some(product) = self.products.remove(&id) {
            for variation in product.variations {
                self.variations.remove(&variation);
            }
        }
        Ok(json)
    }

    /// Deletes a variation (batch `delete[]`).
    pub fn delete_variation(&mut self, parent_id: u64, id: u64) -> Result<Value, Value> {
        let json = self
            .variations
            .get(&id)
            .filter(|variation| variation.parent_id == parent_id)
            .map(|variation| self.variation_json(variation))
            .ok_or_else(|| {
                rest_error(
                    "woocommerce_rest_product_variation_invalid_id",
                    "Invalid ID.",
                    400,
                )
            })?;
        self.variations.remove(&id);
        if let Some(parent) = self.products.get_mut(&parent_id) {
            parent.variations.retain(|variation| *variation != id);
        }
        Ok(json)
    }

    /// Where the stock of (product, variation) lives: the variation when it manages stock,
    /// else the product when it does; `None` when nobody manages it.
    pub fn holder(&self, product_id: u64, variation_id: u64) -> Option<Holder> {
        if variation_id != 0 {
            let variation = self.variations.get(&variation_id)?;
            if variation.manage_stock {
                return Some(Holder::Variation(variation_id));
            }
        }
        let product = self.products.get(&product_id)?;
        product.manage_stock.then_some(Holder::Product(product_id))
    }

    /// The managed stock of (product, variation): `manage_stock` true on the variation, or
    /// the parent's when the variation says "parent".
    pub fn stock_of(&self, product_id: u64, variation_id: u64) -> Option<i64> {
        match self.holder(product_id, variation_id)? {
            Holder::Product(id) => self.products.get(&id)?.stock_quantity,
            Holder::Variation(id) => self.variations.get(&id)?.stock_quantity,
        }
    }

    fn adjust(&mut self, holder: Holder, delta: i64, now_ms: i64) {
        let (quantity, history, modified) = match holder {
            Holder::Product(id) => match self.products.get_mut(&id) {
                Some(product) => (
                    &mut product.stock_quantity,
                    &mut product.history,
                    &mut product.date_modified_ms,
                ),
                None => return,
            },
            Holder::Variation(id) => match self.variations.get_mut(&id) {
                Some(variation) => (
                    &mut variation.stock_quantity,
                    &mut variation.history,
                    &mut variation.date_modified_ms,
                ),
                None => return,
            },
        };
        let value = quantity.unwrap_or(0) + delta;
        *quantity = Some(value);
        *modified = now_ms;
        push_history(history, Some(value));
    }

    /// Takes an order in `status`. Lines must name existing products (and variations).
    /// With `deny_oversell`, an order in a reducing status is refused when a managed line
    /// has less stock than ordered (WooCommerce does not sell out-of-stock items when
    /// backorders are `no`).
    pub fn place_order(
        &mut self,
        options: &WoocommerceSimulatorOptions,
        lines: &[SimOrderLine],
        status: &str,
        now_ms: i64,
    ) -> Result<u64, SimulatorError> {
        if !STATUSES.contains(&status) {
            return Err(SimulatorError::UnknownStatus {
                status: status.to_owned(),
            });
        }
        for line in lines {
            let known = self.products.contains_key(&line.product_id)
                && (line.variation_id == 0 || self.variations.contains_key(&line.variation_id));
            if !known {
                return Err(SimulatorError::UnknownProduct {
                    product_id: line.product_id,
                    variation_id: line.variation_id,
                });
            }
        }
        if options.deny_oversell && REDUCING_STATUSES.contains(&status) {
            self.check_stock(lines)?;
        }
        let id = self.fresh_id();
        let order_lines = lines
            .iter()
            .map(|line| OrderLine {
                id: self.fresh_id(),
                product_id: line.product_id,
                variation_id: line.variation_id,
                sku: self.line_sku(line.product_id, line.variation_id),
                quantity: line.quantity,
                reduced: 0,
                restocked: 0,
            })
            .collect();
        self.orders.insert(
            id,
            Order {
                id,
                status: "pending".to_owned(),
                date_created_ms: now_ms,
                date_modified_ms: now_ms,
                lines: order_lines,
                refunds: Vec::new(),
            },
        );
        self.transition(id, status, now_ms);
        Ok(id)
    }

    fn check_stock(&self, lines: &[SimOrderLine]) -> Result<(), SimulatorError> {
        for line in lines {
            if let Some(available) = self.stock_of(line.product_id, line.variation_id)
                && available < i64::try_from(line.quantity).unwrap_or(i64::MAX)
            {
                return Err(SimulatorError::InsufficientStock {
                    product_id: line.product_id,
                    variation_id: line.variation_id,
                    available,
                    requested: line.quantity,
                });
            }
        }
        Ok(())
    }

    fn line_sku(&self, product_id: u64, variation_id: u64) -> String {
        if variation_id != 0
            && let Some(variation) = self.variations.get(&variation_id)
        {
            return variation.sku.clone();
        }
        self.products
            .get(&product_id)
            .map(|product| product.sku.clone())
            .unwrap_or_default()
    }

    /// Moves an order to `status`, reducing or restoring stock as core does.
    pub fn set_status(
        &mut self,
        options: &WoocommerceSimulatorOptions,
        order_id: u64,
        status: &str,
        now_ms: i64,
    ) -> Result<(), SimulatorError> {
        if !STATUSES.contains(&status) {
            return Err(SimulatorError::UnknownStatus {
                status: status.to_owned(),
            });
        }
        let order = self
            .orders
            .get(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })?;
        let reduced = order.lines.iter().any(|line| line.reduced > 0);
        if options.deny_oversell && REDUCING_STATUSES.contains(&status) && !reduced {
            let lines: Vec<SimOrderLine> = order
                .lines
                .iter()
                .map(|line| SimOrderLine {
                    product_id: line.product_id,
                    variation_id: line.variation_id,
                    quantity: line.quantity,
                })
                .collect();
            self.check_stock(&lines)?;
        }
        let was_refunded = self
            .orders
            .get(&order_id)
            .is_some_and(|order| order.status == "refunded");
        self.transition(order_id, status, now_ms);
        if status == "refunded" && !was_refunded {
            self.refund_remaining(order_id, now_ms);
        }
        Ok(())
    }

    /// What core does when an order is set to `refunded` by hand
    /// (`wc_order_fully_refunded`): one refund of what is left, without line items and
    /// without restock, so reduced stock stays reduced.
    fn refund_remaining(&mut self, order_id: u64, now_ms: i64) {
        let Some(order) = self.orders.get(&order_id) else {
            return;
        };
        let left: u64 = order
            .lines
            .iter()
            .map(|line| line.quantity.saturating_sub(order.refunded_units(line.id)))
            .sum();
        if left == 0 {
            return;
        }
        let refund_id = self.fresh_id();
        if let Some(order) = self.orders.get_mut(&order_id) {
            order.refunds.push(Refund {
                id: refund_id,
                reason: "Order fully refunded.".to_owned(),
                lines: Vec::new(),
                restocked: false,
                date_created_ms: now_ms,
            });
        }
    }

    /// Changes an order's lines as an admin edit does: new quantities, removed lines (they
    /// vanish from `line_items`), added lines. When the order's stock was reduced, each
    /// change adjusts stock by the difference (`wc_maybe_adjust_line_item_product_stock`),
    /// a removed line gives its reduced units back. All changes or none.
    pub fn edit_lines(
        &mut self,
        options: &WoocommerceSimulatorOptions,
        order_id: u64,
        changes: &[LineChange],
        now_ms: i64,
    ) -> Result<(), SimulatorError> {
        let order = self
            .orders
            .get(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })?;
        let reducing = REDUCING_STATUSES.contains(&order.status.as_str());
        let mut added = 0usize;
        let mut needed: Vec<SimOrderLine> = Vec::new();
        for change in changes {
            match (change.id, change.product_id) {
                (Some(line_id), _) => {
                    let line = order
                        .lines
                        .iter()
                        .find(|line| line.id == line_id)
                        .ok_or(SimulatorError::UnknownLine { order_id, line_id })?;
                    let target = change.quantity.saturating_sub(line.restocked);
                    if reducing && target > line.reduced {
                        needed.push(SimOrderLine {
                            product_id: line.product_id,
                            variation_id: line.variation_id,
                            quantity: target - line.reduced,
                        });
                    }
                }
                (None, Some(product_id)) => {
                    let known = self.products.contains_key(&product_id)
                        && (change.variation_id == 0
                            || self.variations.contains_key(&change.variation_id));
                    if !known || change.quantity == 0 {
                        return Err(SimulatorError::UnknownProduct {
                            product_id,
                            variation_id: change.variation_id,
                        });
                    }
                    added += 1;
                    if reducing {
                        needed.push(SimOrderLine {
                            product_id,
                            variation_id: change.variation_id,
                            quantity: change.quantity,
                        });
                    }
                }
                (None, None) => {
                    return Err(SimulatorError::UnknownLine {
                        order_id,
                        line_id: 0,
                    });
                }
            }
        }
        if order.lines.len().saturating_add(added) > ORDER_LINES_MAX {
            return Err(SimulatorError::TooManyLines {
                order_id,
                max: ORDER_LINES_MAX,
            });
        }
        if options.deny_oversell {
            self.check_stock(&needed)?;
        }
        // (product, variation, stock delta)
        let mut adjustments: Vec<(u64, u64, i64)> = Vec::new();
        let mut new_lines = Vec::new();
        for change in changes {
            if change.id.is_none()
                && let Some(product_id) = change.product_id
            {
                let id = self.fresh_id();
                let sku = self.line_sku(product_id, change.variation_id);
                let reduced = if reducing { change.quantity } else { 0 };
                if reduced > 0 {
                    adjustments.push((
                        product_id,
                        change.variation_id,
                        -i64::try_from(reduced).unwrap_or(i64::MAX),
                    ));
                }
                new_lines.push(OrderLine {
                    id,
                    product_id,
                    variation_id: change.variation_id,
                    sku,
                    quantity: change.quantity,
                    reduced,
                    restocked: 0,
                });
            }
        }
        let Some(order) = self.orders.get_mut(&order_id) else {
            return Err(SimulatorError::UnknownOrder { order_id });
        };
        for change in changes {
            let Some(line_id) = change.id else { continue };
            let Some(index) = order.lines.iter().position(|line| line.id == line_id) else {
                continue;
            };
            let line = &mut order.lines[index];
            let target = if reducing || line.reduced > 0 {
                change.quantity.saturating_sub(line.restocked)
            } else {
                0
            };
            let delta = i64::try_from(line.reduced).unwrap_or(i64::MAX)
                - i64::try_from(target).unwrap_or(i64::MAX);
            if delta != 0 && (reducing || line.reduced > 0) {
                adjustments.push((line.product_id, line.variation_id, delta));
                line.reduced = target;
            }
            line.quantity = change.quantity;
            if change.quantity == 0 {
                order.lines.remove(index);
            }
        }
        order.lines.extend(new_lines);
        order.date_modified_ms = now_ms;
        for (product_id, variation_id, delta) in adjustments {
            if let Some(holder) = self.holder(product_id, variation_id) {
                self.adjust(holder, delta, now_ms);
            }
        }
        Ok(())
    }

    fn transition(&mut self, order_id: u64, status: &str, now_ms: i64) {
        let Some(order) = self.orders.get_mut(&order_id) else {
            return;
        };
        order.status = status.to_owned();
        order.date_modified_ms = now_ms;
        let lines: Vec<(usize, u64, u64, u64, u64)> = order
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                (
                    index,
                    line.product_id,
                    line.variation_id,
                    line.quantity,
                    line.reduced,
                )
            })
            .collect();
        let reduce = REDUCING_STATUSES.contains(&status);
        let restore = RESTORING_STATUSES.contains(&status);
        for (index, product_id, variation_id, quantity, reduced) in lines {
            let Some(holder) = self.holder(product_id, variation_id) else {
                continue;
            };
            let change = if reduce && reduced == 0 {
                Some((-i64::try_from(quantity).unwrap_or(i64::MAX), quantity))
            } else if restore && reduced > 0 {
                Some((i64::try_from(reduced).unwrap_or(i64::MAX), 0))
            } else {
                None
            };
            if let Some((delta, now_reduced)) = change {
                self.adjust(holder, delta, now_ms);
                if let Some(order) = self.orders.get_mut(&order_id) {
                    order.lines[index].reduced = now_reduced;
                }
            }
        }
    }

    /// Refunds `lines` (line id, units) of an order; with `restock`, the units go back to
    /// stock and the line's `_restock_refunded_items` grows. A refund of every remaining
    /// unit moves the order to `refunded`. Returns the refund id.
    pub fn refund(
        &mut self,
        order_id: u64,
        lines: &[(u64, u64)],
        restock: bool,
        reason: &str,
        now_ms: i64,
    ) -> Result<u64, SimulatorError> {
        let order = self
            .orders
            .get(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })?;
        let mut asked: BTreeMap<u64, u64> = BTreeMap::new();
        for (line_id, units) in lines {
            let Some(line) = order.lines.iter().find(|line| line.id == *line_id) else {
                return Err(SimulatorError::UnknownLine {
                    order_id,
                    line_id: *line_id,
                });
            };
            let total = asked.entry(*line_id).or_default();
            *total = total.saturating_add(*units);
            let remaining = line.quantity.saturating_sub(order.refunded_units(*line_id));
            if *total > remaining {
                return Err(SimulatorError::RefundExceedsLine {
                    order_id,
                    line_id: *line_id,
                    requested: *total,
                    remaining,
                });
            }
        }
        let refund_id = self.fresh_id();
        let mut changes = Vec::new();
        if let Some(order) = self.orders.get_mut(&order_id) {
            for (line_id, units) in lines {
                if let Some(line) = order.lines.iter_mut().find(|line| line.id == *line_id)
                    && restock
                {
                    line.restocked += units;
                    changes.push((line.product_id, line.variation_id, *units));
                }
            }
            order.refunds.push(Refund {
                id: refund_id,
                reason: reason.to_owned(),
                lines: lines.to_vec(),
                restocked: restock,
                date_created_ms: now_ms,
            });
            order.date_modified_ms = now_ms;
            let refunded: u64 = order
                .refunds
                .iter()
                .flat_map(|refund| refund.lines.iter().map(|(_, units)| *units))
                .sum();
            let ordered: u64 = order.lines.iter().map(|line| line.quantity).sum();
            if refunded >= ordered {
                order.status = "refunded".to_owned();
            }
        }
        for (product_id, variation_id, units) in changes {
            if let Some(holder) = self.holder(product_id, variation_id) {
                self.adjust(holder, i64::try_from(units).unwrap_or(i64::MAX), now_ms);
            }
        }
        Ok(refund_id)
    }

    /// The REST order resource (the webhook body, §2.3). Prices are sandbox placeholders.
    pub fn order_json(&self, order: &Order, site: &str) -> Value {
        let line_items: Vec<Value> = order
            .lines
            .iter()
            .map(|line| {
                let mut meta = Vec::new();
                if line.reduced > 0 {
                    meta.push(json!({"id": line.id * 10 + 1, "key": "_reduced_stock", "value": line.reduced.to_string()}));
                }
                if line.restocked > 0 {
                    meta.push(json!({"id": line.id * 10 + 2, "key": "_restock_refunded_items", "value": line.restocked.to_string()}));
                }
                json!({
                    "id": line.id,
                    "name": format!("Sandbox item {}", line.sku),
                    "product_id": line.product_id,
                    "variation_id": line.variation_id,
                    "quantity": line.quantity,
                    "sku": line.sku,
                    "price": 10,
                    "subtotal": format!("{}.00", line.quantity * 10),
                    "total": format!("{}.00", line.quantity * 10),
                    "meta_data": meta,
                })
            })
            .collect();
        let refunds: Vec<Value> = order
            .refunds
            .iter()
            .map(|refund| {
                let units: u64 = refund.lines.iter().map(|(_, units)| *units).sum();
                json!({"id": refund.id, "reason": refund.reason, "total": format!("-{}.00", units * 10)})
            })
            .collect();
        let total: u64 = order.lines.iter().map(|line| line.quantity * 10).sum();
        json!({
            "id": order.id,
            "parent_id": 0,
            "number": order.id.to_string(),
            "order_key": format!("wc_order_sandbox{}", order.id),
            "created_via": "checkout",
            "status": order.status,
            "currency": "EUR",
            "date_created": gmt(order.date_created_ms),
            "date_created_gmt": gmt(order.date_created_ms),
            "date_modified": gmt(order.date_modified_ms),
            "date_modified_gmt": gmt(order.date_modified_ms),
            "total": format!("{total}.00"),
            "customer_id": 0,
            "billing": {
                "first_name": "Sandy",
                "last_name": "Tester",
                "email": "sandy.tester@example.invalid",
                "city": "Testville",
                "country": "NL",
            },
            "line_items": line_items,
            "refunds": refunds,
            "_links": { "self": [ { "href": format!("{site}/wp-json/wc/v3/orders/{}", order.id) } ] },
        })
    }

    /// The REST refund resources of an order (`GET /orders/{id}/refunds`); refund line
    /// quantities are negative (§2.3).
    pub fn refunds_json(&self, order: &Order) -> Vec<Value> {
        order
            .refunds
            .iter()
            .map(|refund| {
                let lines: Vec<Value> = refund
                    .lines
                    .iter()
                    .filter_map(|(line_id, units)| {
                        let line = order.lines.iter().find(|line| line.id == *line_id)?;
                        Some(json!({
                            "id": line_id * 100 + refund.id,
                            "product_id": line.product_id,
                            "variation_id": line.variation_id,
                            "sku": line.sku,
                            "quantity": -i64::try_from(*units).unwrap_or(i64::MAX),
                            "meta_data": [{"key": "_refunded_item_id", "value": line_id.to_string()}],
                        }))
                    })
                    .collect();
                json!({
                    "id": refund.id,
                    "date_created_gmt": gmt(refund.date_created_ms),
                    "reason": refund.reason,
                    "refunded_payment": false,
                    "api_restock": refund.restocked,
                    "line_items": lines,
                })
            })
            .collect()
    }
}

fn apply_common(
    body: &Value,
    managed: bool,
    quantity: &mut Option<i64>,
    status: &mut String,
    backorders: &mut String,
    history: &mut Vec<i64>,
) {
    if managed && let Some(value) = body.get("stock_quantity") {
        let new = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()));
        if value.is_null() || new.is_some() {
            *quantity = new;
            push_history(history, new);
        }
    }
    if !managed
        && let Some(value) = body.get("stock_status").and_then(Value::as_str)
        && ["instock", "outofstock", "onbackorder"].contains(&value)
    {
        *status = value.to_owned();
    }
    if let Some(value) = body.get("backorders").and_then(Value::as_str)
        && ["no", "notify", "yes"].contains(&value)
    {
        *backorders = value.to_owned();
    }
}
