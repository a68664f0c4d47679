//! The shipped load generator end to end: `loadgen rest` against an in-process App, the
//! `loadgen in-process` and `bench memory` commands through the real binary. Counts only:
//! no throughput or latency is asserted (the figures belong to benchmarks).

use crate::support::TansuBroker;
use std::process::Command;
use stocksync::loadgen::kafka::{self, KafkaRunOptions};
use stocksync::loadgen::open_loop::OpenLoopOptions;
use stocksync::loadgen::sweep;
use stocksync::loadgen::workload::{Workload, WorkloadOptions, fresh_run_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_against_an_in_process_app_acknowledges_every_movement() {
    let workload = WorkloadOptions {
        skus: 50,
        settle_movements: 50,
        run_id: fresh_run_id(),
        ..WorkloadOptions::default()
    };
    let template = OpenLoopOptions {
        rate_per_sec: 200,
        secs: 1,
        batch: 10,
        connections: 2,
    };
    let report = sweep::rest(None, workload, &[200], template, false)
        .await
        .expect("rest sweep runs");
    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];
    assert_eq!(run.sent, 200, "{run:?}");
    assert_eq!(run.acknowledged, 200, "{run:?}");
    assert_eq!(run.outcome.applied, 200, "{run:?}");
    assert_eq!(run.outcome.rejected, 0, "{run:?}");
    assert_eq!(run.outcome.non_2xx, 0, "{run:?}");
    assert_eq!(run.outcome.errors, 0, "{run:?}");
    assert!(run.latency.max_ms > 0.0);
}

#[test]
fn in_process_command_prints_its_table_and_writes_json_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sweep.json");
    let svg = dir.path().join("sweep.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(["loadgen", "in-process", "--rates", "300,600", "--secs", "1"])
        .args(["--skus", "100", "--batch", "50", "--prefill-events", "2000"])
        .arg("--out")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run stocksync");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("baseline (same run): HashMap apply"),
        "{stdout}"
    );
    assert!(stdout.contains("p99 ms"), "{stdout}");
    assert!(
        stdout.contains("store prefilled with 2000 events"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["acknowledged"], 300);
    assert_eq!(runs[1]["acknowledged"], 600);
    assert_eq!(runs[1]["outcome"]["errors"], 0);
    assert_eq!(runs[1]["outcome"]["rejected"], 0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}

#[test]
fn bench_memory_completes_and_prints_its_fields() {
    let output = Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(["bench", "memory", "--skus", "1000", "--wait-secs", "1"])
        .output()
        .expect("run stocksync");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for field in [
        "skus 1000",
        "rss_before_mb",
        "rss_loaded_mb",
        "bytes_per_sku",
        "live_actors_loaded",
        "rss_after_passivation_mb",
        "live_actors_after 0",
        "secs_to_30_percent",
    ] {
        assert!(stdout.contains(field), "{field} missing from:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_run_produces_exactly_n_and_makes_every_one_durable() {
    let broker = TansuBroker::start();
    let options = WorkloadOptions {
        skus: 200,
        settle_movements: 500,
        run_id: fresh_run_id(),
        ..WorkloadOptions::default()
    };
    let run_id = options.run_id.clone();
    let movements = 20_000;
    let report = kafka::run(
        KafkaRunOptions {
            brokers: broker.bootstrap(),
            movements,
            partitions: 3,
            topic: None,
            batch_max: 1000,
        },
        Workload::new(options).unwrap(),
        &run_id,
    )
    .await
    .expect("kafka run");
    assert_eq!(report.movements, movements, "{report:?}");
    assert_eq!(report.partitions, 3);
}

#[test]
fn in_process_closed_loop_acknowledges_everything_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("closed.json");
    let output = Command::new(env!("CARGO_BIN_EXE_stocksync"))
        .args(["loadgen", "in-process", "--closed-loop", "--secs", "1"])
        .args(["--skus", "100", "--max-in-flight", "1000"])
        .arg("--out")
        .arg(&json)
        .output()
        .expect("run stocksync");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("closed loop"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0]["sent"].as_u64().unwrap() > 0);
    assert_eq!(runs[0]["acknowledged"], runs[0]["sent"]);
    assert_eq!(runs[0]["outcome"]["errors"], 0);
    assert_eq!(runs[0]["options"]["connections"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_push_matches_movements_to_simulator_sets() {
    let workload = WorkloadOptions {
        skus: 20,
        settle_movements: 50,
        run_id: fresh_run_id(),
        ..WorkloadOptions::default()
    };
    let template = OpenLoopOptions {
        rate_per_sec: 200,
        secs: 1,
        batch: 10,
        connections: 2,
    };
    let report = sweep::rest(None, workload, &[200], template, true)
        .await
        .expect("rest push sweep runs");
    let run = &report.runs[0];
    assert_eq!(run.acknowledged, 200, "{run:?}");
    let push = run.push.as_ref().expect("push report");
    assert!(push.matched > 0, "{push:?}");
    assert_eq!(push.not_noted, 0, "{push:?}");
}
