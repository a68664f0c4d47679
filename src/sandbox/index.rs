//! The `GET /_sandbox` index that every simulator serves: one JSON document listing each
//! inspection and control endpoint (method, path, what it does, an example body).
//!
//! Owns: [`SandboxRoutes`], the one table a simulator registers its `/_sandbox` routes in.
//! The router is built from that table, so the index cannot list a route that is not served
//! nor miss one that is.
//!
//! May depend on: axum and serde_json only.

use axum::Json;
use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, get, on};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The HTTP method of a sandbox endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SandboxMethod {
    /// `GET`: inspection.
    Get,
    /// `POST`: a control action.
    Post,
    /// `PUT`: a control action that replaces a value.
    Put,
}

impl SandboxMethod {
    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
        }
    }
}

/// One row of a simulator's `/_sandbox` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxEndpoint {
    /// HTTP method.
    pub method: SandboxMethod,
    /// Path as the router matches it (`{name}` marks a path parameter).
    pub path: &'static str,
    /// What the endpoint inspects or does.
    pub description: &'static str,
    /// A small example request body as JSON text; `None` when the endpoint takes no body.
    pub body: Option<&'static str>,
}

impl SandboxEndpoint {
    /// The endpoint as the index lists it; an example that is not JSON is listed as text.
    pub fn json(&self) -> Value {
        let body = self.body.map(|text| {
            serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        });
        json!({
            "method": self.method,
            "path": self.path,
            "description": self.description,
            "body": body,
        })
    }
}

/// The path of the index itself.
pub const INDEX_PATH: &str = "/_sandbox";

/// A simulator's `/_sandbox` routes and the index built from the same rows.
pub(crate) struct SandboxRoutes<S> {
    simulator: &'static str,
    endpoints: Vec<SandboxEndpoint>,
    router: Router<S>,
}

impl<S: Clone + Send + Sync + 'static> SandboxRoutes<S> {
    /// An empty table for `simulator` (`shopify`, `woocommerce`, `bolcom`, `amazon`).
    pub fn new(simulator: &'static str) -> Self {
        Self {
            simulator,
            endpoints: vec![SandboxEndpoint {
                method: SandboxMethod::Get,
                path: INDEX_PATH,
                description: "this index",
                body: None,
            }],
            router: Router::new(),
        }
    }

    /// Registers one endpoint: routes `handler` and lists the row in the index.
    pub fn add<H, T>(
        mut self,
        method: SandboxMethod,
        path: &'static str,
        description: &'static str,
        body: Option<&'static str>,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, on(method.filter(), handler));
        self.endpoints.push(SandboxEndpoint {
            method,
            path,
            description,
            body,
        });
        self
    }

    /// The rows registered so far (the index lists them in this order).
    #[cfg(test)]
    pub fn endpoints(&self) -> &[SandboxEndpoint] {
        &self.endpoints
    }

    /// The index document: `{"simulator", "endpoints": [{method, path, description, body}]}`.
    pub fn index(&self) -> Value {
        json!({
            "simulator": self.simulator,
            "endpoints": self.endpoints.iter().map(SandboxEndpoint::json).collect::<Vec<_>>(),
        })
    }

    /// The router of every registered endpoint plus `GET /_sandbox` serving the index.
    ///
    /// Panics in debug builds (tests) when [`check_table`] finds a problem in the table.
    pub fn into_router(self) -> Router<S> {
        #[cfg(debug_assertions)]
        if let Err(problem) = check_table(&self.endpoints) {
            panic!("{} simulator's sandbox table: {problem}", self.simulator);
        }
        let index = Arc::new(self.index());
        self.router.route(
            INDEX_PATH,
            get(move || {
                let index = Arc::clone(&index);
                async move { Json((*index).clone()) }
            }),
        )
    }
}

/// Checks a table: unique (method, path) rows, every path under `/_sandbox`, every example
/// body valid JSON. Returns the first problem found. Each simulator's tests call it.
pub fn check_table(endpoints: &[SandboxEndpoint]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for endpoint in endpoints {
        if !endpoint.path.starts_with(INDEX_PATH) {
            return Err(format!("{} is not under {INDEX_PATH}", endpoint.path));
        }
        if !seen.insert((endpoint.method, endpoint.path)) {
            return Err(format!(
                "{:?} {} is listed twice",
                endpoint.method, endpoint.path
            ));
        }
        if let Some(body) = endpoint.body
            && let Err(error) = serde_json::from_str::<Value>(body)
        {
            return Err(format!(
                "{:?} {}: example body is not JSON: {error}",
                endpoint.method, endpoint.path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok() -> &'static str {
        "ok"
    }

    #[test]
    fn a_table_with_a_bad_example_or_a_duplicate_is_refused() {
        let routes: SandboxRoutes<()> = SandboxRoutes::new("test")
            .add(SandboxMethod::Get, "/_sandbox/a", "a", None, ok)
            .add(
                SandboxMethod::Post,
                "/_sandbox/a",
                "a",
                Some(r#"{"x":1}"#),
                ok,
            );
        assert_eq!(check_table(routes.endpoints()), Ok(()));
        let index = routes.index();
        assert_eq!(index["endpoints"][0]["path"], json!("/_sandbox"));
        assert_eq!(index["endpoints"][2]["method"], json!("POST"));
        assert_eq!(index["endpoints"][2]["body"], json!({"x": 1}));
        let bad = [SandboxEndpoint {
            method: SandboxMethod::Post,
            path: "/_sandbox/b",
            description: "b",
            body: Some("{not json"),
        }];
        assert!(check_table(&bad).unwrap_err().contains("not JSON"));
        let twice = [bad[0].clone(), bad[0].clone()];
        let twice: Vec<_> = twice
            .into_iter()
            .map(|mut row| {
                row.body = None;
                row
            })
            .collect();
        assert!(check_table(&twice).unwrap_err().contains("twice"));
        let outside = [SandboxEndpoint {
            path: "/admin/x",
            ..twice[0].clone()
        }];
        assert!(check_table(&outside).is_err());
    }
}
