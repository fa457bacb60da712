//! `weir cursors list | show | reset`.

use serde_json::json;
use weir::durable::store::{CursorRecord, Store};

use crate::args::{CursorsCommand, DbArgs};
use crate::failure::{Exit, Failure};
use crate::output;

pub async fn run(db: &DbArgs, command: CursorsCommand) -> Result<(), Failure> {
    let store = crate::store::open(db).await?;
    match command {
        CursorsCommand::List { json } => {
            let cursors = store.cursors().await?;
            if json {
                output::json(&json!({ "cursors": cursors.iter().map(cursor_json).collect::<Vec<_>>() }));
            } else {
                let rows: Vec<Vec<String>> = cursors
                    .iter()
                    .map(|c| vec![c.name.clone(), output::time(c.updated_at), c.position.to_string()])
                    .collect();
                output::table(&["NAME", "SAVED", "POSITION"], &rows);
            }
        }
        CursorsCommand::Show { name, json } => {
            let cursor = find(&store, &name).await?;
            if json {
                output::json(&cursor_json(&cursor));
            } else {
                println!("cursor {} (saved {}):", cursor.name, output::time(cursor.updated_at));
                println!("{}", serde_json::to_string_pretty(&cursor.position).expect("JSON values serialize"));
            }
        }
        CursorsCommand::Reset { name } => {
            if !store.delete_cursor(&name).await? {
                return Err(not_found(&store, &name));
            }
            println!("cursor {name} removed: its source starts from the beginning next time");
        }
    }
    Ok(())
}

async fn find(store: &Store, name: &str) -> Result<CursorRecord, Failure> {
    let cursors = store.cursors().await?;
    cursors.into_iter().find(|c| c.name == name).ok_or_else(|| not_found(store, name))
}

fn not_found(store: &Store, name: &str) -> Failure {
    Failure::new(
        Exit::NotFound,
        format!("no cursor named {name} in {}; `weir cursors list` shows the ones there are", store.target()),
    )
}

fn cursor_json(c: &CursorRecord) -> serde_json::Value {
    json!({ "name": c.name, "position": c.position, "saved": output::time(c.updated_at) })
}
