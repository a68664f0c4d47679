//! The OpenAPI 3.1 contract of the HTTP API, generated from the code.
//!
//! Owns: [`document`] (the contract as JSON, served at `GET /api/v1/openapi.json` and
//! checked in as `docs/openapi.json`) and the `bearerAuth` security scheme. Each handler carries its
//! own `#[utoipa::path]` attribute next to its code; this module only gathers them, with
//! the webhook receivers' operations from [`crate::ingest::webhooks_openapi`] (their bodies
//! are the platforms' own, loosely typed). The shared problem answers are
//! [`crate::problem::openapi`]'s.
//!
//! The `Movement` schema is `schemas/movement.schema.json` itself (JSON Schema 2020-12, the
//! dialect of OpenAPI 3.1), embedded at build time with its `$defs` lifted into
//! `components/schemas` as `Movement_<name>` and its per-type `if`/`then` branches stated
//! as an equivalent `oneOf`: one source of truth for REST and Kafka.
//!
//! Regenerate the checked-in copy with `cargo run -- openapi > docs/openapi.json`; the test
//! `the_checked_in_contract_is_the_generated_one` fails while they differ.
//!
//! May depend on: the `web` handlers' types, `ledger` reservation types, `problem`,
//! `ingest` (the webhook operations).

use super::WebState;
pub use crate::problem::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    UnprocessableEntity, UnsupportedMediaType, WebhookUnauthorized,
};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::sync::OnceLock;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The JSON Schema of one movement (the Kafka and REST contract).
const MOVEMENT_SCHEMA: &str = include_str!("../../schemas/movement.schema.json");

/// The scopes a bearer token may carry, as the operations name them.
pub const SCOPES: [&str; 4] = ["ingest", "reserve", "operate", "read"];

