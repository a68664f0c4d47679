//! Forwarding movements to the instance that owns their SKU, over HTTP.
//!
//! Owns: [`HttpForwarder`] (the ledger's [`Forwarder`] with `[cluster]`), the wire types of
//! `POST /internal/v1/cluster/apply` ([`ApplyRequest`], [`ApplyResponse`]; the receiving
//! end is `crate::web`'s cluster route) and [`APPLY_PATH`].
//!
//! A forwarded movement is answered by the owner once durable there, with the owner's
//! `Result<Ack, LedgerError>` unchanged. A connection refused or a request past
//! [`FORWARD_TIMEOUT_SECS`] becomes [`LedgerError::NotOwner`] without an owner (the owner
//! may be gone or paused: the ledger waits for the partition to move and routes again; the
//! idempotency key makes a second delivery harmless); any other failure (a non-200 answer,
//! an unreadable body) is [`LedgerError::Unavailable`].
//!
//! May depend on: `ledger` (types), `domain`.

use crate::domain::Movement;
use crate::ledger::ownership::{ForwardFuture, Forwarder};
use crate::ledger::{Ack, LedgerError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The path forwarded movements are posted to on the owner.
pub const APPLY_PATH: &str = "/internal/v1/cluster/apply";

/// Most movements in one forwarded request.
pub const MAX_FORWARDED_MOVEMENTS: usize = 5_000;

/// How long one forwarded request may take, in seconds (a movement is answered once
/// durable, normally in milliseconds). Past it the owner is presumed paused or cut off and
/// the movement is routed again (its idempotency key makes a second delivery harmless).
pub const FORWARD_TIMEOUT_SECS: u64 = 10;

/// The body of a forwarded request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The movements, applied in this order.
    pub movements: Vec<Movement>,
}

/// The answer to a forwarded request: one result per movement, in request order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// What the owner's ledger answered for each movement.
    pub results: Vec<Result<Ack, LedgerError>>,
}

/// Forwards with one shared `reqwest` client and the cluster credential.
pub struct HttpForwarder {
    client: reqwest::Client,
    token: String,
}

impl HttpForwarder {
    /// A forwarder presenting `token` (`[cluster] token`) as a bearer token.
    pub fn new(client: reqwest::Client, token: String) -> Self {
        Self { client, token }
    }

    async fn send(
        client: reqwest::Client,
        token: String,
        owner: String,
        movement: Movement,
    ) -> Result<Ack, LedgerError> {
        let url = format!("{}{APPLY_PATH}", owner.trim_end_matches('/'));
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .timeout(Duration::from_secs(FORWARD_TIMEOUT_SECS))
            .json(&ApplyRequest {
                movements: vec![movement],
            })
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_connect() || error.is_timeout() => {
                // The owner is gone, paused or cut off: its partition will move. Routing
                // again is safe, the idempotency key makes a second delivery a duplicate.
                tracing::debug!(owner, error = %error, "forwarding failed; routing again");
                return Err(LedgerError::NotOwner {
                    partition: 0,
                    owner: None,
                });
            }
            Err(error) => {
                return Err(LedgerError::Unavailable(format!(
                    "forwarding to the owner at {owner} failed: {error}"
                )));
            }
        };
        let status = response.status();
        if !status.is_success() {
            return Err(LedgerError::Unavailable(format!(
                "the owner at {owner} answered {status} to a forwarded movement"
            )));
        }
        let answer: ApplyResponse = response.json().await.map_err(|error| {
            LedgerError::Unavailable(format!(
                "the owner at {owner} sent an unreadable answer: {error}"
            ))
        })?;
        answer.results.into_iter().next().unwrap_or_else(|| {
            Err(LedgerError::Unavailable(format!(
                "the owner at {owner} answered no result"
            )))
        })
    }
}

impl Forwarder for HttpForwarder {
    fn forward(&self, owner: String, movement: Movement) -> ForwardFuture {
        Box::pin(Self::send(
            self.client.clone(),
            self.token.clone(),
            owner,
            movement,
        ))
    }
}
