//! The command line: every command, its options, their help and checks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use weir_demo::input;

#[derive(Debug, Parser)]
#[command(
    name = "weir-demo",
    version,
    about = "The orders demo of weir: orders from many tenants through parsing, per-tenant bulkheads and a durable reserve → charge → ship saga. Inspect its database with the `weir` command.",
    after_help = "\
Exit codes: 0 done; 1 unexpected failure; 2 bad usage; 3 bad input or database; 4 an invariant does not hold; 5 not settled (sagas still in progress); 130 stopped by a signal (the next run resumes)."
)]
pub struct Cli {
    /// No progress output.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Serve weir's metrics (stages, policies, sagas, store commits, queues) at http://ADDR/metrics in Prometheus' text format while the command runs, e.g. 127.0.0.1:9464.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the state lives (for the commands that use a database).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The SQLite file holding the state [default: weir.db]; wins over
    /// --database-url and WEIR_DATABASE_URL.
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// A PostgreSQL URL (postgres:// or postgresql://) instead of the SQLite
    /// file; several `weir-demo run` share its work.
    #[arg(long, global = true, env = "WEIR_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// How long to keep trying to reach a PostgreSQL server, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

/// Where the orders stream is.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// The NATS server (with JetStream).
    #[arg(long, env = "WEIR_NATS_URL", default_value = "nats://127.0.0.1:4222", value_name = "URL")]
    pub nats_url: String,
    /// The stream of order lines (subject `<STREAM>.lines`; dead letters in `<STREAM>_DLQ`).
    #[arg(long, default_value = "ORDERS", value_name = "STREAM")]
    pub stream: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generates realistic orders (with malformed lines, poison orders, a flaky payment provider and a tenant whose provider is down) and runs the pipeline on them.
    Demo {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        input: GenerateArgs,
    },
    /// Writes the demo's generated orders to a file, to run later.
    Generate {
        /// The file to write (one JSON order per line).
        out: PathBuf,
        #[command(flatten)]
        input: GenerateArgs,
    },
    /// Runs the pipeline on a file of orders (one JSON object per line), from where the last run on it stopped.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// The file of orders.
        input: PathBuf,
        /// Parse workers.
        #[arg(long, default_value_t = 4, value_parser = positive_usize)]
        workers: usize,
        /// Share of payment calls that fail transiently (a simulated provider), from 0 to 1; stored with the database on its first run [default: 0].
        #[arg(long, value_parser = share)]
        faults: Option<f64>,
        /// A tenant whose payment provider is down (simulated); stored with the database on its first run.
        #[arg(long, value_name = "TENANT")]
        down_tenant: Option<String>,
        /// This worker's id (lease owner); a stable id takes its sagas back at once after a restart.
        #[arg(long, value_name = "ID")]
        worker_id: Option<String>,
        /// The longest input line read whole, in bytes; a longer line is dead-lettered with its length.
        #[arg(long, default_value_t = input::DEFAULT_MAX_LINE_BYTES, value_parser = positive_usize, value_name = "BYTES")]
        max_line_bytes: usize,
    },
    /// Puts a file's orders on a NATS JetStream stream, one message per line, for `weir-demo work` processes to share; a line published again is stored once.
    Publish {
        #[command(flatten)]
        nats: NatsArgs,
        /// The file of orders.
        input: PathBuf,
        /// The longest input line read whole, in bytes; a longer line is published cut, and dead-lettered by the worker with its length.
        #[arg(long, default_value_t = input::DEFAULT_MAX_LINE_BYTES, value_parser = positive_usize, value_name = "BYTES")]
        max_line_bytes: usize,
    },
    /// Takes orders from the NATS stream (shared with every other worker on it) and runs their sagas on the store; many workers on many machines split the work.
    Work {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        /// This worker's id (lease owner) [default: a new one per process].
        #[arg(long, value_name = "ID")]
        worker_id: Option<String>,
        /// Stop once the stream has had nothing waiting and nothing in flight, in any worker, for this many seconds [default: run until SIGINT/SIGTERM].
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<u64>,
        /// Seconds a message may go without a sign of life from its worker before another worker gets it.
        #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        ack_wait: u64,
        /// Share of payment calls that fail transiently (a simulated provider), from 0 to 1; stored with the database on its first run [default: 0].
        #[arg(long, value_parser = share)]
        faults: Option<f64>,
        /// A tenant whose payment provider is down (simulated); stored with the database on its first run.
        #[arg(long, value_name = "TENANT")]
        down_tenant: Option<String>,
    },
    /// Finishes the sagas an interrupted run left in progress, in the database's stored environment.
    Resume {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replays the dead-lettered lines an operator marked for replay (`weir dlq replay`), or every one with --all: a line that now goes through is removed, the others stay with their new reason.
    Replay {
        #[command(flatten)]
        db: DbArgs,
        /// Every dead-lettered line, marked or not.
        #[arg(long)]
        all: bool,
    },
    /// The report of what the database holds, with one judgement (see the exit codes).
    Report {
        #[command(flatten)]
        db: DbArgs,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The demo's generated input.
#[derive(Debug, Clone, Copy, Args)]
pub struct GenerateArgs {
    /// How many orders.
    #[arg(long, default_value_t = 5_000)]
    pub orders: u64,
    /// How many tenants (merchants); the last one's payment provider is down in the demo.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub tenants: u32,
    /// Share of faulty lines and of failing payment calls, from 0 to 1.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub faults: f64,
    /// Seed of the generator (same seed, same orders).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A count that must be at least 1 (a clap value parser).
fn positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; pass a whole number")),
    }
}

/// A share from 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err("must be from 0 to 1 (0.05 is 5 %)".into()),
        Err(e) => Err(format!("{e}; pass a number from 0 to 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_at_parse_time() {
        assert!(share("2").is_err() && share("-0.1").is_err() && share("x").is_err());
        assert_eq!(share("0.25"), Ok(0.25));
        assert!(positive_usize("0").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
