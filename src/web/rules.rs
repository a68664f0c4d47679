//! `GET` / `PUT /api/v1/config/rules`: the stock rules changed at runtime.
//!
//! The changeable sections are each channel's ATP rule (safety stock, maximum listed
//! quantity, show-zero threshold, allocation, pre-order window), the per-SKU overrides
//! (`sku_rules`), routing and backorders (`stock`) and the bills of materials (`bundles`).
//! A `PUT` replaces those sections (channels are matched by id; channels not named keep
//! their rule), validates the whole resulting config and reports every problem at once
//! (422 problem, nothing changed). On success the new rules take effect at once for the
//! ledger, propagation and this API, the change is recorded in the config audit log with
//! the caller (the name of the token that made it, `local` without tokens; never a header), and every known SKU's ATP is recomputed and
//! propagated in the background.
//!
//! May depend on: config, domain, ledger, store.

use super::WebState;
use super::problem::{FieldError, Problem};
use crate::config::{BundleConfig, Config, PreorderConfig, SkuRuleConfig, StockConfig};
use crate::domain::{Allocation, AvailabilitySink, RulesCell};
use crate::ledger::Ledger;
use crate::store::{ConfigAuditRecord, Store};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};

/// SKUs read (and replayed) per page when every ATP is recomputed after a change.
pub const REPUBLISH_PAGE: usize = 512;

/// One channel's changeable ATP rule.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRuleDocument {
    /// The channel id (must exist).
    pub id: String,
    /// Units held back from the channel.
    #[serde(default)]
    pub safety_stock: u64,
    /// The most the channel may list.
    #[serde(default)]
    pub max_listed_quantity: Option<u64>,
    /// Below this ATP the channel shows 0.
    #[serde(default)]
    pub show_zero_below: u64,
    /// The channel's share of the pool.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub allocation: Allocation,
    /// Pre-orders on inbound stock.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub preorder: Option<PreorderConfig>,
}

/// The changeable stock rules, as `GET` returns them and `PUT` takes them.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesDocument {
    /// Channel rules; on `PUT`, channels not listed keep theirs.
    #[serde(default)]
    pub channels: Vec<ChannelRuleDocument>,
    /// Per-SKU safety-stock overrides (replaced as a whole).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub sku_rules: Vec<SkuRuleConfig>,
    /// Routing and backorders (replaced as a whole).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub stock: StockConfig,
    /// Bills of materials (replaced as a whole).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub bundles: Vec<BundleConfig>,
}

impl RulesDocument {
    fn of(config: &Config) -> Self {
        Self {
            channels: config
                .channels
                .iter()
                .map(|channel| ChannelRuleDocument {
                    id: channel.id.clone(),
                    safety_stock: channel.safety_stock,
                    max_listed_quantity: channel.max_listed_quantity,
                    show_zero_below: channel.show_zero_below,
                    allocation: channel.allocation,
                    preorder: channel.preorder.clone(),
                })
                .collect(),
            sku_rules: config.sku_rules.clone(),
            stock: config.stock.clone(),
            bundles: config.bundles.clone(),
        }
    }

    /// `config` with these rules applied; errors name unknown channels.
    fn apply_to(&self, config: &Config) -> Result<Config, Vec<String>> {
        let mut next = config.clone();
        let mut problems = Vec::new();
        for rule in &self.channels {
            match next
                .channels
                .iter_mut()
                .find(|channel| channel.id == rule.id)
            {
                Some(channel) => {
                    channel.safety_stock = rule.safety_stock;
                    channel.max_listed_quantity = rule.max_listed_quantity;
                    channel.show_zero_below = rule.show_zero_below;
                    channel.allocation = rule.allocation;
                    channel.preorder = rule.preorder.clone();
                }
                None => problems.push(format!("channel {} does not exist", rule.id)),
            }
        }
        next.sku_rules = self.sku_rules.clone();
        next.stock = self.stock.clone();
        next.bundles = self.bundles.clone();
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    }
}

/// The rules that can change at runtime, shared by the ledger and propagation through the
/// [`RulesCell`].
pub struct RuntimeRules {
    config: Mutex<Config>,
    /// Held by [`RuntimeRules::change`] from reading the rules in force to putting the new
    /// ones in force (across the audit write), so two concurrent changes apply one after
    /// the other and neither is lost.
    changing: tokio::sync::Mutex<()>,
    cell: Arc<RulesCell>,
    ledger: Ledger,
    sink: Arc<dyn AvailabilitySink>,
    store: Arc<dyn Store>,
}

