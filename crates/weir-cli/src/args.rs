//! The command line: every command, its options, their help and checks.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand, ValueEnum};
use weir::durable::queue::JobStatus;
use weir::durable::store::SagaStatus;

use crate::failure::EXIT_CODES;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Look at and act on the durable state of a weir application: sagas, dead-letter queues, work queues, cursors.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the state lives.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The application's SQLite file; wins over --database-url.
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The application's PostgreSQL database (postgres:// or postgresql://).
    #[arg(long, global = true, env = "WEIR_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// How long to keep trying to reach a PostgreSQL server, in seconds.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Saga instances: list, show one, resume a failed one, cancel a running one, delete and prune ended ones.
    Sagas {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: SagasCommand,
    },
    /// Dead-letter queues: list queues and letters, show one, mark letters for replay, purge.
    Dlq {
        #[command(flatten)]
        db: DbArgs,
        /// A NATS server: QUEUE then names a JetStream dead-letter stream (weir's `JetStreamDlq`), and `replay` republishes letters to the subjects they came from.
        #[arg(long, global = true, env = "WEIR_NATS_URL", hide_env_values = true, value_name = "URL")]
        nats_url: Option<String>,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Durable work queues (weir's `WorkQueue`, sagas started through one included): list queues and jobs, show one, put failed or dead jobs back.
    Queues {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: QueuesCommand,
    },
    /// Saved cursors (where an application's sources resume): list, show, reset.
    Cursors {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: CursorsCommand,
    },
    /// A local web dashboard: sagas with filters and each one's steps, dead letters with a replay button, work queues.
    Ui {
        #[command(flatten)]
        db: DbArgs,
        /// Where to serve it; keep it on 127.0.0.1 unless others must reach it (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:9465", value_name = "ADDR")]
        addr: std::net::SocketAddr,
        /// The metrics page of a running process (its `--metrics-addr`), for the live page: throughput, stages, breakers, sagas.
        #[arg(long, value_name = "URL", value_parser = live_url)]
        live: Option<String>,
    },
}

/// A page of a listing, and its format.
#[derive(Debug, Clone, Args)]
pub struct Listing {
    /// The most rows shown; the listing ends with how to ask for the next page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
    /// JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// Sagas, oldest first.
    List {
        /// Only sagas in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only sagas of this definition.
        #[arg(long, value_name = "NAME")]
        definition: Option<String>,
        /// Only sagas of this tenant (their input's top-level `tenant` field).
        #[arg(long)]
        tenant: Option<String>,
        /// Only sagas changed since TIME: an RFC 3339 time (2026-12-01T08:00:00Z) or an age (90m, 2h, 3days).
        #[arg(long, value_parser = when, value_name = "TIME")]
        since: Option<SystemTime>,
        /// Only sagas last changed before TIME (same forms as --since).
        #[arg(long, value_parser = when, value_name = "TIME")]
        until: Option<SystemTime>,
        /// The page after this saga id (the last one of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        #[command(flatten)]
        listing: Listing,
    },
    /// One saga: its input, status, lease and every step.
    Show {
        /// The saga's id.
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sends a failed saga (a compensation failed) back to compensating: the next worker of its application that resumes sagas compensates the failed steps again.
    Resume {
        /// The saga's id.
        id: String,
    },
    /// Cancels a running saga: the worker holding it stops the running step at its next heartbeat and compensates every completed step (and the one it stopped) in reverse; if no worker holds it, the next one of its application that claims it does. The request is durable.
    Cancel {
        /// The saga's id.
        id: String,
        /// Why, kept with the saga and in its error.
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
    },
    /// The cron schedules that start sagas, each with the time up to which its ticks were fired.
    Schedules {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sends an event to a running saga: stored durably, taken once by the step that waits for it (`wait_event`), now or when the saga gets there; a saga parked waiting is woken within a second by a worker of its application.
    SendEvent {
        /// The saga's id.
        id: String,
        /// The event's name (what the step waits for).
        name: String,
        /// What it carries, as JSON (a string needs its quotes: '"ana"').
        #[arg(long, value_parser = json_value, default_value = "null", value_name = "JSON")]
        payload: serde_json::Value,
    },
    /// Deletes sagas that have ended (completed, compensated or failed); a running one must be cancelled first.
    Delete {
        /// The sagas' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Retention: deletes the sagas that ended in one of the statuses and last changed before a time. Failed ones are kept unless named: they wait for a person.
    Prune {
        /// Last changed before TIME: an RFC 3339 time or an age (30days).
        #[arg(long, value_parser = when, value_name = "TIME")]
        before: SystemTime,
        /// The statuses to delete (repeat or separate with commas).
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["completed", "compensated"])]
        status: Vec<EndedSagaArg>,
    },
}

/// A status a saga ends in, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndedSagaArg {
    Completed,
    Compensated,
    Failed,
}

impl From<EndedSagaArg> for SagaStatus {
    fn from(s: EndedSagaArg) -> Self {
        match s {
            EndedSagaArg::Completed => SagaStatus::Completed,
            EndedSagaArg::Compensated => SagaStatus::Compensated,
            EndedSagaArg::Failed => SagaStatus::Failed,
        }
    }
}

/// A saga state, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Running,
    Compensating,
    Completed,
    Compensated,
    Failed,
}