/// The contract, built once: the generated document with the movement schema embedded.
pub fn document() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The contract as pretty-printed JSON with a final newline (the form of
/// `docs/openapi.json`).
pub fn document_pretty() -> String {
    let mut text = serde_json::to_string_pretty(document()).unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /api/v1/openapi.json`: this contract.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "get_openapi",
    security(()),
    responses(
        (status = 200, description = "This OpenAPI 3.1 document.", body = Object),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn get_openapi(State(_state): State<WebState>) -> Response {
    Json(document()).into_response()
}

fn build() -> serde_json::Value {
    let mut api = ApiDoc::openapi();
    api.merge(crate::ingest::webhooks_openapi());
    let mut json = serde_json::to_value(api).unwrap_or_default();
    embed_movement_schema(&mut json);
    json
}

/// Lifts the movement schema's `$defs` into `components/schemas` as `Movement_<name>` and
/// adds the schema itself as `Movement`, rewriting its `#/$defs/<name>` references.
fn embed_movement_schema(document: &mut serde_json::Value) {
    let mut schema: serde_json::Value =
        serde_json::from_str(MOVEMENT_SCHEMA).expect("schemas/movement.schema.json is JSON");
    rewrite_refs(&mut schema);
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    object.remove("$schema");
    object.remove("$id");
    branches_as_one_of(object);
    let defs = object.remove("$defs");
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    if let Some(serde_json::Value::Object(defs)) = defs {
        for (name, def) in defs {
            schemas.insert(format!("Movement_{name}"), def);
        }
    }
    schemas.insert("Movement".to_owned(), schema);
    schemas.sort_keys();
}

/// Restates the schema's `allOf` of `if {type} then {…}` branches as a `oneOf` of
/// `{type} and {…}` variants. The two say the same (the `if`s name disjoint values of
/// `type`, which must be one of them), but generators such as schemathesis can only build
/// examples from the second.
fn branches_as_one_of(schema: &mut serde_json::Map<String, serde_json::Value>) {
    let Some(serde_json::Value::Array(branches)) = schema.get("allOf") else {
        return;
    };
    let mut variants = Vec::with_capacity(branches.len());
    for branch in branches {
        let (Some(condition), Some(then)) = (branch.get("if"), branch.get("then")) else {
            return;
        };
        variants.push(serde_json::json!({
            "properties": condition["properties"],
            "required": condition["required"],
            "allOf": [then],
        }));
    }
    schema.remove("allOf");
    schema.insert("oneOf".to_owned(), serde_json::Value::Array(variants));
}

fn rewrite_refs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match (key.as_str(), &inner) {
                    ("$ref", serde_json::Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            *inner = serde_json::Value::String(format!(
                                "#/components/schemas/Movement_{name}"
                            ));
                        }
                    }
                    _ => rewrite_refs(inner),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The gathered contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stocksync",
        description = "One stock ledger, every channel in sync. Errors are RFC 9457 problems \
                       (`application/problem+json`). Mutations need a bearer token with the \
                       scope each operation names (`ingest`, `reserve`, `operate`, `read`); \
                       `/healthz`, `/readyz` and this document are open, `/metrics` too unless \
                       a metrics token is configured; webhooks are authenticated by their \
                       platform's signature, and a platform's unsigned bridge (see the README) \
                       by an `ingest` token.",
    ),
    paths(
        super::movements::post_movements,
        super::history::get_movements,
        super::history::get_pushes,
        super::history::get_config_audit,
        super::stock::get_stock,
        super::reservations::post_reservation,
        super::reservations::get_reservation,
        super::reservations::post_commit,
        super::reservations::post_release,
        super::rules::get_rules,
        super::rules::put_rules,
        super::dead_letters::get_dead_letters,
        super::channel_mode::get_shadow_report,
        super::channel_mode::put_mode,
        super::dashboard::get_skus,
        super::dashboard::get_sku_events,
        super::dashboard::get_live,
        super::health::get_channels,
        super::health::get_ready,
        super::get_health,
        super::get_metrics,
        get_openapi,
    ),
    components(
        schemas(
            MovementsBody,
            HealthDoc,
            super::rules::RulesDocument,
            crate::problem::Problem
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            UnprocessableEntity,
            ServiceUnavailable,
            WebhookUnauthorized,
        )
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "movements", description = "Stock movements in, and their history."),
        (name = "stock", description = "Stock levels and per-channel ATP."),
        (name = "reservations", description = "All-or-nothing multi-SKU holds."),
        (name = "rules", description = "The stock rules in force."),
        (name = "audit", description = "Pushes, configuration changes, dead letters."),
        (name = "dashboard", description = "What the dashboard reads."),
        (name = "operations", description = "Health, readiness, metrics."),
        (name = "webhooks", description = "Platform webhooks (signed by the platform)."),
        (name = "meta", description = "This contract."),
    )
)]
struct ApiDoc;

/// Adds the `bearerAuth` scheme (HTTP bearer). Scopes are listed per operation in its
/// `security` requirement.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made by `stocksync token new NAME --scopes …`; each operation \
                         lists the scope it needs (ingest, reserve, operate, read).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of `POST /api/v1/movements`: one `Movement` or an array of them.
pub struct MovementsBody;

impl utoipa::PartialSchema for MovementsBody {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "One movement, or an array of 1 to 10,000 movements applied in array order.",
            ))
            .item(Ref::from_schema_name("Movement"))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("Movement"))
                    .min_items(Some(1))
                    .max_items(Some(super::movements::MAX_BATCH_MOVEMENTS)),
            )
            .into()
    }
}

impl utoipa::ToSchema for MovementsBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("MovementsRequest")
    }
}

