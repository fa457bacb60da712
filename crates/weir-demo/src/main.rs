//! `weir-demo`: the integration pipeline of the course's task 20 (orders
//! from many tenants through fan-out parsing, per-tenant bulkheads and a
//! durable reserve → charge → ship saga) on real input, its report and its
//! replay of dead-lettered lines. Built on weir's public API only; the
//! state it leaves is inspected with the `weir` command (`crates/weir-cli`).

mod args;
mod broker;
mod business;
mod cursor;
mod environment;
mod intake;
mod ledger;
mod location;
mod progress;
mod reader;
mod replay;
mod report;
mod run;
mod settle;
mod signals;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use weir::durable::store::LetterQuery;
use weir::error::BoxError;

use crate::args::{Cli, Command, DbArgs, GenerateArgs};
use crate::environment::{Environment, EnvironmentError, Given};
use crate::location::Location;
use crate::report::Judgement;
use crate::run::{Ending, LINES_QUEUE, RunOptions};
use weir_demo::orders::{Generate, Line, down_tenant};
use weir_demo::{input, orders};

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command did what was asked (a run may still have dead-lettered
    /// or compensated orders: they are reported, not lost).
    pub const OK: u8 = 0;
    /// An unexpected failure.
    pub const FAILED: u8 = 1;
    /// Bad usage: an unknown option, a value out of range, an unsupported
    /// database URL.
    pub const USAGE: u8 = 2;
    /// Bad input or database: missing file, unreachable, foreign, missing
    /// or busy database.
    pub const INPUT: u8 = 3;
    /// A ledger invariant does not hold, or a line read is unaccounted for.
    pub const INVARIANT: u8 = 4;
    /// Nothing is broken but sagas are still in progress: not settled yet.
    pub const NOT_SETTLED: u8 = 5;
    /// Stopped by SIGINT or SIGTERM; the next run resumes.
    pub const INTERRUPTED: u8 = 130;
}

/// An error for the person at the terminal: one line, and an exit code.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn input(message: impl std::fmt::Display) -> Self {
        Self { code: exit::INPUT, message: message.to_string() }
    }

    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self { code: exit::USAGE, message: message.to_string() }
    }
}

impl From<BoxError> for Failure {
    fn from(e: BoxError) -> Self {
        Self { code: exit::FAILED, message: e.to_string() }
    }
}

impl From<EnvironmentError> for Failure {
    fn from(e: EnvironmentError) -> Self {
        match e {
            EnvironmentError::Mismatch { .. } => Failure::usage(e),
            _ => Failure::input(e),
        }
    }
}

