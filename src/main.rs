//! The `stocksync` binary: `run`, `demo`, `sandbox`, `history`, `check-config`, `token`,
//! `loadgen`, `bench`, `openapi`, `migrate`, `store copy`.

// The binary sees every dependency of the library; the lint is checked on the library.
#![allow(unused_crate_dependencies)]

/// mimalloc: the engine allocates many small, short-lived values on several threads,
/// where it measured faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod loadgen_cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use stocksync::config::Config;

/// stocksync: one stock ledger, every channel in sync.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per
    /// line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "STOCKSYNC_LOG_FORMAT"
    )]
    log_format: stocksync::telemetry::LogFormat,
    /// Same as `--log-format json` (kept for older scripts).
    #[arg(long, global = true, hide = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine with a config file.
    Run {
        /// The TOML config file.
        #[arg(
            long,
            short,
            default_value = "config/stocksync.toml",
            env = "STOCKSYNC_CONFIG"
        )]
        config: PathBuf,
    },
    /// Run the engine on embedded defaults with an in-process Shopify simulator and a
    /// synthetic stream of orders and receipts.
    Demo {
        /// HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Folder for the demo database (wiped at start).
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
        /// Number of SKUs.
        #[arg(long, default_value_t = 20)]
        skus: usize,
        /// Seconds of synthetic traffic before the summary.
        #[arg(long, default_value_t = 15)]
        stream_secs: u64,
        /// Exit after printing the summary instead of serving until Ctrl-C.
        #[arg(long)]
        exit_after_summary: bool,
    },
    /// Run the platform simulators standalone.
    Sandbox {
        /// Address of the Shopify simulator.
        #[arg(long, default_value = "127.0.0.1:9100")]
        shopify_listen: String,
        /// Where the Shopify simulator sends signed webhooks (e.g. http://127.0.0.1:8080/webhooks/shopify/shopify-main).
        #[arg(long)]
        webhook_url: Option<String>,
        /// Address of the WooCommerce simulator.
        #[arg(long, default_value = "127.0.0.1:9200")]
        woocommerce_listen: String,
        /// Where the WooCommerce simulator sends signed webhooks (e.g. http://127.0.0.1:8080/webhooks/woocommerce/woo-main).
        #[arg(long)]
        woocommerce_webhook_url: Option<String>,
        /// Address of the Bol.com simulator.
        #[arg(long, default_value = "127.0.0.1:9300")]
        bolcom_listen: String,
        /// Address of the Amazon simulator.
        #[arg(long, default_value = "127.0.0.1:9400")]
        amazon_listen: String,
        /// Where the Amazon simulator posts ORDER_CHANGE notifications (e.g. http://127.0.0.1:8080/webhooks/amazon/amazon-nl).
        #[arg(long)]
        amazon_notification_url: Option<String>,
    },
    /// Print movement history from the store (read directly; the engine may be running).
    History {
        /// The TOML config file (its `[store]` is read).
        #[arg(
            long,
            short,
            default_value = "config/stocksync.toml",
            env = "STOCKSYNC_CONFIG"
        )]
        config: PathBuf,
        /// Only this SKU.
        #[arg(long)]
        sku: Option<String>,
        /// Recorded at or after, ms since the Unix epoch.
        #[arg(long)]
        from: Option<i64>,
        /// Recorded before, ms since the Unix epoch.
        #[arg(long)]
        to: Option<i64>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this kind (receipt, sale, …).
        #[arg(long)]
        kind: Option<String>,
        /// Most rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print CSV instead of JSON lines.
        #[arg(long)]
        csv: bool,
    },
    /// Create or update the configured store's schema (PostgreSQL schema, ScyllaDB
    /// keyspace and tables; the embedded file), whatever `create_schema` says.
    Migrate {
        /// The TOML config file (its `[store]` is read).
        #[arg(long, short, env = "STOCKSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Store administration.
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// Check a config file and report every problem at once.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// The shipped load generator: open loop (fixed arrival rate, latency from the due
    /// time), Zipf-skewed SKUs, a mix of receipts, sales, cancellations and fulfilments;
    /// reports throughput and p50/p99/p999/max ack latency per rate, each target next to
    /// its same-run baseline. `scripts/bench.sh` runs the whole benchmark table.
    Loadgen {
        #[command(subcommand)]
        target: loadgen_cli::LoadgenCommand,
    },
    /// API tokens for `[http.auth]`.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Benchmarks that ship with the binary (`bench memory`: bytes per live SKU).
    Bench {
        #[command(subcommand)]
        what: loadgen_cli::BenchCommand,
    },
    /// Print the HTTP API's OpenAPI 3.1 contract (`stocksync openapi > docs/openapi.json`).
    Openapi,
    /// Test support, hidden: commits batches of many SKUs through the configured store in
    /// a loop, one line per acknowledged batch to --acks, until killed
    /// (`stocksync::store::conformance::crash`).
    #[command(hide = true)]
    StoreCrashWriter {
        /// The TOML config file (its `[store]` is used).
        #[arg(long)]
        config: PathBuf,
        /// The file that gets one JSON line per acknowledged batch.
        #[arg(long)]
        acks: PathBuf,
        /// The round number (names the batches and the offset partition).
        #[arg(long, default_value_t = 0)]
        round: u32,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every record of one store into another (embedded → postgres/scylla and back),
    /// resumably, then verify counts and a checksum per SKU (exit code 1 on a mismatch).
    /// Stop the engine on the source first.
    Copy {
        /// Config whose `[store]` is copied (its Kafka group and channels name the offsets
        /// and pushed values to copy).
        #[arg(long)]
        from: PathBuf,
        /// Config whose `[store]` receives the copy.
        #[arg(long)]
        to: PathBuf,
        /// Most events per commit to the target.
        #[arg(long, default_value_t = 1000)]
        batch_events: usize,
    },
    /// Copy the embedded store into one file while the engine runs (SQLite's online backup
    /// API, one consistent snapshot), with a progress bar; prints the offset watermarks it
    /// holds. PostgreSQL and ScyllaDB: use their own tools (README "Backup and restore").
    Backup {
        /// The TOML config file (its `[store]` names the embedded file).
        #[arg(long, short, env = "STOCKSYNC_CONFIG")]
        config: PathBuf,
        /// The backup file to write (written beside it first, then renamed).
        #[arg(long)]
        out: PathBuf,
        /// Replace `--out` if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the embedded store with a backup. Stop every instance first: with `[kafka]`
    /// the consumer group must have no members, and its committed offsets are set to the
    /// backup's watermarks so that the next start reads everything after them again.
    Restore {
        /// The TOML config file (its `[store]` names the file to replace, its `[kafka]` the
        /// group whose offsets are set).
        #[arg(long, short, env = "STOCKSYNC_CONFIG")]
        config: PathBuf,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Replace a store that holds data.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random token: prints it once, with the `[[http.auth.tokens]]` entry (its
    /// SHA-256, never the token) to paste into the config.
    New {
        /// Who holds the token (recorded as the actor of what it changes).
        name: String,
        /// What it may do: ingest, reserve, operate, read, metrics (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}

/// `stocksync token new`: the token and the config entry, or an error naming a bad scope.
fn new_token(name: &str, scopes: &[String]) -> anyhow::Result<String> {
    use stocksync::config::Scope;
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 64,
        "the token name must be 1 to 64 characters"
    );
    let mut parsed = Vec::new();
    for scope in scopes {
        let scope = scope.trim();
        let Some(known) = Scope::parse(scope) else {
            let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            anyhow::bail!("unknown scope {scope:?}; use {}", names.join(", "));
        };
        if !parsed.contains(&known) {
            parsed.push(known);
        }
    }
    let token = stocksync::web::auth::new_token();
    let scopes: Vec<String> = parsed
        .iter()
        .map(|scope| format!("\"{}\"", scope.as_str()))
        .collect();
    Ok(format!(
        "token (shown once; give it to {name} and keep it secret):\n{token}\n\n\
         add to the config, under [http]:\n\n\
         [[http.auth.tokens]]\nname = {}\nscopes = [{}]\nhash = \"{}\"\n",
        toml::Value::String(name.to_owned()),
        scopes.join(", "),
        stocksync::web::auth::hash_token(&token)
    ))
}

/// `stocksync store copy`: copies, verifies, prints both reports; exits 1 on a mismatch or
/// a conflicting SKU, 2 when the target holds only SKUs the source lacks.
/// The embedded file a config's `[store]` names; exits 2 with the way to back up another
/// backend.
fn embedded_path(config: &Config, command: &str) -> std::path::PathBuf {
    use stocksync::config::StoreBackend;
    if config.store.backend != StoreBackend::Embedded {
        eprintln!(
            "stocksync store {command}: the {} store is backed up with its own tools \
             (README \"Backup and restore\"); this command copies the embedded store",
            config.store.backend.name()
        );
        std::process::exit(2);
    }
    config.store.path.clone()
}

/// `stocksync store backup`: an online copy of the embedded store.
async fn store_backup(
    config: &std::path::Path,
    out: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    use stocksync::store_admin::backup;
    let config = Config::load(config)?;
    let source = embedded_path(&config, "backup");
    let (from, to) = (source.clone(), out.to_owned());
    let report =
        tokio::task::spawn_blocking(move || backup::backup_embedded(&from, &to, force, true))
            .await??;
    println!(
        "backed up {} → {}: {} events, {} SKUs, {} pages, {} bytes",
        source.display(),
        report.path.display(),
        report.events,
        report.skus,
        report.pages,
        report.bytes
    );
    for mark in &report.watermarks {
        println!(
            "  offset watermark: group {} topic {} partition {} next offset {}",
            mark.group, mark.topic, mark.partition, mark.next_offset
        );
    }
    Ok(())
}

/// `stocksync store restore`: the embedded store replaced by a backup, and the Kafka group
/// set to read again from the backup's watermarks.
async fn store_restore(
    config: &std::path::Path,
    from: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    use stocksync::store_admin::backup;
    const KAFKA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
    let config = Config::load(config)?;
    let target = embedded_path(&config, "restore");
    if let Some(kafka) = config.kafka.clone() {
        tokio::task::spawn_blocking(move || {
            stocksync::ingest::kafka::ensure_group_idle(&kafka, KAFKA_TIMEOUT)
        })
        .await?
        .context("checking that no instance is running")?;
    }
    let (backup_file, to) = (from.to_owned(), target.clone());
    let report = tokio::task::spawn_blocking(move || {
        backup::restore_embedded(&backup_file, &to, force, true)
    })
    .await??;
    println!(
        "restored {} → {}: {} events, {} SKUs",
        from.display(),
        report.path.display(),
        report.events,
        report.skus
    );
    if let Some(kafka) = config.kafka.clone() {
        let watermarks: std::collections::BTreeMap<i32, i64> = report
            .watermarks
            .iter()
            .filter(|mark| mark.group == kafka.group_id && mark.topic == kafka.movements_topic)
            .map(|mark| (mark.partition, mark.next_offset))
            .collect();
        let group = kafka.group_id.clone();
        let committed = tokio::task::spawn_blocking(move || {
            stocksync::ingest::kafka::set_committed_offsets(&kafka, &watermarks, KAFKA_TIMEOUT)
        })
        .await?
        .context("setting the consumer group's offsets to the backup's watermarks")?;
        for (partition, offset) in committed {
            println!("  kafka group {group} resumes partition {partition} at offset {offset}");
        }
    }
    Ok(())
}

async fn store_copy(
    from: &std::path::Path,
    to: &std::path::Path,
    batch: usize,
) -> anyhow::Result<()> {
    use stocksync::store_admin::copy;
    let (from_config, to_config) = (Config::load(from)?, Config::load(to)?);
    anyhow::ensure!(
        !copy::same_store(&from_config.store, &to_config.store),
        "--from and --to name the same store"
    );
    let source = stocksync::store::open(&from_config.store)
        .await
        .context("opening the source store")?;
    let target = stocksync::store::open(&to_config.store)
        .await
        .context("opening the target store")?;
    let scope = copy::CopyScope::of(&from_config);
    let options = copy::CopyOptions {
        batch_events: batch,
        progress: true,
        ..copy::CopyOptions::default()
    };
    if let Err(refused) = copy::check_target(source.as_ref(), target.as_ref(), options.now_ms).await
    {
        eprintln!("stocksync store copy: {refused}");
        std::process::exit(2);
    }
    let copied = copy::copy(source.as_ref(), target.as_ref(), &scope, &options).await?;
    println!(
        "copied {} → {}: {} SKUs ({} copied, {} already there), {} events in {} commits, \
         {} reservations, {} push-log rows, {} config audit rows",
        from_config.store.backend.name(),
        to_config.store.backend.name(),
        copied.skus,
        copied.skus_copied,
        copied.skus_skipped,
        copied.events,
        copied.commits,
        copied.reservations,
        copied.push_log_rows,
        copied.config_audit_rows
    );
    let conflicts = copied.conflicts.len() as u64 + copied.conflicts_unlisted;
    if conflicts > 0 {
        println!(
            "{conflicts} SKUs not copied: the target's events differ from the source's \
             (nothing was written for them)"
        );
        for conflict in &copied.conflicts {
            println!(
                "  {}: first difference at seq {}: {}",
                conflict.sku, conflict.seq, conflict.reason
            );
        }
        if copied.conflicts_unlisted > 0 {
            println!("  … and {} more", copied.conflicts_unlisted);
        }
    }
    let verified = copy::verify(source.as_ref(), target.as_ref(), &scope, &options).await?;
    print!("{}", verified.render());
    target.close().await?;
    source.close().await?;
    if !verified.ok() || conflicts > 0 {
        std::process::exit(1);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log_format = if cli.log_json {
        stocksync::telemetry::LogFormat::Json
    } else {
        cli.log_format
    };
    stocksync::telemetry::init_logging(log_format);
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let app = stocksync::app::App::start(config).await?;
            println!("stocksync listening on http://{}", app.http_addr());
            stocksync::app::stop_signal()
                .await
                .context("waiting for a stop signal")?;
            app.shutdown(Duration::from_secs(10)).await;
        }
        Command::Demo {
            listen,
            data_dir,
            skus,
            stream_secs,
            exit_after_summary,
        } => {
            anyhow::ensure!(skus > 0, "--skus must be at least 1");
            let options = stocksync::demo::DemoOptions {
                listen,
                data_dir,
                skus,
                stream_secs,
                exit_after_summary,
            };
            stocksync::demo::run(options).await?;
        }
        Command::Sandbox {
            shopify_listen,
            webhook_url,
            woocommerce_listen,
            woocommerce_webhook_url,
            bolcom_listen,
            amazon_listen,
            amazon_notification_url,
        } => {
            let options = stocksync::sandbox::StandaloneOptions {
                shopify_listen,
                shopify_webhook_url: webhook_url,
                woocommerce_listen,
                woocommerce_webhook_url,
                bolcom_listen,
                amazon_listen,
                amazon_notification_url,
            };
            println!("platform simulators (Ctrl-C stops them):");
            stocksync::sandbox::run_standalone(options, async {
                let _ = stocksync::app::stop_signal().await;
            })
            .await?;
        }
        Command::History {
            config,
            sku,
            from,
            to,
            source,
            kind,
            limit,
            csv,
        } => {
            let config = Config::load(&config)?;
            let store = stocksync::store::open(&config.store).await?;
            let query = stocksync::store::EventQuery {
                sku,
                from_ms: from,
                to_ms: to,
                source,
                kind,
                after: None,
                limit,
            };
            let rows =
                stocksync::store::history::movement_rows(store.as_ref(), &query, true).await?;
            if csv {
                stocksync::store::history::write_csv(&rows, std::io::stdout().lock())?;
            } else {
                for row in rows {
                    println!("{}", serde_json::to_string(&row)?);
                }
            }
        }
        Command::Migrate { config } => {
            let config = Config::load(&config)?;
            println!(
                "{}",
                stocksync::store_admin::migrate::migrate(&config).await?
            );
        }
        Command::Store {
            action:
                StoreCommand::Copy {
                    from,
                    to,
                    batch_events,
                },
        } => store_copy(&from, &to, batch_events).await?,
        Command::Store {
            action: StoreCommand::Backup { config, out, force },
        } => store_backup(&config, &out, force).await?,
        Command::Store {
            action:
                StoreCommand::Restore {
                    config,
                    from,
                    force,
                },
        } => store_restore(&config, &from, force).await?,
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => println!(
                "{}: ok ({} locations, {} channels, kafka {})",
                file.display(),
                config.locations.len(),
                config.channels.len(),
                if config.kafka.is_some() { "on" } else { "off" }
            ),
            Err(error) => {
                eprintln!("{}: {error}", file.display());
                std::process::exit(2);
            }
        },
        Command::Token {
            action: TokenCommand::New { name, scopes },
        } => print!("{}", new_token(&name, &scopes)?),
        Command::Loadgen { target } => loadgen_cli::loadgen(target).await?,
        Command::Bench { what } => loadgen_cli::bench(what).await?,
        Command::Openapi => print!("{}", stocksync::web::openapi::document_pretty()),
        Command::StoreCrashWriter {
            config,
            acks,
            round,
        } => {
            let config = Config::load(&config)?;
            stocksync::store::conformance::crash::run_writer(&config.store, &acks, round, u64::MAX)
                .await?;
        }
    }
    Ok(())
}
