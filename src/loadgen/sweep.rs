//! Rate sweeps over one target, their table, JSON file and plot.
//!
//! Each rate runs for the same number of seconds against the same target (one in-process
//! App or ledger for the whole sweep), with its own workload (a run id per rate, so no
//! idempotency key repeats).

use super::LoadgenError;
use super::in_flight::{self, InFlightOptions};
use super::open_loop::{self, OpenLoopOptions, RunReport, Target};
use super::plot::{Series, line_chart};
use super::push::{MAX_PUSH_SKUS, PushRecorder, PushReport, channel_toml, start_simulator};
use super::targets::{RestTarget, app_config, hashmap_baseline, prefill, start_ledger};
use super::workload::{Workload, WorkloadOptions};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Movements of the same-run HashMap baseline.
const BASELINE_MOVEMENTS: usize = 1_000_000;

/// A sweep's results with its same-run baselines.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// `rest` or `in-process`.
    pub target: String,
    /// Where the REST target was (`in-process` when started here).
    pub url: String,
    /// Workload shape.
    pub skus: usize,
    /// Zipf exponent.
    pub zipf_exponent: f64,
    /// Every movement named a new SKU.
    pub new_skus_only: bool,
    /// Events in the store before the first rate (`--prefill-events`).
    pub prefilled_events: u64,
    /// Prefill speed, events/s (0 without prefill).
    pub prefill_per_sec: f64,
    /// Same-run baseline: plain HashMap apply of the same workload, movements/s
    /// (in-process target only).
    pub hashmap_baseline_per_sec: Option<f64>,
    /// One report per rate, in the order given.
    pub runs: Vec<RunReport>,
}

fn workload_for(options: &WorkloadOptions, rate_index: usize) -> Result<Workload, LoadgenError> {
    Ok(Workload::new(WorkloadOptions {
        run_id: format!("{}r{rate_index}", options.run_id),
        seed: options.seed.wrapping_add(rate_index as u64),
        ..options.clone()
    })?)
}

async fn sweep(
    name: &str,
    target: Arc<dyn Target>,
    workload: &WorkloadOptions,
    rates: &[u64],
    template: OpenLoopOptions,
) -> Result<Vec<RunReport>, LoadgenError> {
    let mut runs = Vec::new();
    for (index, &rate) in rates.iter().enumerate() {
        let options = OpenLoopOptions {
            rate_per_sec: rate,
            ..template
        };
        let report = open_loop::run(
            name,
            target.clone(),
            workload_for(workload, index)?,
            options,
        )
        .await;
        eprintln!("{}", table_row(&report));
        runs.push(report);
    }
    Ok(runs)
}

/// Sweeps the REST API of the stocksync at `url`, or of an App started in process on a
/// temp dir with embedded defaults when `url` is `None`. With `push` (in-process App only,
/// not with new SKUs only), the App also propagates to an in-process Shopify simulator and
/// each run reports movement → push latency (see [`push`](super::push)).
pub async fn rest(
    url: Option<String>,
    workload: WorkloadOptions,
    rates: &[u64],
    template: OpenLoopOptions,
    push: bool,
) -> Result<SweepReport, LoadgenError> {
    if push && (url.is_some() || workload.new_skus_only || workload.skus > MAX_PUSH_SKUS) {
        return Err(LoadgenError::Config(format!(
            "--push needs the in-process App (no --url), named SKUs (no --new-skus-only) \
             and at most {MAX_PUSH_SKUS} SKUs"
        )));
    }
    let dir = tempfile::tempdir()?;
    let simulator = if push {
        Some(start_simulator().await?)
    } else {
        None
    };
    let (app, base) = match url {
        Some(url) => (None, url),
        None => {
            let extra = simulator
                .as_ref()
                .map(|sim| channel_toml(&sim.base_url(), workload.skus))
                .unwrap_or_default();
            let app = crate::app::App::start(app_config(dir.path(), &extra)?)
                .await
                .map_err(|e| LoadgenError::App(format!("{e:#}")))?;
            let base = format!("http://{}", app.http_addr());
            (Some(app), base)
        }
    };
    let rest: Arc<dyn Target> = Arc::new(RestTarget::new(&base, template.connections)?);
    eprintln!("{}", table_header());
    let runs = match &simulator {
        None => sweep("rest", rest, &workload, rates, template).await,
        Some(simulator) => {
            let recorder = Arc::new(PushRecorder::new(rest, workload.skus));
            let mut runs = Vec::new();
            for (index, &rate) in rates.iter().enumerate() {
                let options = OpenLoopOptions {
                    rate_per_sec: rate,
                    ..template
                };
                let workload = match workload_for(&workload, index) {
                    Ok(workload) => workload,
                    Err(error) => {
                        runs.clear();
                        eprintln!("{error}");
                        break;
                    }
                };
                let mut report = open_loop::run("rest", recorder.clone(), workload, options).await;
                let push = recorder.settle_and_report(simulator).await;
                eprintln!("{}", table_row(&report));
                eprintln!("{}", push_row(&push));
                report.push = Some(push);
                runs.push(report);
            }
            Ok(runs)
        }
    };
    let url = if app.is_some() {
        "in-process".to_owned()
    } else {
        base
    };
    if let Some(app) = app {
        app.shutdown(Duration::from_secs(30)).await;
    }
    if let Some(simulator) = simulator {
        simulator.shutdown().await;
    }
    Ok(SweepReport {
        target: "rest".to_owned(),
        url,
        skus: workload.skus,
        zipf_exponent: workload.zipf_exponent,
        new_skus_only: workload.new_skus_only,
        prefilled_events: 0,
        prefill_per_sec: 0.0,
        hashmap_baseline_per_sec: None,
        runs: runs?,
    })
}

