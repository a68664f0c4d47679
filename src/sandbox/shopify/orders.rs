//! The simulated shop's order lifecycle after creation, free of HTTP: order edits (the
//! GraphQL `orderEditBegin` → `orderEditSetQuantity` / `orderEditAddVariant` →
//! `orderEditCommit` flow), fulfilments and refunds, with their effect on inventory levels
//! and the REST bodies of the webhooks they cause (`orders/edited`, `fulfillments/create`,
//! `refunds/create`; `orders/updated` is [`order_json`](super::webhook::order_json)).
//!
//! Stock model (as Shopify keeps it, PLATFORMS.md §1.5): an open order line holds
//! `committed` units, i.e. `on_hand - available`. A fulfilment takes units out of
//! `on_hand`; releasing open units with restock puts them back into `available`; releasing
//! them without restock takes them out of `on_hand`; a returned unit with restock comes back
//! into both.

use super::SimulatorError;
use super::state::{SimLineRecord, SimOrderRecord, SimState};
use super::webhook::rfc3339;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Most open (begun, not committed) order-edit sessions; `orderEditBegin` is refused above it.
pub(crate) const EDIT_SESSIONS_MAX: usize = 1_000;
/// Most lines one order may have (edits that add more are refused).
pub(crate) const ORDER_LINES_MAX: usize = 250;

/// A begun order edit (`CalculatedOrder`): staged quantities and added lines.
#[derive(Clone, Debug)]
pub(crate) struct EditSession {
    pub order_id: u64,
    pub created_at_ms: i64,
    /// Existing line id → (new quantity, restock released units).
    pub set: BTreeMap<u64, (u64, bool)>,
    /// Added lines: (line id, inventory item, SKU, quantity).
    pub added: Vec<(u64, u64, String, u64)>,
}

/// One refund line asked for (`refund_line_items[]` of the REST refund).
#[derive(Clone, Debug, Deserialize)]
pub struct RefundLineRequest {
    /// The order's line item id.
    pub line_item_id: u64,
    /// Units refunded.
    pub quantity: u64,
    /// `no_restock`, `cancel` (unfulfilled units back to stock) or `return` (shipped units
    /// back to stock).
    pub restock_type: String,
    /// Where restocked units go; the order's location when absent.
    #[serde(default)]
    pub location_id: Option<u64>,
}

/// One fulfilment line asked for.
#[derive(Clone, Debug, Deserialize)]
pub struct FulfilLineRequest {
    /// The order's line item id.
    pub id: u64,
    /// Units shipped; every fulfillable unit of the line when absent.
    #[serde(default)]
    pub quantity: Option<u64>,
}

