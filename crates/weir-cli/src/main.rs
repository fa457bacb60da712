//! The `weir` command. Its commands (`demo`, `run`, `resume`, `sagas`,
//! `dlq`, `cursor`, `report`) arrive with the CLI issue; until then it
//! says so and points to the library's runnable examples.

use std::process::ExitCode;

const HELP: &str = "\
weir — concurrent pipelines whose errors propagate correctly

USAGE: weir <COMMAND>

The operator commands (demo, run, resume, sagas, dlq, cursor, report) are
not built yet. Until they are, run the library's examples, e.g.:
  cargo run --release -p weir --example stage_attribution

OPTIONS:
  -h, --help       print this help
  -V, --version    print the version";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None | Some("-h" | "--help" | "help") => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("weir {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("weir: `{other}` is not a command yet; see `weir --help`");
            ExitCode::from(2)
        }
    }
}
