//! The demo storefront of a simulator: what `stocksync demo` (and the tests that need every
//! channel at once) asks of each platform's simulator, so the demo itself names none.
//!
//! Owns: the [`DemoShop`] trait, the demo's SKU names and its kit, and the helpers every
//! platform's `demo.rs` shares. Each platform implements the trait in
//! `sandbox/<name>/demo.rs`; [`super::demo_shops`] lists them.
//!
//! May depend on: nothing outside `sandbox` (a storefront only produces TOML text and
//! talks to its simulator).

use async_trait::async_trait;
use std::any::Any;

/// The SKU of the demo's gift kit (a bundle of two demo SKUs).
pub const KIT: &str = "DEMO-KIT";

/// The SKU with demo index `index` (`DEMO-0001` for 0).
pub fn sku_name(index: usize) -> String {
    format!("DEMO-{:04}", index + 1)
}

/// A listener on `127.0.0.1:0` for a demo simulator, with `what` in the error.
///
/// Errors: the port cannot be bound.
pub async fn bind_any(what: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| in_context(what, error))
}

/// `error` with `what` (e.g. "starting the … simulator") in front of its message.
pub fn in_context(what: &str, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{what}: {error}"))
}

/// An order a storefront took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoOrder {
    /// How the demo prints it (`<platform> <order id>`).
    pub label: String,
    /// The order id to pass to [`DemoShop::cancel_order`], when the storefront can cancel.
    pub cancellable: Option<u64>,
}

/// One platform's simulator dressed as a demo storefront listing SKUs `0..skus` (see
/// [`sku_name`]), all at 0 units when started.
#[async_trait]
pub trait DemoShop: Send + Sync {
    /// The platform's display name (`"Bol.com"`).
    fn name(&self) -> &'static str;
    /// The id of its channel in the demo config.
    fn channel(&self) -> &'static str;
    /// Its channel's stock rules in words, as the demo prints them.
    fn rules(&self) -> &'static str;
    /// How many inbound purchase-order units its channel may pre-sell, if any.
    fn preorder_cap(&self) -> Option<u64> {
        None
    }
    /// Where the simulator listens.
    fn base_url(&self) -> String;
    /// Its `[[channels]]` TOML block for SKUs `0..skus` (and the kit when
    /// [`DemoShop::lists_kit`]).
    fn channel_toml(&self, skus: usize) -> String;
    /// Points the simulator's order notifications at the engine API `api`
    /// (`http://host:port`), for platforms that push orders.
    fn connect(&self, _api: &str) {}
    /// What the storefront lists for SKU `index`.
    fn listed(&self, index: usize) -> Option<i64>;
    /// Whether it lists the [`KIT`].
    fn lists_kit(&self) -> bool {
        false
    }
    /// What it lists for the [`KIT`] (`None` when it does not list it).
    fn listed_kit(&self) -> Option<i64> {
        None
    }
    /// A buyer orders `quantity` × SKU `index`; on the marketplaces only what the listing
    /// shows can be bought.
    ///
    /// Errors: why the storefront refused, printable.
    async fn place_order(&self, index: usize, quantity: u64) -> Result<DemoOrder, String>;
    /// Cancels (with restock) an order it reported as cancellable; whether that worked.
    async fn cancel_order(&self, _order_id: u64) -> bool {
        false
    }
    /// The simulator itself, for callers that know its type (tests).
    fn simulator(&self) -> &dyn Any;
    /// Stops the simulator.
    async fn shutdown(self: Box<Self>);
}
