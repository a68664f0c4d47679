//! Faithful local simulators of the sales platforms (DESIGN.md §4 "Platform simulators").
//!
//! Owns: in-process HTTP servers that behave like the platforms described in PLATFORMS.md,
//! including the awkward parts (throttling, compare-and-set errors, idempotency keys,
//! signed webhooks). Tests, the demo, benchmarks and what-if simulation use them. Every
//! simulator answers `GET /_sandbox` with the index of its inspection and control endpoints
//! (method, path, example body), built from the table its router is built from ([`index`]).
//!
//! May depend on: `config`, `telemetry` only; a simulator knows nothing about the engine.

pub mod amazon;
pub mod bolcom;
pub mod demo;
pub mod index;
pub mod shopify;
pub mod woocommerce;

/// Starts every platform's demo storefront (see [`demo::DemoShop`]) listing SKUs `0..skus`,
/// one line per platform, in the order of the demo config's channels.
///
/// Errors: a simulator cannot bind.
pub async fn demo_shops(skus: usize) -> std::io::Result<Vec<Box<dyn demo::DemoShop>>> {
    Ok(vec![
        Box::new(shopify::demo::DemoStore::start(skus).await?),
        Box::new(woocommerce::demo::DemoStore::start(skus).await?),
        Box::new(bolcom::demo::DemoStore::start(skus).await?),
        Box::new(amazon::demo::DemoStore::start(skus).await?),
    ])
}

/// The sandbox shop that `stocksync loadgen rest --push` measures movement → channel push
/// latency against: the Shopify simulator, which keeps the wall time of every level set it
/// receives (`level_history_at_ms`).
pub type PushShop = shopify::ShopifySimulator;

/// Starts the [`PushShop`] on a loopback port; inventory levels are created on their first
/// set, so any inventory item id can be listed.
///
/// Errors: the port cannot be bound.
pub async fn start_push_shop() -> std::io::Result<PushShop> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let options = shopify::ShopifySimulatorOptions {
        auto_create_levels: true,
        ..shopify::ShopifySimulatorOptions::default()
    };
    shopify::start(options, listener).await
}

/// Where `stocksync sandbox` listens and sends, one entry per platform.
#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    /// Shopify simulator address (`127.0.0.1:9100`).
    pub shopify_listen: String,
    /// Where the Shopify simulator sends signed order webhooks.
    pub shopify_webhook_url: Option<String>,
    /// WooCommerce simulator address (`127.0.0.1:9200`).
    pub woocommerce_listen: String,
    /// Where the WooCommerce simulator sends signed order webhooks.
    pub woocommerce_webhook_url: Option<String>,
    /// Bol.com simulator address (`127.0.0.1:9300`).
    pub bolcom_listen: String,
    /// Amazon simulator address (`127.0.0.1:9400`).
    pub amazon_listen: String,
    /// Where the Amazon simulator posts ORDER_CHANGE notifications (standing in for SQS).
    pub amazon_notification_url: Option<String>,
}

async fn bind(address: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
        })
}

/// Runs all four simulators until `stop` completes, printing where each listens and the
/// credentials it accepts (the defaults that `config/*.toml` use). Each lists its control
/// endpoints at `GET /_sandbox`.
///
/// Errors: an address cannot be bound.
pub async fn run_standalone(
    options: StandaloneOptions,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let shop_options = shopify::ShopifySimulatorOptions {
        webhook_url: options.shopify_webhook_url,
        auto_create_levels: true,
        ..Default::default()
    };
    let shop = shopify::start(shop_options.clone(), bind(&options.shopify_listen).await?).await?;
    println!(
        "Shopify      {}  (access token {:?}, webhook secret {:?}; locations 1 = warehouse, 2 = store; levels: GET /_sandbox/levels, orders: POST /_sandbox/orders with location_id, \"source_name\": \"pos\" for a store sale; moves: POST /_sandbox/fulfillment_orders/{{id}}/move)",
        shop.base_url(),
        shop_options.access_token,
        shop_options.webhook_secret
    );
    let woo_options = woocommerce::WoocommerceSimulatorOptions {
        webhook_url: options.woocommerce_webhook_url,
        ..Default::default()
    };
    let woo = woocommerce::start(
        woo_options.clone(),
        bind(&options.woocommerce_listen).await?,
    )
    .await?;
    println!(
        "WooCommerce  {}  (key {:?}, secret {:?}, webhook secret {:?}; orders: POST /_sandbox/orders)",
        woo.base_url(),
        woo_options.consumer_key,
        woo_options.consumer_secret,
        woo_options.webhook_secret
    );
    let bol_options = bolcom::BolcomSimulatorOptions::default();
    let bol = bolcom::start(bol_options.clone(), bind(&options.bolcom_listen).await?).await?;
    println!(
        "Bol.com      {}  (token URL {}, client {:?} / {:?}; offers: GET /_sandbox/offers, orders: POST /_sandbox/orders)",
        bol.base_url(),
        bol.token_url(),
        bol_options.client_id,
        bol_options.client_secret
    );
    let amazon_options = amazon::AmazonSimulatorOptions {
        notification_url: options.amazon_notification_url,
        ..Default::default()
    };
    let amazon = amazon::start(amazon_options.clone(), bind(&options.amazon_listen).await?).await?;
    println!(
        "Amazon       {}  (token URL {}, seller {:?}, marketplace {:?}; listings: GET /_sandbox/listings)",
        amazon.base_url(),
        amazon.token_url(),
        amazon_options.seller_id,
        amazon_options.marketplace_id
    );
    println!("Every simulator lists its inspection and control endpoints at GET /_sandbox.");
    stop.await;
    shop.shutdown().await;
    woo.shutdown().await;
    bol.shutdown().await;
    amazon.shutdown().await;
    Ok(())
}
