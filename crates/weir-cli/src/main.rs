//! The `weir` command: the integration pipeline of seed task 20 (orders
//! from many tenants through fan-out parsing, per-tenant bulkheads and a
//! durable reserve → charge → ship saga) on real input, and operator
//! commands for the state a run leaves in its database.

mod business;
mod ledger;
mod progress;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir::dlq::DeadLetterQueue;
use weir::error::BoxError;
use weir::store::{SagaStatus, Store};

use crate::run::{LINES_QUEUE, RunOptions};
use weir_cli::orders::{Generate, Line, down_tenant};
use weir_cli::{input, orders};

/// Exit codes scripts can rely on.
mod exit {
    /// The command did what was asked (a run may still have dead-lettered
    /// or compensated orders: they are reported, not lost).
    pub const OK: u8 = 0;
    /// An unexpected failure.
    pub const FAILED: u8 = 1;
    /// Bad usage (from the argument parser).
    #[allow(dead_code)]
    pub const USAGE: u8 = 2;
    /// Bad input or database: missing file, unreachable or foreign database.
    pub const INPUT: u8 = 3;
    /// The run finished but a ledger invariant does not hold.
    pub const INVARIANT: u8 = 4;
}

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Concurrent pipelines whose errors propagate correctly.",
    after_help = "\
Exit codes: 0 done; 1 unexpected failure; 2 bad usage; 3 bad input or database; 4 a ledger invariant does not hold."
)]
struct Cli {
    /// The SQLite file holding the state.
    #[arg(long, global = true, default_value = "weir.db", conflicts_with = "database_url")]
    db: PathBuf,
    /// A PostgreSQL URL instead of the SQLite file (several `weir run` share its work).
    #[arg(long, global = true, env = "WEIR_DATABASE_URL")]
    database_url: Option<String>,
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// How long to keep trying to reach a PostgreSQL server, in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    connect_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generates realistic orders (with malformed lines, poison orders, a flaky payment provider and a tenant whose provider is down) and runs the pipeline on them.
    Demo {
        #[command(flatten)]
        input: GenerateArgs,
    },
    /// Writes the demo's generated orders to a file, to run later.
    Generate {
        out: PathBuf,
        #[command(flatten)]
        input: GenerateArgs,
    },
    /// Runs the pipeline on a file of orders (one JSON object per line).
    Run {
        input: PathBuf,
        /// Parse workers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Share of payment calls that fail transiently (a simulated provider).
        #[arg(long, default_value_t = 0.0)]
        faults: f64,
        /// A tenant whose payment provider is down (simulated).
        #[arg(long)]
        down_tenant: Option<String>,
        /// This worker's id (lease owner); stable ids take their sagas back at once after a restart.
        #[arg(long)]
        worker_id: Option<String>,
        /// The longest input line read whole, in bytes; a longer line is dead-lettered with its length.
        #[arg(long, default_value_t = input::DEFAULT_MAX_LINE_BYTES, value_parser = positive_usize)]
        max_line_bytes: usize,
    },
    /// Finishes the sagas an interrupted run left in progress.
    Resume,
    /// Sagas in the database.
    Sagas {
        #[command(subcommand)]
        command: SagasCommand,
    },
    /// Input lines in the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The input cursor of a file.
    Cursor {
        #[command(subcommand)]
        command: CursorCommand,
    },
    /// The report of what the database holds.
    Report {
        #[arg(long)]
        json: bool,
    },
}

/// The demo's generated input.
#[derive(Debug, Clone, Copy, clap::Args)]
struct GenerateArgs {
    #[arg(long, default_value_t = 5_000)]
    orders: u64,
    #[arg(long, default_value_t = 20)]
    tenants: u32,
    /// Share of faulty lines and failing payment calls.
    #[arg(long, default_value_t = 0.02)]
    faults: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl From<GenerateArgs> for Generate {
    fn from(a: GenerateArgs) -> Self {
        Generate { orders: a.orders, tenants: a.tenants, faults: a.faults, seed: a.seed }
    }
}

#[derive(Debug, Subcommand)]
enum SagasCommand {
    List {
        /// running, compensating, completed, compensated or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    Show {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    Show {
        id: u64,
    },
    /// Takes every line out and runs the ones that now parse through the order saga; the others go back.
    Replay,
}

#[derive(Debug, Subcommand)]
enum CursorCommand {
    Show { input: PathBuf },
    Reset { input: PathBuf },
}

/// An error for the person at the terminal: one line, and an exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn input(message: impl std::fmt::Display) -> Self {
        Self { code: exit::INPUT, message: message.to_string() }
    }
}

impl From<BoxError> for Failure {
    fn from(e: BoxError) -> Self {
        Self { code: exit::FAILED, message: e.to_string() }
    }
}

