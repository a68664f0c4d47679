//! Platform API clients: one folder per sales platform, used by both sides of the flow
//! (the channel adapters that push stock and the ingest pollers that read orders).
//!
//! Owns, per platform (`shopify/`, `woocommerce/`, `bolcom/`, `amazon/`): the API client
//! (base URL, authentication with one token cache per credential, rate-limit headers,
//! status → error classification), the platform's payload types, and its config section.
//! What all four do alike lives in [`http`].
//!
//! May depend on: nothing else in the crate (config sections are leaves; the clients use
//! only [`http`]). `config`, `channels`, `ingest` and `app` depend on this module.

pub mod amazon;
pub mod bolcom;
pub mod http;
pub mod shopify;
pub mod woocommerce;

pub use http::{
    CostBudget, ErrorDomain, HttpAnswer, HttpClient, PlatformError, RetryHint, ThrottleSignal,
    TokenCache,
};
