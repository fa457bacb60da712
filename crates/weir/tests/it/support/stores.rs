//! Stores for tests: memory, a fresh SQLite file, and (when
//! `WEIR_TEST_POSTGRES_URL` is set) a fresh PostgreSQL database.

#![allow(dead_code)]

use weir::durable::store::Store;

/// A fresh SQLite store in a temporary folder (kept alive by the guard).
pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("weir.db").to_str().expect("utf-8 path")).await.expect("open sqlite");
    (store, dir)
}

/// A URL to a new, empty PostgreSQL database, or `None` (and a note on
/// stderr) when `WEIR_TEST_POSTGRES_URL` is not set.
#[cfg(feature = "postgres")]
pub async fn postgres_url(test: &str) -> Option<String> {
    let Ok(admin_url) = std::env::var("WEIR_TEST_POSTGRES_URL") else {
        eprintln!("{test}: skipped: set WEIR_TEST_POSTGRES_URL to run it against PostgreSQL");
        return None;
    };
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("connect to WEIR_TEST_POSTGRES_URL");
    drop_leftovers(&mut admin).await;
    let name = format!("weir_test_{}_{:08x}", std::process::id(), fastrand::u32(..));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
    let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
    Some(format!("{base}/{name}"))
}

/// Drops the test databases of earlier test processes that are gone (the
/// name carries the process id), so runs do not pile databases up. A
/// database of a live process, this one's included, is left alone.
#[cfg(feature = "postgres")]
async fn drop_leftovers(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'weir_test_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            // Another test process may drop it at the same moment: ignore errors.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *admin).await;
        }
    }
}

/// Every store to try — memory, a fresh SQLite file, and PostgreSQL when
/// `WEIR_TEST_POSTGRES_URL` is set — each with where it lives, so that a
/// test can open a second handle on the same state as a second process
/// would ([`another_handle`]), and the guard of its folder.
pub async fn every_kind(test: &str) -> Vec<(Store, Option<String>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.db").to_str().expect("utf-8 path").to_owned();
    let sqlite = Store::open(&path).await.expect("open sqlite");
    #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
    let mut all = vec![(Store::memory(), None, None), (sqlite, Some(path), Some(dir))];
    #[cfg(feature = "postgres")]
    if let Some(url) = postgres_url(test).await {
        all.push((Store::open(&url).await.expect("open postgres"), Some(url), None));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = test;
    all
}

/// A second handle on `store`'s state: opened again from `location`, or
/// the same handle for memory (which has no location).
pub async fn another_handle(store: &Store, location: &Option<String>) -> Store {
    match location {
        Some(location) => Store::open(location).await.expect("open the store again"),
        None => store.clone(),
    }
}

/// Saga `id` once it has ended (polled every 10 ms, for up to 20 s).
pub async fn until_ended(store: &Store, id: &str) -> weir::durable::store::SagaRecord {
    for _ in 0..2_000 {
        let saga = store.saga(id).await.unwrap().unwrap();
        if !saga.status.is_active() {
            return saga;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("saga {id} did not end within 20 s: {:?}", store.saga(id).await.unwrap());
}