/// The push-latency line printed under a run's row.
pub fn push_row(push: &PushReport) -> String {
    format!(
        "  movement -> channel push: p50 {:.0} ms, p99 {:.0} ms, p999 {:.0} ms, max {:.0} ms \
         ({} matched, {} without a later set, {} not noted)",
        push.latency.p50_ms,
        push.latency.p99_ms,
        push.latency.p999_ms,
        push.latency.max_ms,
        push.matched,
        push.unmatched,
        push.not_noted
    )
}

/// How the in-process target is driven.
#[derive(Clone, Copy, Debug)]
pub struct InProcessOptions {
    /// Events committed to the store before the first rate.
    pub prefill_events: u64,
    /// Seconds per rate (or of the closed-loop run).
    pub secs: u64,
    /// Most movements submitted and not yet acknowledged.
    pub max_in_flight: usize,
    /// One closed-loop run (keep `max_in_flight` outstanding) instead of the rate sweep.
    pub closed_loop: bool,
}

/// Drives `Ledger::submit` on an embedded store in a temp dir, after prefilling it with
/// `options.prefill_events` events, next to the HashMap baseline of the same workload:
/// one open-loop run per rate (movements submitted one by one as they fall due, up to
/// `max_in_flight` outstanding, see [`in_flight`](super::in_flight)), or one closed-loop run.
pub async fn in_process(
    workload: WorkloadOptions,
    rates: &[u64],
    options: InProcessOptions,
) -> Result<SweepReport, LoadgenError> {
    let dir = tempfile::tempdir()?;
    let (ledger, store) = start_ledger(dir.path())?;
    let prefill_per_sec = if options.prefill_events > 0 {
        eprintln!(
            "prefilling the store with {} events ...",
            options.prefill_events
        );
        let rate = prefill(&store, options.prefill_events).await?;
        eprintln!("prefilled at {rate:.0} events/s");
        rate
    } else {
        0.0
    };
    let baseline = hashmap_baseline(workload_for(&workload, usize::MAX)?, BASELINE_MOVEMENTS);
    eprintln!("baseline: HashMap apply of the same workload: {baseline:.0} movements/s");
    eprintln!("{}", table_header());
    let schedule: Vec<Option<u64>> = if options.closed_loop {
        vec![None]
    } else {
        rates.iter().map(|&rate| Some(rate)).collect()
    };
    let mut runs = Vec::new();
    for (index, rate) in schedule.into_iter().enumerate() {
        let run_options = InFlightOptions {
            rate_per_sec: rate,
            secs: options.secs,
            max_in_flight: options.max_in_flight,
        };
        let workload = match workload_for(&workload, index) {
            Ok(workload) => workload,
            Err(error) => {
                ledger.shutdown().await;
                return Err(error);
            }
        };
        let report = in_flight::run(ledger.clone(), workload, run_options).await;
        eprintln!("{}", table_row(&report));
        runs.push(report);
    }
    ledger.shutdown().await;
    Ok(SweepReport {
        target: "in-process".to_owned(),
        url: "in-process".to_owned(),
        skus: workload.skus,
        zipf_exponent: workload.zipf_exponent,
        new_skus_only: workload.new_skus_only,
        prefilled_events: options.prefill_events,
        prefill_per_sec,
        hashmap_baseline_per_sec: Some(baseline),
        runs,
    })
}

/// The header of the sweep table.
pub fn table_header() -> String {
    format!(
        "{:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10}",
        "offered/s",
        "acked",
        "acked/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "rejected",
        "non-2xx",
        "errors",
        "lag max ms"
    )
}

/// One row of the sweep table.
pub fn table_row(report: &RunReport) -> String {
    let offered = match report.options.rate_per_sec {
        0 => "closed loop".to_owned(),
        rate => rate.to_string(),
    };
    format!(
        "{:>12} {:>12} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>8} {:>8} {:>10.1}",
        offered,
        report.acknowledged,
        report.throughput_per_sec,
        report.latency.p50_ms,
        report.latency.p99_ms,
        report.latency.p999_ms,
        report.latency.max_ms,
        report.outcome.rejected,
        report.outcome.non_2xx,
        report.outcome.errors,
        report.send_lag_ms_max
    )
}

/// Writes any report as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), LoadgenError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| LoadgenError::Encode(e.to_string()))?;
    std::fs::write(path, json)?;
    Ok(())
}

/// Plots throughput (x, thousands of movements/s) against p99 latency (y, ms).
pub fn plot(path: &Path, sweeps: &[&SweepReport]) -> Result<(), LoadgenError> {
    let series: Vec<Series> = sweeps
        .iter()
        .map(|sweep| Series {
            label: format!("{} p99", sweep.target),
            points: sweep
                .runs
                .iter()
                .map(|run| (run.throughput_per_sec / 1000.0, run.latency.p99_ms))
                .collect(),
        })
        .collect();
    line_chart(
        path,
        "throughput vs p99 ack latency (open loop)",
        "acknowledged movements/s (thousands)",
        "p99 latency (ms)",
        &series,
    )
}
