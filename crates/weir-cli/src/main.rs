//! `weir`: the operator's command for the durable state of any weir
//! application — its sagas, dead-letter queues, work queues and cursors, in a SQLite
//! file or a PostgreSQL database. It knows none of the application's
//! types: items, inputs and outputs are shown as JSON. Built on weir's
//! public API only.
#![forbid(unsafe_code)]

mod args;
mod commands;
mod failure;
mod output;
mod store;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("weir: {}", failure.message);
            ExitCode::from(failure.code as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Sagas { db, command } => commands::sagas::run(&db, command).await,
        Command::Dlq { nats_url: Some(url), command, .. } => commands::dlq_nats::run(&url, command).await,
        Command::Dlq { db, command, nats_url: None } => commands::dlq::run(&db, command).await,
        Command::Queues { db, command } => commands::queues::run(&db, command).await,
        Command::Cursors { db, command } => commands::cursors::run(&db, command).await,
        Command::Ui { db, addr, live } => ui::run(&db, addr, live.as_deref()).await,
    }
}