impl RuntimeRules {
    /// Over the config in force, the cell the ledger and propagation read, and the sink
    /// (propagation) that receives recomputed availability after a change.
    pub fn new(
        config: Config,
        cell: Arc<RulesCell>,
        ledger: Ledger,
        sink: Arc<dyn AvailabilitySink>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            config: Mutex::new(config),
            changing: tokio::sync::Mutex::new(()),
            cell,
            ledger,
            sink,
            store,
        }
    }

    /// The rules in force, as a document.
    pub fn document(&self) -> RulesDocument {
        RulesDocument::of(&self.config.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The allocation policy in force (for the stock view).
    pub fn allocation(&self) -> crate::domain::AllocationPolicy {
        self.cell.get().allocation.clone()
    }

    /// The stock rules in force (the stock view derives bundles with their BOM).
    pub fn rules(&self) -> Arc<crate::domain::Rules> {
        self.cell.get()
    }

    /// Applies `document`; on success the rules are in force and recorded, and every known
    /// SKU is re-published in the background. Concurrent changes are serialised: each is
    /// applied to the rules the previous one left. Errors: every problem found (nothing
    /// changed).
    pub async fn change(
        &self,
        document: RulesDocument,
        actor: &str,
    ) -> Result<RulesDocument, Vec<String>> {
        let _changing = self.changing.lock().await;
        let next = {
            let current = self.config.lock().unwrap_or_else(|p| p.into_inner());
            let next = document.apply_to(&current)?;
            next.validate().map_err(|error| match error {
                crate::config::ConfigError::Invalid(problems) => problems,
                other => vec![other.to_string()],
            })?;
            next
        };
        let rules = next.rules().map_err(|error| vec![error.to_string()])?;
        let applied = RulesDocument::of(&next);
        let json = serde_json::to_string(&applied).expect("rules documents serialise");
        let hash = super::auth::sha256_hex(&json);
        self.store
            .record_config_change(&ConfigAuditRecord {
                at_ms: self.ledger.clock().now_ms(),
                action: "rules_changed".to_owned(),
                actor: actor.to_owned(),
                config_hash: hash,
                config_json: json,
            })
            .await
            .map_err(|error| {
                vec![format!(
                    "the change could not be recorded in the audit log: {error}"
                )]
            })?;
        self.cell.set(rules);
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = next;
        tracing::info!(actor, "stock rules changed at runtime");
        let (ledger, sink) = (self.ledger.clone(), self.sink.clone());
        tokio::spawn(async move { republish(ledger, sink).await });
        Ok(applied)
    }
}

/// Recomputes every known SKU's availability (and so its ATP on every channel), walking
/// the store in pages of [`REPUBLISH_PAGE`] SKUs: each page is replayed from the store
/// ([`Ledger::stored_states`], no SKU is brought into the ledger's memory) and published
/// before the next is read, so memory stays bounded by one page whatever the SKU count.
/// Movements not yet durable are published by their own commit. A commit that lands
/// between a page's read and its publish can be overtaken by the page's older figure until
/// the SKU's next movement (the window is one store read and one replay of the page; the
/// walk over live actors it replaces had a window of a whole page of sequential reads).
pub async fn republish(ledger: Ledger, sink: Arc<dyn AvailabilitySink>) {
    let mut after: Option<String> = None;
    let mut published = 0_u64;
    loop {
        let skus = match ledger.list_skus(after.as_deref(), REPUBLISH_PAGE).await {
            Ok(skus) => skus,
            Err(error) => {
                tracing::warn!(error = %error, published, "re-publishing after a rules change stopped");
                return;
            }
        };
        let Some(last) = skus.last().cloned() else {
            tracing::debug!(published, "re-published every SKU after a rules change");
            return;
        };
        match ledger.stored_states(&skus).await {
            Ok(states) => {
                let changes: Vec<_> = states.iter().map(|state| state.availability()).collect();
                sink.publish(&changes);
                published += changes.len() as u64;
            }
            Err(error) => {
                tracing::warn!(error = %error, first = %skus[0], "a page of SKUs could not be re-published");
            }
        }
        after = Some(last);
        // Let ingest and propagation run between pages.
        tokio::task::yield_now().await;
    }
}

/// `GET /api/v1/config/rules`.
#[utoipa::path(
    get,
    path = "/api/v1/config/rules",
    tag = "rules",
    security(("bearerAuth" = ["read"])),
    responses(
        (status = 200, description = "The stock rules in force.", body = RulesDocument),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn get_rules(State(state): State<WebState>) -> Response {
    match &state.rules {
        Some(rules) => Json(rules.document()).into_response(),
        None => Json(RulesDocument::of(&state.config)).into_response(),
    }
}

/// `PUT /api/v1/config/rules`.
#[utoipa::path(
    put,
    path = "/api/v1/config/rules",
    tag = "rules",
    security(("bearerAuth" = ["operate"])),
    request_body(content = RulesDocument, content_type = "application/json"),
    responses(
        (status = 200, description = "The rules now in force.", body = RulesDocument),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::UnprocessableEntity),
        (status = 503, response = super::openapi::ServiceUnavailable),
    )
)]
pub(super) async fn put_rules(
    State(state): State<WebState>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    document: Result<Json<RulesDocument>, JsonRejection>,
) -> Response {
    let Json(document) = match document {
        Ok(document) => document,
        Err(rejection) => return rejected_rules(rejection),
    };
    let Some(rules) = &state.rules else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rules-not-changeable",
            "Rules cannot be changed",
            "this server was started without runtime rules",
        )
        .into_response();
    };
    let actor = super::auth::actor_name(caller);
    match rules.change(document, &actor).await {
        Ok(applied) => Json(applied).into_response(),
        Err(problems) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rules",
            "The rules are not valid",
            format!("{} problem(s); nothing was changed", problems.len()),
        )
        .with_errors(
            problems
                .into_iter()
                .map(|p| FieldError::new("#", p))
                .collect(),
        )
        .into_response(),
    }
}

/// A `PUT` body the JSON extractor refused, as a problem: 415 (not JSON), 400 (not valid
/// JSON), 413/400 (unreadable), 422 (JSON, but not a rules document).
fn rejected_rules(rejection: JsonRejection) -> Response {
    let error = match rejection {
        JsonRejection::MissingJsonContentType(_) => super::WebError::UnsupportedMediaType {
            content_type: String::new(),
        },
        JsonRejection::JsonSyntaxError(rejection) => super::WebError::MalformedJson {
            message: rejection.body_text(),
        },
        JsonRejection::BytesRejection(rejection) => super::body_error(rejection),
        JsonRejection::JsonDataError(rejection) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-rules",
                "The rules are not valid",
                "the body is not a rules document; nothing was changed",
            )
            .with_errors(vec![FieldError::new("#", rejection.body_text())])
            .into_response();
        }
        other => super::WebError::MalformedJson {
            message: other.body_text(),
        },
    };
    error.into_response()
}
