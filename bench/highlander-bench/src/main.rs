//! `highlander-bench`: load generator, counting sink and report builder for benchmarking
//! highlander against a direct path and against vmagent (see `bench/README.md`).
//!
//! - `load`: post pre-encoded Remote-Write 1.0 requests, print one JSON report.
//! - `sink`: receive, decode and count, duplicates too. It has an outage switch and
//!   `/stats`.
//! - `verify`: count acknowledged samples the sink never received (crash test).
//! - `pair`: lost samples, hole and overlap of a failover between two sources.
//! - `report`: turn the per-run files of `bench/compare.sh` into JSON and Markdown.

mod ledger;
mod load;
mod pair;
mod report;
mod sink;
mod snappy;
mod verify;
mod wire;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "highlander-bench",
    version,
    about = "Benchmark tools for highlander"
)]
struct Cli {
    /// Runtime worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post Remote-Write requests for a while and report throughput and latency as JSON.
    Load(LoadArgs),
    /// Receive Remote-Write requests, decode and count them.
    Sink(SinkArgs),
    /// Count acknowledged samples (from `load --ack-log`) that the sink never received.
    Verify(VerifyArgs),
    /// Lost samples, hole and overlap of a failover from source a to source b (from the
    /// two generators' `--ack-log`).
    Pair(PairArgs),
    /// Summarise the runs of `bench/compare.sh` into JSON and Markdown.
    Report(report::ReportArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Write URL, e.g. http://127.0.0.1:9091/api/v1/write.
    #[arg(long)]
    url: url::Url,
    /// Distinct series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples per request (one per series, like Prometheus' shards).
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// Requests in flight (= connections).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests per second. 0 = unlimited.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to start new requests, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Pre-encoded requests (default: one round over all series). Fewer leaves series out.
    #[arg(long)]
    pool: Option<usize>,
    /// Query string appended to the URL, e.g. `highlander_source=a`.
    #[arg(long)]
    query: Option<String>,
    /// Timeout of one request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the pool index, timestamp and status of every acknowledged request here.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// Only even or only odd round timestamps, so that two generators sending the same
    /// series never send the same sample.
    #[arg(long, value_enum)]
    timestamp_parity: Option<load::Parity>,
    /// Send the first request at this wall-clock time (ms since the Unix epoch), after
    /// the pool is built: two generators then start a known time apart.
    #[arg(long)]
    start_at_unix_ms: Option<i64>,
    /// Print a JSON progress line to stderr every second.
    #[arg(long)]
    progress: bool,
    /// The Remote-Write version to send: 1.0 or 2.0 (one symbols table per request, as
    /// Prometheus 3 builds it).
    #[arg(long, value_enum, default_value = "1.0")]
    protocol: workload::Protocol,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SinkArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9201")]
    listen: String,
    /// Status answered to writes during an outage.
    #[arg(long, default_value_t = 503)]
    fail_status: u16,
    /// Send `Retry-After: SECONDS` with outage answers.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Outage while this file exists (besides POST /outage/on).
    #[arg(long)]
    outage_file: Option<PathBuf>,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Remember at most this many sample timestamps (8 bytes each) for duplicate counting.
    #[arg(long, default_value_t = 400_000_000)]
    max_remembered: u64,
    /// Largest decoded request accepted, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_decoded_bytes: usize,
    /// Read Remote-Write 2.0 requests as 2.0 (answered with the Written headers). Without
    /// it, every body is read as 1.0, as VictoriaMetrics does.
    #[arg(long)]
    accept_v2: bool,
    /// Wait this long before answering each write, as a storage across a network link
    /// does (round trip and processing). Writes wait side by side, not one after another.
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The acknowledgement log written by `load --ack-log`.
    #[arg(long)]
    ack_log: PathBuf,
    /// Base URL of the sink, e.g. http://127.0.0.1:9201.
    #[arg(long)]
    sink: url::Url,
}

#[derive(clap::Args)]
struct PairArgs {
    /// Acknowledgement log of source a (promoted first).
    #[arg(long)]
    a_log: PathBuf,
    /// Acknowledgement log of source b (takes over from a).
    #[arg(long)]
    b_log: PathBuf,
    /// Base URL of the sink, e.g. http://127.0.0.1:9201.
    #[arg(long)]
    sink: url::Url,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("highlander-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Load(args) => run_load(args).await,
            Command::Sink(args) => {
                sink::run(sink::SinkConfig {
                    listen: args.listen,
                    fail_status: args.fail_status,
                    retry_after: args.retry_after,
                    outage_file: args.outage_file,
                    workers: args.workers.max(1),
                    max_remembered: args.max_remembered,
                    max_decoded_bytes: args.max_decoded_bytes,
                    accept_v2: args.accept_v2,
                    answer_delay: std::time::Duration::from_millis(args.answer_delay_ms),
                })
                .await
            }
            Command::Verify(args) => {
                let report = verify::run(&args.ack_log, &args.sink).await?;
                println!("{report}");
                Ok(())
            }
            Command::Pair(args) => {
                let report = pair::run(&args.a_log, &args.b_log, &args.sink).await?;
                println!("{report}");
                Ok(())
            }
            Command::Report(args) => report::run(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander-bench: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_load(args: LoadArgs) -> Result<(), String> {
    let shape = workload::Shape::new(args.series, args.samples_per_request, args.pool)?;
    let mut url = args.url;
    if let Some(q) = args.query.as_deref().filter(|q| !q.is_empty()) {
        let query = match url.query() {
            Some(existing) if !existing.is_empty() => format!("{existing}&{q}"),
            _ => q.to_string(),
        };
        url.set_query(Some(&query));
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be positive".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a non-negative number".into());
    }
    let report = load::run(load::LoadConfig {
        url,
        shape,
        concurrency: args.concurrency,
        rate: args.rate,
        duration: args.duration,
        timeout: args.timeout,
        ack_log: args.ack_log,
        parity: args.timestamp_parity,
        start_at_ms: args.start_at_unix_ms,
        progress: args.progress,
        protocol: args.protocol,
    })
    .await?;
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.out {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}
