//! The HTTP server's limits: the accept loop with its connection limit and header-read
//! timeout, and the tower layers that bound each request (timeout, concurrency, load
//! shedding, body size).
//!
//! Owns: [`serve_with`] (hyper's HTTP/1.1 connection builder driven by our own accept loop,
//! because `axum::serve` exposes neither a header-read timeout nor a connection limit),
//! [`request_limits`] and the problem answers of a shed or timed-out request.
//!
//! - A connection beyond `http.max_connections` is accepted and closed at once (so the
//!   kernel's backlog never fills with connections nobody serves, and file descriptors stay
//!   for the store, Kafka and `/healthz`).
//! - A connection must send each request's whole header within
//!   `http.header_read_timeout_ms` (hyper's `header_read_timeout`, whose timer also runs
//!   while a keep-alive connection waits for its next request), or it is closed.
//! - A request is answered within `http.request_timeout_ms` (503 `request-timeout`), at
//!   most `http.max_concurrent_requests` run at once, and one beyond that is shed at once
//!   (503 `overloaded`); both answers carry `Retry-After: http.retry_after_secs`.
//! - A body announced (`Content-Length`) or streamed beyond `http.body_limit_bytes` is
//!   refused with a 413 problem on every route.
//!
//! May depend on: `config` (the `[http]` section), the sibling [`super::problem`].

use super::problem::{PROBLEM_CONTENT_TYPE, Problem};
use crate::config::HttpConfig;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;

/// How long the accept loop pauses after an accept error that is not about one connection
/// (for instance out of file descriptors), in milliseconds.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// Stages of a shutdown, as the connections see them.
const SERVING: u8 = 0;
/// Finish the request in flight, then close.
const GRACEFUL: u8 = 1;
/// Close now (the drain time is over).
const FORCE: u8 = 2;

/// File descriptors kept for everything but HTTP connections (the store, Kafka, platform
/// clients, logs) when the connection limit is fitted to the process's descriptor limit.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The connection limit that fits a process allowed `descriptor_limit` open files:
/// `max_connections`, or fewer so that [`RESERVED_DESCRIPTORS`] stay free (at least 1).
pub fn fitted_connection_limit(max_connections: usize, descriptor_limit: u64) -> usize {
    let room = descriptor_limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    max_connections
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises the soft open-files limit towards what `max_connections` needs (up to the hard
/// limit) and returns the connection limit that fits the result (see
/// [`fitted_connection_limit`]); logs when the limit had to be lowered.
fn connection_limit(max_connections: usize) -> usize {
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } != 0 {
        return max_connections.max(1);
    }
    let wanted = (max_connections as u64).saturating_add(RESERVED_DESCRIPTORS);
    if limits.rlim_cur < wanted && limits.rlim_cur < limits.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limits.rlim_max),
            rlim_max: limits.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limits.rlim_cur = raised.rlim_cur;
        }
    }
    let fitted = fitted_connection_limit(max_connections, limits.rlim_cur);
    if fitted < max_connections {
        tracing::warn!(
            max_connections,
            fitted,
            open_files_limit = limits.rlim_cur,
            "http.max_connections lowered to fit the open-files limit"
        );
    }
    fitted
}

/// Wraps every route of `router` in the per-request limits of `http`: the request timeout,
/// the concurrency limit with load shedding (503 problems with `Retry-After`). Routes added
/// to the router afterwards (`/healthz`, `/readyz`, `/metrics`) are not limited.
pub fn request_limits<S>(router: Router<S>, http: &HttpConfig) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let retry_after_secs = http.retry_after_secs;
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: tower::BoxError| {
                std::future::ready(limit_answer(&error, retry_after_secs))
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(
                http.max_concurrent_requests.max(1),
            ))
            .layer(TimeoutLayer::new(Duration::from_millis(
                http.request_timeout_ms.max(1),
            ))),
    )
}

/// The answer to a request the limits refused: shed (`overloaded`) or too slow
/// (`request-timeout`), both 503 with `Retry-After`.
fn limit_answer(error: &tower::BoxError, retry_after_secs: u64) -> Response {
    let problem = if error.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!(crate::telemetry::HTTP_REQUESTS_SHED_TOTAL, "reason" => "overloaded")
            .increment(1);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests at once",
            "the server is handling as many requests as it is configured to; retry later",
        )
    } else if error.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!(crate::telemetry::HTTP_REQUESTS_SHED_TOTAL, "reason" => "timeout")
            .increment(1);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-timeout",
            "The request took too long",
            "the request was not answered within http.request_timeout_ms; what it did may \
             or may not have taken effect, retry it (movements are idempotent)",
        )
    } else {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            error.to_string(),
        )
    };
    let mut response = problem.into_response();
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

/// Turns the plain-text 413 of `tower_http`'s body limit (a `Content-Length` over the limit)
/// into a problem; every other answer passes unchanged.
pub(super) async fn body_limit_problem(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(PROBLEM_CONTENT_TYPE.as_bytes())
        });
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_problem {
        return response;
    }
    super::WebError::Body {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: "the request body is larger than http.body_limit_bytes".to_owned(),
    }
    .into_response()
}

/// Serves `router` on `listener` with the connection limits of `http` (the connection limit
/// lowered, with a warning, if the process may not open that many files and keep
/// [`RESERVED_DESCRIPTORS`] free) until `shutdown`
/// completes, then stops accepting, lets every open connection finish its request in
/// flight (graceful shutdown) and returns once all are closed, or after
/// `http.request_timeout_ms` closes those still open (streams that never end by
/// themselves, such as the dashboard's server-sent events). HTTP/1.1 with keep-alive;
/// connections have `TCP_NODELAY` set.
///
/// Errors: none today (accept errors are logged and retried); the type leaves room for a
/// fatal listener error.
pub async fn serve_with<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    http: HttpConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let header_read_timeout = Duration::from_millis(http.header_read_timeout_ms.max(1));
    let slots = Arc::new(tokio::sync::Semaphore::new(connection_limit(
        http.max_connections,
    )));
    // `stop` tells the connections to finish (then to close); every connection holds a
    // `done` receiver,
    // so `done_tx.closed()` resolves once the last one ended.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(SERVING);
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(error = %error, "accept failed");
                    if !is_connection_error(&error) {
                        tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(crate::telemetry::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
            drop(stream);
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => Some(result),
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    // Until done, or until the drain time is over (or the server is gone).
                    let forced = async {
                        while *stop.borrow_and_update() < FORCE {
                            if stop.changed().await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        result = connection.as_mut() => Some(result),
                        () = forced => None,
                    }
                }
            };
            if let Some(Err(error)) = result {
                tracing::debug!(error = %error, "connection ended with an error");
            }
            drop((slot, done));
        });
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(GRACEFUL);
    // A request in flight is answered within the request timeout; what is still open after
    // it is a body that does not end by itself (a server-sent event stream).
    let drain = Duration::from_millis(http.request_timeout_ms.max(1));
    if tokio::time::timeout(drain, done_tx.closed()).await.is_err() {
        tracing::info!("closing the connections still open after the drain time");
        let _ = stop_tx.send(FORCE);
        done_tx.closed().await;
    }
    Ok(())
}

/// Errors of one connection (the loop goes on at once) as opposed to the listener's.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_rest_of_the_process() {
        assert_eq!(fitted_connection_limit(1024, 65_536), 1024);
        assert_eq!(fitted_connection_limit(1024, 1024), 1024 - 256);
        assert_eq!(fitted_connection_limit(1024, 100), 1);
        assert_eq!(fitted_connection_limit(0, 65_536), 1);
    }
}
