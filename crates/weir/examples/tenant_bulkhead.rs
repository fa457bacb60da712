//! Seed task 14: items from several tenants, each tenant in its own group
//! limited to 8 in flight. Tenant `slowco` is stuck behind a dependency
//! that takes a minute, `badco` fails, `panicco` panics: `acme` and
//! `globex` finish in milliseconds anyway, and every tenant's outcome is
//! reported. Paused clock: the minute passes at once.

use std::time::Duration;

use tokio::time::Instant;
use weir::error::BoxError;
use weir::policy::bulkhead::run_per_tenant;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let start = Instant::now();
    let tenants = ["acme", "globex", "slowco", "badco", "panicco"];
    let items = tenants.iter().flat_map(|t| (0..50u32).map(move |n| (t.to_string(), n)));
    let finished_at = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let seen = finished_at.clone();
    let outcomes = run_per_tenant(items, 8, move |tenant: String, n| {
        let seen = seen.clone();
        async move {
            match tenant.as_str() {
                "slowco" => tokio::time::sleep(Duration::from_secs(60)).await,
                "badco" if n == 10 => return Err::<(), BoxError>(format!("order {n}: invalid currency").into()),
                "panicco" if n == 3 => panic!("unexpected null in order {n}"),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
            seen.lock().expect("not poisoned").insert(tenant, start.elapsed());
            Ok(())
        }
    })
    .await
    .expect("valid limit");
    let finished_at = finished_at.lock().expect("not poisoned").clone();
    for (tenant, outcome) in &outcomes {
        let status = match &outcome.error {
            None => "ok".to_string(),
            Some(e) => format!("failed: {e}"),
        };
        println!(
            "{tenant:>8}: {}/{} completed, last item done at {:?}: {status}",
            outcome.completed,
            outcome.items,
            finished_at.get(tenant).copied().unwrap_or_default()
        );
    }
    assert!(outcomes["acme"].is_ok() && outcomes["globex"].is_ok() && outcomes["slowco"].is_ok());
    assert!(finished_at["acme"] < Duration::from_secs(1), "acme was not held up by slowco");
    assert!(outcomes["badco"].error.is_some() && outcomes["panicco"].error.is_some());
}