impl From<StatusArg> for SagaStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Running => SagaStatus::Running,
            StatusArg::Compensating => SagaStatus::Compensating,
            StatusArg::Completed => SagaStatus::Completed,
            StatusArg::Compensated => SagaStatus::Compensated,
            StatusArg::Failed => SagaStatus::Failed,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Without QUEUE: every queue with its counts. With QUEUE: its letters, oldest first.
    List {
        /// The queue whose letters to list.
        queue: Option<String>,
        /// Only letters of this tenant.
        #[arg(long, requires = "queue")]
        tenant: Option<String>,
        /// Only letters that failed in this stage.
        #[arg(long, requires = "queue")]
        stage: Option<String>,
        /// Only letters marked for replay and not yet replayed.
        #[arg(long, requires = "queue")]
        marked: bool,
        /// The page after this letter id.
        #[arg(long, value_parser = letter_id, value_name = "ID", requires = "queue")]
        after: Option<u64>,
        #[command(flatten)]
        listing: Listing,
    },
    /// One letter: its item (JSON) and its whole story.
    Show {
        /// The queue.
        queue: String,
        /// The letter's id (`4` or `#4`).
        #[arg(value_parser = letter_id)]
        id: u64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Marks letters for replay. The application that owns the queue replays the marked ones (weir cannot run its code) and removes those that go through.
    Replay {
        /// The queue.
        queue: String,
        /// The letters' ids.
        #[arg(value_parser = letter_id, required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<u64>,
        /// Every letter of the queue.
        #[arg(long)]
        all: bool,
    },
    /// Deletes letters for good.
    Purge {
        /// The queue.
        queue: String,
        /// The letters' ids.
        #[arg(value_parser = letter_id, required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<u64>,
        /// Every letter of the queue (needs --yes).
        #[arg(long)]
        all: bool,
        /// Confirms --all.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Without QUEUE: every queue with its jobs counted by status. With QUEUE: its jobs, oldest first.
    List {
        /// The queue whose jobs to list.
        queue: Option<String>,
        /// Only jobs in this status (a claim whose lease expired counts as queued).
        #[arg(long, value_enum, requires = "queue")]
        status: Option<JobStatusArg>,
        /// Only jobs with this partition key (a tenant).
        #[arg(long, requires = "queue", value_name = "KEY")]
        key: Option<String>,
        /// The page after this job id.
        #[arg(long, value_name = "ID", requires = "queue")]
        after: Option<i64>,
        #[command(flatten)]
        listing: Listing,
    },
    /// One job: its payload (JSON), status, attempts, lease and last error.
    Show {
        /// The queue.
        queue: String,
        /// The job's id.
        id: i64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Puts jobs that ended failed, dead or skipped back in the queue with fresh attempts (once what failed them is fixed); a saga's job that ran to its end only reports that end again.
    Requeue {
        /// The queue.
        queue: String,
        /// The jobs' ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every failed, dead or skipped job of the queue (with --status, only those).
        #[arg(long)]
        all: bool,
        /// With --all: only jobs in this status.
        #[arg(long, value_enum, requires = "all")]
        status: Option<EndedStatusArg>,
    },
}

/// A job status, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum JobStatusArg {
    Queued,
    Claimed,
    Done,
    Skipped,
    Failed,
    Dead,
}

impl From<JobStatusArg> for JobStatus {
    fn from(s: JobStatusArg) -> Self {
        match s {
            JobStatusArg::Queued => JobStatus::Queued,
            JobStatusArg::Claimed => JobStatus::Claimed,
            JobStatusArg::Done => JobStatus::Done,
            JobStatusArg::Skipped => JobStatus::Skipped,
            JobStatusArg::Failed => JobStatus::Failed,
            JobStatusArg::Dead => JobStatus::Dead,
        }
    }
}

/// The statuses a job can be put back from.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EndedStatusArg {
    Skipped,
    Failed,
    Dead,
}

impl From<EndedStatusArg> for JobStatus {
    fn from(s: EndedStatusArg) -> Self {
        match s {
            EndedStatusArg::Skipped => JobStatus::Skipped,
            EndedStatusArg::Failed => JobStatus::Failed,
            EndedStatusArg::Dead => JobStatus::Dead,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CursorsCommand {
    /// Every saved cursor.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One cursor's saved position (JSON).
    Show {
        /// The cursor's name, as `cursors list` shows it.
        name: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Removes a cursor: its source starts from the beginning next time (what it did before is the application's to skip).
    Reset {
        /// The cursor's name.
        name: String,
    },
}

/// A letter id: `4` or `#4`.
fn letter_id(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#')
        .parse()
        .map_err(|e| format!("{e}; pass a letter id as `weir dlq list QUEUE` shows it, like #4"))
}

/// A JSON value.
fn json_value(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("not JSON ({e}); quote a string as '\"text\"', or pass a number, object or array"))
}

/// A time: RFC 3339, or an age back from now.
fn when(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    match humantime::parse_duration(text) {
        Ok(age) => SystemTime::now().checked_sub(age).ok_or_else(|| "that age reaches before 1970".to_owned()),
        Err(_) => Err("pass an RFC 3339 time like 2026-12-01T08:00:00Z, or an age like 90m, 2h or 3days".to_owned()),
    }
}

/// `--live`: an `http://` URL (reqwest is built without TLS: the page is a
/// local process's).
fn live_url(url: &str) -> Result<String, String> {
    if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(url.to_owned())
    } else {
        Err("expected the http:// address of a metrics page, such as http://127.0.0.1:9464/metrics".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_at_parse_time() {
        assert_eq!(letter_id("#4"), Ok(4));
        assert_eq!(letter_id("4"), Ok(4));
        assert!(letter_id("#x").is_err());
        assert!(when("2026-12-01T08:00:00Z").is_ok());
        let hour_ago = when("1h").unwrap();
        let age = SystemTime::now().duration_since(hour_ago).unwrap().as_secs();
        assert!((3599..=3601).contains(&age), "{age}");
        assert!(when("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
