//! The `loadgen` and `bench` subcommands of the binary: clap arguments mapped onto
//! `stocksync::loadgen`, whose reports they print, write as JSON and plot.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use stocksync::loadgen::memory::{MemoryOptions, MemoryReport};
use stocksync::loadgen::open_loop::OpenLoopOptions;
use stocksync::loadgen::plot::{Series, line_chart};
use stocksync::loadgen::sweep::{self, SweepReport};
use stocksync::loadgen::workload::{Mix, WorkloadOptions, fresh_run_id};

/// Targets of `stocksync loadgen`.
#[derive(Subcommand)]
pub enum LoadgenCommand {
    /// POST /api/v1/movements (JSON arrays of --batch movements over --connections
    /// connections) to --url, or to an App started in process on a temp dir.
    Rest {
        /// Base URL of a running stocksync (http://127.0.0.1:8080); absent: start one in
        /// process with embedded defaults.
        #[arg(long)]
        url: Option<String>,
        /// Also measure movement -> channel push latency: the in-process App propagates to
        /// an in-process Shopify simulator listing every SKU (not with --url or
        /// --new-skus-only; at most 100,000 SKUs).
        #[arg(long)]
        push: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Ledger::submit directly on an embedded store, one movement at a time as each falls
    /// due (no request batching; --batch and --connections do not apply), up to
    /// --max-in-flight outstanding, next to a HashMap apply of the same workload (the
    /// same-run baseline).
    InProcess {
        /// First fill the store with this many events (committed directly, for SKUs the
        /// workload never names), to measure on a store that already holds them.
        #[arg(long, default_value_t = 0)]
        prefill_events: u64,
        /// Most movements submitted and not yet acknowledged.
        #[arg(long, default_value_t = 200_000)]
        max_in_flight: usize,
        /// Instead of the rate sweep, keep --max-in-flight movements outstanding for
        /// --secs and report the throughput sustained.
        #[arg(long)]
        closed_loop: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Pre-produce --movements keyed by SKU to a new topic, time a raw rdkafka consume of
    /// it, then time an in-process App consuming it until every movement is durable.
    Kafka {
        /// Bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Movements to pre-produce.
        #[arg(long, default_value_t = 2_000_000)]
        movements: u64,
        /// Partitions of the new topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Topic name (default: a fresh `loadgen-<run id>`).
        #[arg(long)]
        topic: Option<String>,
        /// `[kafka] batch_max` of the App.
        #[arg(long, default_value_t = 1000)]
        batch_max: usize,
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Write the report as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The workload shape.
#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// SKUs the movements are spread over.
    #[arg(long, default_value_t = 10_000)]
    skus: usize,
    /// Zipf exponent of SKU popularity (0 = uniform).
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Every movement is a receipt for a SKU never seen before.
    #[arg(long)]
    new_skus_only: bool,
    /// Mix weights: receipts,sales,cancellations,fulfilments.
    #[arg(long, default_value = "25,40,10,25", value_delimiter = ',')]
    mix: Vec<u32>,
    /// Seed of the random sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl WorkloadArgs {
    fn options(&self) -> WorkloadOptions {
        let weight = |i: usize| self.mix.get(i).copied().unwrap_or(0);
        WorkloadOptions {
            skus: self.skus,
            zipf_exponent: self.zipf,
            new_skus_only: self.new_skus_only,
            mix: Mix {
                receipts: weight(0),
                sales: weight(1),
                cancellations: weight(2),
                fulfilments: weight(3),
            },
            seed: self.seed,
            run_id: fresh_run_id(),
            ..WorkloadOptions::default()
        }
    }
}

/// The open-loop schedule and the outputs.
#[derive(Args, Clone)]
pub struct LoadArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Offered rates in movements/s, each run for --secs (a sweep when several).
    #[arg(long, default_value = "20000", value_delimiter = ',')]
    rates: Vec<u64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Movements per request (batch).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent senders (HTTP connections).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Write the sweep as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw throughput vs p99 latency as SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

impl LoadArgs {
    fn check(&self) -> anyhow::Result<OpenLoopOptions> {
        anyhow::ensure!(
            self.workload.mix.len() == 4,
            "--mix takes four weights: receipts,sales,cancellations,fulfilments"
        );
        anyhow::ensure!(
            self.rates.iter().all(|&r| r > 0),
            "every --rates value must be at least 1"
        );
        anyhow::ensure!(self.secs > 0, "--secs must be at least 1");
        anyhow::ensure!(
            (1..=stocksync::web::movements::MAX_BATCH_MOVEMENTS).contains(&self.batch),
            "--batch must be 1..={}",
            stocksync::web::movements::MAX_BATCH_MOVEMENTS
        );
        anyhow::ensure!(
            (1..=4096).contains(&self.connections),
            "--connections must be 1..=4096"
        );
        Ok(OpenLoopOptions {
            rate_per_sec: self.rates[0],
            secs: self.secs,
            batch: self.batch,
            connections: self.connections,
        })
    }

    fn finish(&self, report: &SweepReport) -> anyhow::Result<()> {
        println!(
            "target {} ({}), {} SKUs, zipf {}{}",
            report.target,
            report.url,
            report.skus,
            report.zipf_exponent,
            if report.new_skus_only {
                ", new SKUs only"
            } else {
                ""
            }
        );
        if let Some(baseline) = report.hashmap_baseline_per_sec {
            println!("baseline (same run): HashMap apply {baseline:.0} movements/s");
        }
        if report.prefilled_events > 0 {
            println!(
                "store prefilled with {} events ({:.0} events/s)",
                report.prefilled_events, report.prefill_per_sec
            );
        }
        println!("{}", sweep::table_header());
        for run in &report.runs {
            println!("{}", sweep::table_row(run));
            if let Some(push) = &run.push {
                println!("{}", sweep::push_row(push));
            }
        }
        if let Some(path) = &self.out {
            sweep::write_json(path, report)?;
        }
        if let Some(path) = &self.plot {
            sweep::plot(path, &[report])?;
        }
        Ok(())
    }
}

/// Benchmarks of `stocksync bench`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Load N SKUs into an in-process ledger, report RSS and bytes per SKU, passivate all
    /// and sample RSS each second until it is ≤ 30 % of the peak.
    Memory {
        /// SKUs to load.
        #[arg(long, default_value_t = 100_000)]
        skus: usize,
        /// Movements per SKU (1 = one receipt; more: receipt, sale, fulfilment, sale,
        /// cancellation, …).
        #[arg(long, default_value_t = 1)]
        movements_per_sku: usize,
        /// Longest wait after passivation, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// Run once per SKU count, each in a fresh child process (so one load's retained
        /// memory does not bias the next), e.g. 100000,250000,500000,1000000.
        #[arg(long, value_delimiter = ',')]
        sweep: Vec<usize>,
        /// Write the report(s) as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Draw memory vs SKUs as SVG here (with --sweep).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print only the report as one JSON line (used by --sweep).
        #[arg(long)]
        json: bool,
    },
}

/// Runs `stocksync loadgen …`.
pub async fn loadgen(command: LoadgenCommand) -> anyhow::Result<()> {
    match command {
        LoadgenCommand::Rest { url, push, load } => {
            let template = load.check()?;
            let report =
                sweep::rest(url, load.workload.options(), &load.rates, template, push).await?;
            load.finish(&report)
        }
        LoadgenCommand::InProcess {
            prefill_events,
            max_in_flight,
            closed_loop,
            load,
        } => {
            let template = load.check()?;
            anyhow::ensure!(
                (1..=stocksync::loadgen::in_flight::MAX_IN_FLIGHT).contains(&max_in_flight),
                "--max-in-flight must be 1..={}",
                stocksync::loadgen::in_flight::MAX_IN_FLIGHT
            );
            let report = sweep::in_process(
                load.workload.options(),
                &load.rates,
                sweep::InProcessOptions {
                    prefill_events,
                    secs: template.secs,
                    max_in_flight,
                    closed_loop,
                },
            )
            .await?;
            load.finish(&report)
        }
        LoadgenCommand::Kafka {
            brokers,
            movements,
            partitions,
            topic,
            batch_max,
            workload,
            out,
        } => {
            anyhow::ensure!(movements > 0, "--movements must be at least 1");
            anyhow::ensure!(
                (1..=1024).contains(&partitions),
                "--partitions must be 1..=1024"
            );
            let options = workload.options();
            let run_id = options.run_id.clone();
            let workload = stocksync::loadgen::workload::Workload::new(options)?;
            let report = stocksync::loadgen::kafka::run(
                stocksync::loadgen::kafka::KafkaRunOptions {
                    brokers,
                    movements,
                    partitions,
                    topic,
                    batch_max,
                },
                workload,
                &run_id,
            )
            .await?;
            println!(
                "kafka topic {} ({} partitions, {} movements)\n  produce            {:>10.0} movements/s\n  \
                 raw rdkafka consume {:>9.0} movements/s (baseline, same run)\n  \
                 stocksync durable  {:>10.0} movements/s from the first durable offset ({:.1} s)\n  \
                 stocksync durable  {:>10.0} movements/s from App start ({:.1} s)\n  \
                 ratio to raw       {:>10.2}",
                report.topic,
                report.partitions,
                report.movements,
                report.produce_per_sec,
                report.raw_consume_per_sec,
                report.app_per_sec,
                report.app_secs_from_first_durable,
                report.app_per_sec_from_start,
                report.app_secs_from_start,
                report.ratio_to_raw
            );
            if let Some(path) = out {
                sweep::write_json(&path, &report)?;
            }
            Ok(())
        }
    }
}

fn print_memory(report: &MemoryReport) {
    let mb = |bytes: u64| bytes as f64 / 1_048_576.0;
    println!(
        "skus {} movements_per_sku {}\n  rss_before_mb {:.1}\n  rss_loaded_mb {:.1}\n  \
         bytes_per_sku {:.0}\n  live_actors_loaded {}\n  load_secs {:.1}\n  \
         rss_after_passivation_mb {:.1} ({:.0} % of peak)\n  live_actors_after {}\n  \
         secs_to_30_percent {}",
        report.options.skus,
        report.options.movements_per_sku,
        mb(report.rss_before_bytes),
        mb(report.rss_loaded_bytes),
        report.bytes_per_sku,
        report.live_actors_loaded,
        report.load_secs,
        mb(report.rss_after_passivation_bytes),
        100.0 * report.rss_after_passivation_bytes as f64 / report.rss_loaded_bytes.max(1) as f64,
        report.live_actors_after,
        report
            .secs_to_30_percent
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| format!("not reached in {} s", report.options.wait_secs)),
    );
}

/// Runs `stocksync bench …`.
pub async fn bench(command: BenchCommand) -> anyhow::Result<()> {
    let BenchCommand::Memory {
        skus,
        movements_per_sku,
        wait_secs,
        sweep: counts,
        out,
        plot,
        json,
    } = command;
    anyhow::ensure!(
        (1..=50_000_000).contains(&skus),
        "--skus must be 1..=50000000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&movements_per_sku),
        "--movements-per-sku must be 1..=10000"
    );
    let reports: Vec<MemoryReport> = if counts.is_empty() {
        let options = MemoryOptions {
            skus,
            movements_per_sku,
            wait_secs,
        };
        vec![stocksync::loadgen::memory::run(options).await?]
    } else {
        let exe = std::env::current_exe()?;
        let mut reports = Vec::new();
        for count in counts {
            let output = std::process::Command::new(&exe)
                .args(["bench", "memory", "--json"])
                .args(["--skus", &count.to_string()])
                .args(["--movements-per-sku", &movements_per_sku.to_string()])
                .args(["--wait-secs", &wait_secs.to_string()])
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "bench memory --skus {count} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let line = String::from_utf8_lossy(&output.stdout);
            reports.push(serde_json::from_str::<MemoryReport>(line.trim())?);
        }
        reports
    };
    if json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        for report in &reports {
            print_memory(report);
        }
    }
    if let Some(path) = out {
        sweep::write_json(&path, &reports)?;
    }
    if let Some(path) = plot {
        let points = |f: fn(&MemoryReport) -> f64| -> Vec<(f64, f64)> {
            reports
                .iter()
                .map(|r| (r.options.skus as f64 / 1000.0, f(r)))
                .collect()
        };
        line_chart(
            &path,
            "memory vs live SKUs (in-process ledger)",
            "SKUs loaded (thousands)",
            "MB",
            &[
                Series {
                    label: "RSS loaded (MB)".to_owned(),
                    points: points(|r| r.rss_loaded_bytes as f64 / 1_048_576.0),
                },
                Series {
                    label: "RSS after passivation (MB)".to_owned(),
                    points: points(|r| r.rss_after_passivation_bytes as f64 / 1_048_576.0),
                },
                Series {
                    label: "bytes per SKU ÷ 10".to_owned(),
                    points: points(|r| r.bytes_per_sku / 10.0),
                },
            ],
        )?;
    }
    Ok(())
}