/// The `/healthz` body.
#[derive(utoipa::ToSchema)]
#[schema(as = Health)]
#[allow(dead_code)] // documentation only: the handler answers with `json!`
pub(super) struct HealthDoc {
    /// `ok`, or `paused` while the store refuses writes.
    #[schema(pattern = "^(ok|paused)$")]
    status: String,
    /// Why ingest is paused (only with `paused`).
    reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the router serves under `/api/v1`, plus the open operational routes and
    /// the webhooks, with its methods.
    const ROUTES: &[(&str, &[&str])] = &[
        ("/api/v1/movements", &["get", "post"]),
        ("/api/v1/config/rules", &["get", "put"]),
        ("/api/v1/stock/{sku}", &["get"]),
        ("/api/v1/reservations", &["post"]),
        ("/api/v1/reservations/{id}", &["get"]),
        ("/api/v1/reservations/{id}/commit", &["post"]),
        ("/api/v1/reservations/{id}/release", &["post"]),
        ("/api/v1/pushes", &["get"]),
        ("/api/v1/audit/config", &["get"]),
        ("/api/v1/dead-letters", &["get"]),
        ("/api/v1/skus", &["get"]),
        ("/api/v1/stock/{sku}/events", &["get"]),
        ("/api/v1/events", &["get"]),
        ("/api/v1/channels", &["get"]),
        ("/api/v1/channels/{channel}/shadow-report", &["get"]),
        ("/api/v1/channels/{channel}/mode", &["put"]),
        ("/api/v1/openapi.json", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/webhooks/shopify/{channel_id}", &["post"]),
        ("/webhooks/woocommerce/{channel_id}", &["post"]),
        ("/webhooks/amazon/{channel_id}", &["post"]),
    ];

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        for (path, methods) in ROUTES {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            for method in *methods {
                assert!(item.get(*method).is_some(), "{method} {path} is missing");
            }
        }
        assert_eq!(paths.len(), ROUTES.len(), "{:?}", paths.keys());
    }

    #[test]
    fn every_operation_names_its_scope_and_answers() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let security = operation["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} has no security"));
                let responses = operation["responses"].as_object().unwrap();
                // `/healthz` and `/metrics` are outside the request limits (never shed) and
                // always answer; every other operation can be shed or time out.
                let never_503 = matches!(path.as_str(), "/healthz" | "/metrics");
                assert_eq!(
                    responses.contains_key("503"),
                    !never_503,
                    "{method} {path}: 503 documented?"
                );
                let scopes: Vec<&str> = security
                    .iter()
                    .filter_map(|requirement| requirement["bearerAuth"].as_array())
                    .flatten()
                    .filter_map(serde_json::Value::as_str)
                    .collect();
                let open = path.starts_with("/webhooks/")
                    || !path.starts_with("/api/v1/")
                    || path == "/api/v1/openapi.json";
                if open {
                    assert!(scopes.is_empty(), "{method} {path} should be open");
                } else {
                    assert!(!scopes.is_empty(), "{method} {path} names no scope");
                    assert!(scopes.iter().all(|scope| SCOPES.contains(scope)));
                    for status in ["401", "403"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
            }
        }
        let scheme = &document["components"]["securitySchemes"]["bearerAuth"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
    }

    #[test]
    fn the_movement_schema_is_the_checked_in_json_schema() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let source: serde_json::Value = serde_json::from_str(MOVEMENT_SCHEMA).unwrap();
        assert_eq!(schemas["Movement"]["required"], source["required"]);
        assert_eq!(
            schemas["Movement"]["properties"]["type"],
            source["properties"]["type"]
        );
        // Each `if type then …` branch is one `oneOf` variant, with the same condition.
        let branches = source["allOf"].as_array().unwrap();
        let variants = schemas["Movement"]["oneOf"].as_array().unwrap();
        assert_eq!(branches.len(), variants.len());
        for (branch, variant) in branches.iter().zip(variants) {
            assert_eq!(variant["properties"], branch["if"]["properties"]);
            assert_eq!(variant["allOf"][0]["required"], branch["then"]["required"]);
        }
        // Every reference resolves inside the document.
        let text = serde_json::to_string(document).unwrap();
        assert!(!text.contains("#/$defs/"));
        for (start, _) in text.match_indices("\"$ref\":\"#/") {
            let rest = &text[start + 8..];
            let target = &rest[..rest.find('"').unwrap()];
            assert!(
                document.pointer(&target[1..]).is_some(),
                "dangling reference {target}"
            );
        }
    }

    /// `docs/openapi.json` is what the code generates; regenerate it with
    /// `cargo run -- openapi > docs/openapi.json`.
    #[test]
    fn the_checked_in_contract_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document_pretty(),
            "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
        );
    }
}
