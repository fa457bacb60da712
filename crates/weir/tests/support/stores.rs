//! Stores for tests: memory, a fresh SQLite file, and (when
//! `WEIR_TEST_POSTGRES_URL` is set) a fresh PostgreSQL database.

#![allow(dead_code)]

use weir::store::Store;

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
    let name = format!("weir_test_{}_{:08x}", std::process::id(), fastrand::u32(..));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
    let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
    Some(format!("{base}/{name}"))
}