/// The name of the runtime's threads, where pipeline stages run.
pub const RUNTIME_THREAD: &str = "weir-worker";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Library logs (sqlx's slow-statement notes included) are not for the
    // person running the command unless asked for with WEIR_LOG; they are
    // printed above the progress bars, never over them.
    let filter = if cli.quiet { "error" } else { "warn,weir=error,sqlx=error" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(progress::LogWriter)
        .init();
    // Panics inside pipeline stages and replays (on runtime worker threads)
    // are recovered and dead-lettered with their message: log them at debug
    // instead of printing each one. Anywhere else a panic is a bug: print it.
    std::panic::set_hook(Box::new(|info| {
        if std::thread::current().name() == Some(RUNTIME_THREAD) {
            tracing::debug!(%info, "panic recovered");
        } else {
            eprintln!("weir-demo: internal error: {info}");
        }
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(RUNTIME_THREAD)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("weir-demo: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let quiet = cli.quiet;
    if let Some(addr) = cli.metrics_addr {
        weir::observe::serve_prometheus(addr).map_err(|e| Failure::usage(format!("--metrics-addr: {e}")))?;
        if !quiet {
            eprintln!("weir-demo: metrics at http://{addr}/metrics");
        }
    }
    match cli.command {
        Command::Demo { db, input } => {
            let g = Generate::from(input);
            let path = std::env::temp_dir().join(format!("weir-demo-{}-{}-{}.jsonl", g.orders, g.tenants, g.seed));
            std::fs::write(&path, orders::generate(g))
                .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))?;
            if !quiet {
                eprintln!(
                    "weir demo: {} orders from {} tenants in {} ({} of the provider calls fail, {} is down)",
                    g.orders,
                    g.tenants,
                    path.display(),
                    g.faults,
                    down_tenant(g.tenants)
                );
            }
            let given = Given { faults: Some(g.faults), down_tenant: Some(down_tenant(g.tenants)) };
            run_and_report(&db, path, 4, given, None, input::DEFAULT_MAX_LINE_BYTES, quiet).await
        }
        Command::Generate { out, input } => {
            let g = Generate::from(input);
            std::fs::write(&out, orders::generate(g))
                .map_err(|e| Failure::input(format!("cannot write {}: {e}", out.display())))?;
            println!("{}: {} orders from {} tenants", out.display(), g.orders, g.tenants);
            Ok(exit::OK)
        }
        Command::Run { db, input, workers, faults, down_tenant, worker_id, max_line_bytes } => {
            check_input(&input)?;
            let given = Given { faults, down_tenant };
            run_and_report(&db, input, workers, given, worker_id, max_line_bytes, quiet).await
        }
        Command::Publish { nats, input, max_line_bytes } => {
            check_input(&input)?;
            let topology = broker::Topology { url: nats.nats_url, stream: nats.stream };
            let count = broker::publish(&topology, &input, max_line_bytes).await.map_err(Failure::input)?;
            println!("published {count} line(s) of {} to stream {}", input.display(), topology.stream);
            Ok(exit::OK)
        }
        Command::Work { db, nats, worker_id, idle_exit, ack_wait, faults, down_tenant } => {
            let location = Location::from_args(&db)?;
            let store = location.open(&db).await?;
            let environment = environment::settle(&store, Given { faults, down_tenant }).await?;
            let opts = broker::WorkOptions {
                topology: broker::Topology { url: nats.nats_url, stream: nats.stream },
                location: location.raw(),
                worker_id,
                idle_exit: idle_exit.map(std::time::Duration::from_secs),
                ack_wait: std::time::Duration::from_secs(ack_wait),
                quiet,
            };
            let figures = broker::work(&opts, store, &environment)
                .await
                .map_err(|e| Failure::input(format!("the worker stopped: {e}")))?;
            println!("{}", serde_json::to_string(&figures).expect("the figures serialize"));
            Ok(exit::OK)
        }
        Command::Resume { db } => {
            let location = Location::from_args(&db)?;
            let (_lock, store) = location.lock_existing(&db).await?;
            let environment = environment::load(&store).await?.unwrap_or_default();
            let (engine, _, _) = run::engine(&store, &location.raw(), &environment, None).await?;
            let report = engine.resume().await.map_err(Failure::input)?;
            println!(
                "resumed {} ({environment}): {} completed, {} compensated, {} failed; {} more taken over meanwhile",
                report.resumed,
                report.completed,
                report.compensated,
                report.failed,
                engine.reclaimed()
            );
            Ok(exit::OK)
        }
        Command::Replay { db, all } => replay(&db, all, quiet).await,
        Command::Report { db, json } => {
            let location = Location::from_args(&db)?;
            let store = location.open_existing(&db).await?;
            let report = report::build(&store, &location.raw()).await?;
            print_report(&report, json);
            Ok(report.judgement.exit_code())
        }
    }
}

/// The input must be a readable file.
fn check_input(input: &Path) -> Result<(), Failure> {
    let hint = "pass a file of orders, one JSON object per line";
    match std::fs::metadata(input) {
        Ok(m) if m.is_dir() => {
            Err(Failure::input(format!("cannot read {}: it is a directory; {hint}", input.display())))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Failure::input(format!("cannot read {}: no such file; {hint}", input.display())))
        }
        Err(e) => Err(Failure::input(format!("cannot read {}: {e}", input.display()))),
    }
}

async fn run_and_report(
    db: &DbArgs,
    input: std::path::PathBuf,
    workers: usize,
    given: Given,
    worker_id: Option<String>,
    max_line_bytes: usize,
    quiet: bool,
) -> Result<u8, Failure> {
    let location = Location::from_args(db)?;
    let _lock = location.lock()?;
    let store = location.open(db).await?;
    let environment: Environment = environment::settle(&store, given).await?;
    let opts = RunOptions { input, location: location.raw(), workers, environment, worker_id, max_line_bytes, quiet };
    let figures = run::run(&opts, store.clone()).await.map_err(|e| Failure::input(format!("the run stopped: {e}")))?;
    if figures.ending == Ending::Aborted {
        eprintln!("weir-demo: stopped at once; the sagas in flight and the rest of the input resume on the next run");
        return Ok(exit::INTERRUPTED);
    }
    let report = report::build(&store, &opts.location).await?;
    print_report(&report, false);
    if figures.ending == Ending::Drained {
        return Ok(exit::INTERRUPTED);
    }
    Ok(report.judgement.exit_code())
}

fn print_report(report: &report::Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("the report serializes"));
    } else {
        report::print(report);
    }
    if report.judgement == Judgement::Violated {
        eprintln!("weir-demo: an invariant does not hold (see the report)");
    }
}

async fn replay(db: &DbArgs, all: bool, quiet: bool) -> Result<u8, Failure> {
    let location = Location::from_args(db)?;
    let (_lock, store) = location.lock_existing(db).await?;
    let queue = store.dead_letters::<Line>(LINES_QUEUE);
    let environment = environment::load(&store).await?.unwrap_or_default();
    let (engine, ledger, _) = run::engine(&store, &location.raw(), &environment, None).await?;
    let which = if all { LetterQuery::new() } else { LetterQuery::new().replay_requested(true) };
    let tally = replay::replay(&queue, which, &engine, ledger.pool(), quiet).await?;
    println!("{tally}");
    Ok(exit::OK)
}

impl From<GenerateArgs> for Generate {
    fn from(a: GenerateArgs) -> Self {
        Generate { orders: a.orders, tenants: a.tenants, faults: a.faults, seed: a.seed }
    }
}