/// The name of the runtime's threads, where pipeline stages run.
const RUNTIME_THREAD: &str = "weir-worker";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.quiet { "error" } else { "warn,weir=error" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    // Panics inside pipeline stages (on runtime worker threads) are
    // recovered and dead-lettered with their message: log them at debug
    // instead of printing each one. Anywhere else a panic is a bug: print it.
    std::panic::set_hook(Box::new(|info| {
        if std::thread::current().name() == Some(RUNTIME_THREAD) {
            tracing::debug!(%info, "panic recovered by the pipeline");
        } else {
            eprintln!("weir: internal error: {info}");
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
            eprintln!("weir: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn location(cli: &Cli) -> String {
    cli.database_url.clone().unwrap_or_else(|| cli.db.display().to_string())
}

async fn open(cli: &Cli) -> Result<Store, Failure> {
    let location = location(cli);
    let opened = if location.starts_with("postgres") {
        Store::postgres_with_retry(&location, std::time::Duration::from_secs(cli.connect_timeout)).await
    } else {
        Store::open(&location).await
    };
    opened.map_err(Failure::input)
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Demo { input } => {
            let g = Generate::from(*input);
            let input = std::env::temp_dir().join(format!("weir-demo-{}-{}-{}.jsonl", g.orders, g.tenants, g.seed));
            std::fs::write(&input, orders::generate(g))
                .map_err(|e| Failure::input(format!("cannot write {}: {e}", input.display())))?;
            if !cli.quiet {
                eprintln!(
                    "weir demo: {} orders from {} tenants in {} ({} of the provider calls fail, {} is down)",
                    g.orders,
                    g.tenants,
                    input.display(),
                    g.faults,
                    down_tenant(g.tenants)
                );
            }
            let opts = RunOptions {
                input,
                location: location(&cli),
                workers: 4,
                faults: g.faults,
                down_tenant: Some(down_tenant(g.tenants)),
                worker_id: None,
                max_line_bytes: input::DEFAULT_MAX_LINE_BYTES,
                quiet: cli.quiet,
            };
            run_and_report(&cli, opts).await
        }
        Command::Generate { out, input } => {
            let g = Generate::from(*input);
            std::fs::write(out, orders::generate(g))
                .map_err(|e| Failure::input(format!("cannot write {}: {e}", out.display())))?;
            println!("{}: {} orders from {} tenants", out.display(), g.orders, g.tenants);
            Ok(exit::OK)
        }
        Command::Run { input, workers, faults, down_tenant, worker_id, max_line_bytes } => {
            if !input.is_file() {
                return Err(Failure::input(format!(
                    "cannot read {}: no such file; pass a file of orders, one JSON object per line",
                    input.display()
                )));
            }
            let opts = RunOptions {
                input: input.clone(),
                location: location(&cli),
                workers: *workers,
                faults: *faults,
                down_tenant: down_tenant.clone(),
                worker_id: worker_id.clone(),
                max_line_bytes: *max_line_bytes,
                quiet: cli.quiet,
            };
            run_and_report(&cli, opts).await
        }
        Command::Resume => {
            let store = open(&cli).await?;
            let ledger = ledger::Ledger::connect(&run::any_url(&location(&cli))).await?;
            let engine = weir::saga::SagaEngine::builder(store)
                .definition(business::order_saga(ledger, business::Payments::new(0.0, None)))
                .build()
                .map_err(|e| Failure::from(Box::new(e) as BoxError))?;
            let report = engine.resume().await.map_err(Failure::input)?;
            println!(
                "resumed {}: {} completed, {} compensated, {} failed",
                report.resumed, report.completed, report.compensated, report.failed
            );
            Ok(exit::OK)
        }
        Command::Sagas { command } => sagas(&cli, command).await,
        Command::Dlq { command } => dlq(&cli, command).await,
        Command::Cursor { command } => cursor(&cli, command).await,
        Command::Report { json } => {
            let store = open(&cli).await?;
            let report = report::build(&store, &location(&cli)).await?;
            print_report(&report, *json);
            Ok(if report.invariants_hold { exit::OK } else { exit::INVARIANT })
        }
    }
}

async fn run_and_report(cli: &Cli, opts: RunOptions) -> Result<u8, Failure> {
    let store = open(cli).await?;
    run::run(&opts, store.clone()).await.map_err(|e| Failure::input(format!("the run stopped: {e}")))?;
    let report = report::build(&store, &opts.location).await?;
    print_report(&report, false);
    Ok(if report.invariants_hold { exit::OK } else { exit::INVARIANT })
}

fn print_report(report: &report::Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("the report serializes"));
    } else {
        report::print(report);
    }
}

async fn sagas(cli: &Cli, command: &SagasCommand) -> Result<u8, Failure> {
    let store = open(cli).await?;
    match command {
        SagasCommand::List { status, limit } => {
            let status = match status {
                None => None,
                Some(s) => Some(SagaStatus::parse(s).ok_or_else(|| {
                    Failure::input(format!(
                        "unknown status {s:?}; use running, compensating, completed, compensated or failed"
                    ))
                })?),
            };
            for saga in store.sagas(status, *limit).await.map_err(Failure::input)? {
                println!("{}  {:<12}  {}", saga.id, saga.status, saga.error.unwrap_or_default());
            }
        }
        SagasCommand::Show { id } => {
            let Some(saga) = store.saga(id).await.map_err(Failure::input)? else {
                return Err(Failure::input(format!("no saga {id} in {}", store.target())));
            };
            println!("saga {} ({}): {}", saga.id, saga.definition, saga.status);
            println!("input: {}", saga.input);
            if let Some(error) = &saga.error {
                println!("error: {error}");
            }
            for step in &saga.steps {
                println!(
                    "  {:<8} {:?} attempts {} (compensation {}){}",
                    step.name,
                    step.status,
                    step.attempts,
                    step.compensation_attempts,
                    step.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(exit::OK)
}

async fn dlq(cli: &Cli, command: &DlqCommand) -> Result<u8, Failure> {
    let store = open(cli).await?;
    let queue = store.dead_letters::<Line>(LINES_QUEUE);
    match command {
        DlqCommand::List { limit } => {
            for e in queue.list().await.map_err(Failure::input)?.into_iter().take(*limit) {
                println!(
                    "#{:<6} line {:<7} {}",
                    e.id,
                    e.item.number,
                    e.error_chain.last().cloned().unwrap_or_default()
                );
            }
        }
        DlqCommand::Show { id } => {
            let all = queue.list().await.map_err(Failure::input)?;
            let Some(e) = all.iter().find(|e| e.id == *id) else {
                return Err(Failure::input(format!("no dead letter #{id}")));
            };
            println!(
                "dead letter #{} from stage `{}`, line {}, {} attempt(s)",
                e.id, e.stage, e.item.number, e.attempts
            );
            println!("line: {}", e.item.text);
            for (i, cause) in e.error_chain.iter().enumerate() {
                println!("  {}{cause}", "  ".repeat(i));
            }
        }
        DlqCommand::Replay => {
            // Lines that parse now go through the saga; the others go back.
            let ledger = ledger::Ledger::connect(&run::any_url(&location(cli))).await?;
            let engine = weir::saga::SagaEngine::builder(store.clone())
                .definition(business::order_saga(ledger, business::Payments::new(0.0, None)))
                .build()
                .map_err(|e| Failure::from(Box::new(e) as BoxError))?;
            let parked = queue.drain().await.map_err(|e| Failure::input(e.to_string()))?;
            let (mut completed, mut rolled_back, mut again) = (0, 0, 0);
            for envelope in parked {
                let line = envelope.item.clone();
                match std::panic::catch_unwind(|| orders::parse(&line)) {
                    Ok(Ok(order)) => match engine.run_with_id(&order.order_id, "order", &order).await {
                        Ok(_) => completed += 1,
                        Err(e) if e.is_compensated() || e.is_failed() => rolled_back += 1,
                        Err(e) => {
                            queue.push(envelope).await.map_err(|e| Failure::input(e.to_string()))?;
                            return Err(Failure::input(format!("replay stopped, the line is back in the queue: {e}")));
                        }
                    },
                    _ => {
                        queue.push(envelope).await.map_err(|e| Failure::input(e.to_string()))?;
                        again += 1;
                    }
                }
            }
            println!(
                "replayed: {completed} order(s) completed, {rolled_back} rolled back; {again} line(s) still fail and are back in the queue"
            );
        }
    }
    Ok(exit::OK)
}

async fn cursor(cli: &Cli, command: &CursorCommand) -> Result<u8, Failure> {
    let store = open(cli).await?;
    let key = |input: &PathBuf| {
        format!("weir-cli:input:{}", std::fs::canonicalize(input).unwrap_or_else(|_| input.clone()).display())
    };
    match command {
        CursorCommand::Show { input } => match store.cursor(&key(input)).await.map_err(Failure::input)? {
            Some(position) => println!("{}: {position}", input.display()),
            None => println!("{}: not read yet", input.display()),
        },
        CursorCommand::Reset { input } => {
            store
                .save_cursor(&key(input), &serde_json::json!({"offset": 0, "line": 0}))
                .await
                .map_err(Failure::input)?;
            println!("{}: cursor reset to the start", input.display());
        }
    }
    Ok(exit::OK)
}

/// A count that must be at least 1 (a clap value parser).
fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; pass a whole number of bytes")),
    }
}