fn invalid(message: String) -> SimulatorError {
    SimulatorError::Invalid { message }
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SimState {
    fn order_mut(&mut self, order_id: u64) -> Result<&mut SimOrderRecord, SimulatorError> {
        self.orders
            .get_mut(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })
    }

    fn open_order(&mut self, order_id: u64) -> Result<&mut SimOrderRecord, SimulatorError> {
        let order = self.order_mut(order_id)?;
        if order.cancelled_at_ms.is_some() {
            return Err(SimulatorError::AlreadyCancelled { order_id });
        }
        Ok(order)
    }

    /// Moves `committed` units: `delta > 0` commits more (available drops), `delta < 0`
    /// releases (`restock`: back to available; otherwise out of on-hand).
    pub(super) fn commit_units(
        &mut self,
        item: u64,
        location: u64,
        delta: i64,
        restock: bool,
        now_ms: i64,
    ) {
        let level = self
            .levels
            .entry((item, location))
            .or_insert_with(|| super::state::SimLevel::new(0, now_ms));
        if delta > 0 {
            let after = level.available.saturating_sub(delta);
            level.set_available(after, now_ms);
            level.on_hand = level.on_hand.saturating_add(delta);
        } else if delta < 0 {
            let units = delta.saturating_neg();
            if restock {
                let after = level.available.saturating_add(units);
                level.set_available(after, now_ms);
                level.on_hand = level.on_hand.saturating_sub(units);
            } else {
                level.on_hand = level.on_hand.saturating_sub(units);
                level.updated_at_ms = now_ms;
            }
        }
    }

    /// `orderEditBegin`: a new session over an open order. Returns its id.
    pub fn edit_begin(&mut self, order_id: u64, now_ms: i64) -> Result<u64, SimulatorError> {
        self.open_order(order_id)?;
        if self.edit_sessions.len() >= EDIT_SESSIONS_MAX {
            return Err(invalid(format!(
                "more than {EDIT_SESSIONS_MAX} order edits are open; commit some first"
            )));
        }
        let id = self.next_edit_id;
        self.next_edit_id += 1;
        self.edit_sessions.insert(
            id,
            EditSession {
                order_id,
                created_at_ms: now_ms,
                set: BTreeMap::new(),
                added: Vec::new(),
            },
        );
        Ok(id)
    }

    /// The calculated order of a session as `orderEditBegin` returns it.
    pub fn calculated_order_json(&self, edit_id: u64) -> Value {
        let Some(session) = self.edit_sessions.get(&edit_id) else {
            return Value::Null;
        };
        let mut nodes = Vec::new();
        if let Some(order) = self.orders.get(&session.order_id) {
            for line in &order.lines {
                let quantity = session
                    .set
                    .get(&line.id)
                    .map_or(line.current_quantity(), |(quantity, _)| *quantity);
                nodes.push(calculated_line(line.id, &line.sku, quantity));
            }
        }
        for (line_id, _, sku, quantity) in &session.added {
            nodes.push(calculated_line(*line_id, sku, *quantity));
        }
        json!({
            "id": format!("gid://shopify/CalculatedOrder/{edit_id}"),
            "originalOrder": { "id": format!("gid://shopify/Order/{}", session.order_id) },
            "lineItems": { "nodes": nodes },
        })
    }

    /// `orderEditSetQuantity`: stages a line's new quantity (0 removes it). Added lines of
    /// the same session can be changed too. Returns the calculated line.
    pub fn edit_set_quantity(
        &mut self,
        allow_below_fulfilled: bool,
        edit_id: u64,
        line_id: u64,
        quantity: u64,
        restock: bool,
    ) -> Result<Value, SimulatorError> {
        let session = self
            .edit_sessions
            .get(&edit_id)
            .ok_or_else(|| invalid(format!("order edit {edit_id} does not exist")))?;
        let order_id = session.order_id;
        if let Some(index) = session.added.iter().position(|added| added.0 == line_id) {
            let session = self.edit_sessions.get_mut(&edit_id).expect("found above");
            if quantity == 0 {
                let removed = session.added.remove(index);
                return Ok(calculated_line(removed.0, &removed.2, 0));
            }
            session.added[index].3 = quantity;
            let added = &session.added[index];
            return Ok(calculated_line(added.0, &added.2, quantity));
        }
        let order = self
            .orders
            .get(&order_id)
            .ok_or(SimulatorError::UnknownOrder { order_id })?;
        let line = order
            .lines
            .iter()
            .find(|line| line.id == line_id)
            .ok_or_else(|| invalid(format!("line item {line_id} is not on order {order_id}")))?;
        if !allow_below_fulfilled && quantity < line.fulfilled {
            return Err(invalid(format!(
                "line item {line_id}: the quantity can't be lower than the {} units already fulfilled",
                line.fulfilled
            )));
        }
        let sku = line.sku.clone();
        let session = self.edit_sessions.get_mut(&edit_id).expect("found above");
        session.set.insert(line_id, (quantity, restock));
        Ok(calculated_line(line_id, &sku, quantity))
    }

    /// `orderEditAddVariant`: stages a new line for an inventory item (the sandbox's variant
    /// id). The SKU is the one given, else the one the item was sold or listed under.
    pub fn edit_add_variant(
        &mut self,
        edit_id: u64,
        item: u64,
        sku: Option<&str>,
        quantity: u64,
    ) -> Result<Value, SimulatorError> {
        if quantity == 0 {
            return Err(invalid("the quantity must be at least 1".to_owned()));
        }
        let sku = match sku {
            Some(sku) => sku.to_owned(),
            None => self
                .item_skus
                .get(&item)
                .cloned()
                .ok_or_else(|| invalid(format!("variant {item} does not exist")))?,
        };
        let session = self
            .edit_sessions
            .get(&edit_id)
            .ok_or_else(|| invalid(format!("order edit {edit_id} does not exist")))?;
        let lines = self
            .orders
            .get(&session.order_id)
            .map_or(0, |order| order.lines.len());
        if lines + session.added.len() >= ORDER_LINES_MAX {
            return Err(invalid(format!(
                "an order has at most {ORDER_LINES_MAX} lines"
            )));
        }
        let line_id = self.next_added_line_id;
        self.next_added_line_id += 1;
        let session = self.edit_sessions.get_mut(&edit_id).expect("found above");
        session.added.push((line_id, item, sku.clone(), quantity));
        Ok(calculated_line(line_id, &sku, quantity))
    }

    /// `orderEditCommit`: applies a session to its order and the levels. Returns the order
    /// after the edit and the `orders/edited` body. All staged changes or none.
    pub fn edit_commit(
        &mut self,
        deny_oversell: bool,
        edit_id: u64,
        now_ms: i64,
    ) -> Result<(SimOrderRecord, Value), SimulatorError> {
        let session = self
            .edit_sessions
            .get(&edit_id)
            .cloned()
            .ok_or_else(|| invalid(format!("order edit {edit_id} does not exist")))?;
        let order = self.open_order(session.order_id)?.clone();
        let location = order.location_id;
        // (line id, item, delta, restock)
        let mut changes: Vec<(u64, u64, i64, bool)> = Vec::new();
        for line in &order.lines {
            if let Some((quantity, restock)) = session.set.get(&line.id) {
                let before = line.current_quantity();
                let delta = signed(*quantity) - signed(before);
                if delta != 0 {
                    changes.push((line.id, line.item, delta, *restock));
                }
            }
        }
        for (line_id, item, _, quantity) in &session.added {
            changes.push((*line_id, *item, signed(*quantity), false));
        }
        if deny_oversell {
            let mut needed: BTreeMap<u64, i64> = BTreeMap::new();
            for (_, item, delta, _) in &changes {
                if *delta > 0 {
                    *needed.entry(*item).or_default() += delta;
                }
            }
            for (item, units) in needed {
                let available = self
                    .levels
                    .get(&(item, location))
                    .map_or(0, |l| l.available);
                if available < units {
                    return Err(SimulatorError::InsufficientStock {
                        inventory_item_id: item,
                        location_id: location,
                        available,
                        requested: u64::try_from(units).unwrap_or(0),
                    });
                }
            }
        }
        self.edit_sessions.remove(&edit_id);
        for (line_id, item, delta, restock) in &changes {
            // Only open units are committed: a cut below what shipped (when allowed)
            // releases no more than the line's fulfillable units.
            let open = order
                .lines
                .iter()
                .find(|line| line.id == *line_id)
                .map_or(u64::MAX, SimLineRecord::fulfillable);
            let delta = if *delta < 0 {
                -(delta.saturating_neg().min(signed(open)))
            } else {
                *delta
            };
            self.commit_units(*item, location, delta, *restock, now_ms);
        }
        let order = self.open_order(session.order_id)?;
        for line in &mut order.lines {
            if let Some((quantity, _)) = session.set.get(&line.id) {
                let removed_open = line.refunded_open.saturating_add(line.returned);
                line.edited_quantity = quantity.saturating_add(removed_open);
            }
        }
        for (line_id, item, sku, quantity) in &session.added {
            order
                .lines
                .push(SimLineRecord::new(*line_id, *item, sku.clone(), *quantity));
        }
        order.updated_at_ms = now_ms;
        order.sync_fulfillment_order(now_ms);
        let order = order.clone();
        let mut additions = Vec::new();
        let mut removals = Vec::new();
        for (line_id, _, delta, _) in &changes {
            let entry = json!({ "id": line_id, "delta": delta.unsigned_abs() });
            if *delta > 0 {
                additions.push(entry);
            } else {
                removals.push(entry);
            }
        }
        let body = json!({
            "order_edit": {
                "id": edit_id,
                "app_id": null,
                "created_at": rfc3339(session.created_at_ms),
                "committed_at": rfc3339(now_ms),
                "notify_customer": false,
                "order_id": order.id,
                "staff_note": "",
                "user_id": null,
                "line_items": { "additions": additions, "removals": removals },
                "discounts": {
                    "line_item": { "additions": [], "removals": [] },
                },
                "shipping_lines": { "additions": [], "removals": [] },
            }
        });
        Ok((order, body))
    }

    /// Fulfils lines of an open order (every fulfillable unit when `lines` is empty): the
    /// units leave `on_hand`. Returns the order and the `fulfillments/create` body.
    pub fn fulfil(
        &mut self,
        order_id: u64,
        lines: &[FulfilLineRequest],
        now_ms: i64,
    ) -> Result<(SimOrderRecord, Value), SimulatorError> {
        let order = self.open_order(order_id)?.clone();
        let mut shipped: Vec<(usize, u64)> = Vec::new();
        if lines.is_empty() {
            for (index, line) in order.lines.iter().enumerate() {
                if line.fulfillable() > 0 {
                    shipped.push((index, line.fulfillable()));
                }
            }
        } else {
            for request in lines {
                let index = order
                    .lines
                    .iter()
                    .position(|line| line.id == request.id)
                    .ok_or_else(|| {
                        invalid(format!(
                            "line item {} is not on order {order_id}",
                            request.id
                        ))
                    })?;
                let fulfillable = order.lines[index].fulfillable();
                let units = request.quantity.unwrap_or(fulfillable);
                if units == 0 || units > fulfillable {
                    return Err(invalid(format!(
                        "line item {}: cannot fulfil {units} of {fulfillable} fulfillable units",
                        request.id
                    )));
                }
                shipped.push((index, units));
            }
        }
        if shipped.is_empty() {
            return Err(invalid(format!("order {order_id} has nothing to fulfil")));
        }
        let location = order.location_id;
        for (index, units) in &shipped {
            let item = order.lines[*index].item;
            if let Some(level) = self.levels.get_mut(&(item, location)) {
                level.on_hand = level.on_hand.saturating_sub(signed(*units));
                level.updated_at_ms = now_ms;
            }
        }
        self.next_fulfillment_id += 1;
        let fulfillment_id = self.next_fulfillment_id;
        let order = self.open_order(order_id)?;
        order.fulfillments += 1;
        for (index, units) in &shipped {
            order.lines[*index].fulfilled += units;
        }
        order.updated_at_ms = now_ms;
        order.sync_fulfillment_order(now_ms);
        let order = order.clone();
        let line_items: Vec<Value> = shipped
            .iter()
            .map(|(index, units)| {
                let mut line = super::webhook::line_json(&order, &order.lines[*index]);
                line["quantity"] = json!(units);
                line["fulfillment_status"] = json!("fulfilled");
                line
            })
            .collect();
        let body = json!({
            "id": fulfillment_id,
            "admin_graphql_api_id": format!("gid://shopify/Fulfillment/{fulfillment_id}"),
            "order_id": order.id,
            "name": format!("#{}.{}", order.number, order.fulfillments),
            "status": "success",
            "service": "manual",
            "location_id": location,
            "created_at": rfc3339(now_ms),
            "updated_at": rfc3339(now_ms),
            "shipment_status": null,
            "tracking_company": null,
            "tracking_number": null,
            "tracking_numbers": [],
            "line_items": line_items,
        });
        Ok((order, body))
    }

    /// Refunds lines of an order (`refundCreate`): `cancel` releases unfulfilled units back
    /// to stock, `return` puts shipped units back, `no_restock` refunds money only (shipped
    /// units first, then open ones, which leave on-hand). All lines or none. Returns the
    /// order and the `refunds/create` body.
    pub fn refund(
        &mut self,
        order_id: u64,
        lines: &[RefundLineRequest],
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<(SimOrderRecord, Value), SimulatorError> {
        let order = self.order_mut(order_id)?.clone();
        if order.refunds.len() >= super::state::MAX_REFUNDS_PER_ORDER {
            return Err(invalid(format!(
                "order {order_id} has {} refunds already, the most the sandbox keeps",
                order.refunds.len()
            )));
        }
        let cancelled = order.cancelled_at_ms.is_some();
        // Check everything first against a working copy of the lines.
        let mut working = order.lines.clone();
        // (line index, units, restock_type, location, from shipped units)
        let mut plan: Vec<(usize, u64, String, u64, bool)> = Vec::new();
        for request in lines {
            let index = working
                .iter()
                .position(|line| line.id == request.line_item_id)
                .ok_or_else(|| {
                    invalid(format!(
                        "line item {} is not on order {order_id}",
                        request.line_item_id
                    ))
                })?;
            let line = &mut working[index];
            let shipped_left = line.fulfilled.saturating_sub(line.returned);
            let open_left = if cancelled { 0 } else { line.fulfillable() };
            let units = request.quantity;
            let from_shipped = match request.restock_type.as_str() {
                "return" => true,
                "cancel" => false,
                "no_restock" => units <= shipped_left,
                other => {
                    return Err(invalid(format!(
                        "restock_type {other:?} is not one of no_restock, cancel, return"
                    )));
                }
            };
            let left = if from_shipped {
                shipped_left
            } else {
                open_left
            };
            if units == 0 || units > left {
                return Err(invalid(format!(
                    "line item {}: cannot refund {units} {} units, {left} left",
                    request.line_item_id,
                    if from_shipped {
                        "fulfilled"
                    } else {
                        "unfulfilled"
                    }
                )));
            }
            if from_shipped {
                line.returned += units;
            } else {
                line.refunded_open += units;
            }
            plan.push((
                index,
                units,
                request.restock_type.clone(),
                request.location_id.unwrap_or(order.location_id),
                from_shipped,
            ));
        }
        for (index, units, restock_type, location, from_shipped) in &plan {
            let item = working[*index].item;
            let units = signed(*units);
            match (restock_type.as_str(), from_shipped) {
                ("return", _) => {
                    let level = self
                        .levels
                        .entry((item, *location))
                        .or_insert_with(|| super::state::SimLevel::new(0, now_ms));
                    let after = level.available.saturating_add(units);
                    level.set_available(after, now_ms);
                }
                ("cancel", _) if *location == order.location_id => {
                    self.commit_units(item, *location, -units, true, now_ms);
                }
                ("cancel", _) => {
                    // Released where it was committed, restocked where the refund says.
                    self.commit_units(item, order.location_id, -units, false, now_ms);
                    let level = self
                        .levels
                        .entry((item, *location))
                        .or_insert_with(|| super::state::SimLevel::new(0, now_ms));
                    let after = level.available.saturating_add(units);
                    level.set_available(after, now_ms);
                }
                (_, false) => self.commit_units(item, order.location_id, -units, false, now_ms),
                _ => {}
            }
        }
        self.next_refund_id += 1;
        let refund_id = self.next_refund_id;
        let stored = self.order_mut(order_id)?;
        stored.lines = working;
        stored.updated_at_ms = now_ms;
        stored.sync_fulfillment_order(now_ms);
        let order = stored.clone();
        let refund_lines: Vec<Value> = plan
            .iter()
            .enumerate()
            .map(|(position, (index, units, restock_type, location, _))| {
                let line = &order.lines[*index];
                let refund_line_id = refund_id * 100 + position as u64 + 1;
                json!({
                    "id": refund_line_id,
                    "line_item_id": line.id,
                    "location_id": if restock_type == "no_restock" { Value::Null } else { json!(location) },
                    "quantity": units,
                    "restock_type": restock_type,
                    "subtotal": format!("{:.2}", 10.0 * *units as f64),
                    "total_tax": "0.00",
                    "line_item": super::webhook::line_json(&order, line),
                })
            })
            .collect();
        let restock = plan.iter().any(|(_, _, kind, _, _)| kind != "no_restock");
        let body = json!({
            "id": refund_id,
            "admin_graphql_api_id": format!("gid://shopify/Refund/{refund_id}"),
            "order_id": order.id,
            "created_at": rfc3339(now_ms),
            "processed_at": rfc3339(now_ms),
            "note": note,
            "restock": restock,
            "user_id": null,
            "refund_line_items": refund_lines,
            "transactions": [],
            "order_adjustments": [],
        });
        // The order resource embeds its refunds (the decoder needs them to tell what
        // `current_quantity` already excludes).
        let stored = self.order_mut(order_id)?;
        stored.refunds.push(body.clone());
        let order = stored.clone();
        Ok((order, body))
    }
}

fn calculated_line(line_id: u64, sku: &str, quantity: u64) -> Value {
    json!({
        "id": format!("gid://shopify/CalculatedLineItem/{line_id}"),
        "sku": sku,
        "quantity": quantity,
    })
}
