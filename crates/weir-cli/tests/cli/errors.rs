//! Exit codes by cause, errors that name the input and the fix, and no
//! password printed anywhere.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_name_what_is_accepted() {
    for args in [
        &["sagas", "list", "--db", "x.db", "--status", "bogus"][..],
        &["sagas", "list", "--db", "x.db", "--since", "yesterday"],
        &["sagas", "list", "--db", "x.db", "--limit", "0"],
        &["dlq", "show", "q", "#x", "--db", "x.db"],
        &["dlq", "replay", "q", "--db", "x.db"],
        &["dlq", "list", "--tenant", "t", "--db", "x.db"],
        &["sagas", "list"],
        &["sagas", "list", "--database-url", "mysql://root:pw@host/x"],
        &["sagas", "list", "--database-url", "not a url"],
    ] {
        let out = weir(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("pw@"), "{}", stderr(&out));
    }
    let out = weir(&["sagas", "list", "--since", "yesterday", "--db", "x.db"]).await;
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
    let out = weir(&["sagas", "list"]).await;
    assert!(stderr(&out).contains("--db FILE") && stderr(&out).contains("postgres://"), "{}", stderr(&out));
}

/// A missing file, a file that is not weir's, an unreachable server: exit
/// 3, nothing created, the password never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_used_exits_3_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let out = weir(&["sagas", "list", "--db", missing.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no weir database at") && !missing.exists(), "{}", stderr(&out));

    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "not a database at all, just some notes that are long enough").unwrap();
    let out = weir(&["dlq", "list", "--db", foreign.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a weir database"), "{}", stderr(&out));

    let secret = "s3cr3tPW";
    let url = format!("postgres://app:{secret}@127.0.0.1:1/orders");
    let out = weir(&["cursors", "list", "--database-url", &url, "--connect-timeout", "1"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("app:***@127.0.0.1:1") && !err.contains(secret), "{err}");
    // Nor in help, with the URL in the environment.
    for args in [&["--help"][..], &["sagas", "list", "--help"], &["dlq", "--help"]] {
        let out = tokio::task::spawn_blocking({
            let (url, args) = (url.clone(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
            move || Command::new(env!("CARGO_BIN_EXE_weir")).env("WEIR_DATABASE_URL", url).args(args).output().unwrap()
        })
        .await
        .unwrap();
        let all = stdout(&out) + &stderr(&out);
        assert!(out.status.success() && !all.contains(secret), "{args:?}: {all}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the notes file: nothing was created");
}

/// A stored record that cannot be read back breaks weir's invariants:
/// exit 4, naming the saga and the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_exits_4_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = Store::sqlite(&path).await.unwrap();
    engine(&store, Arc::new(AtomicBool::new(false))).run_with_id("o1", "order", &"ok").await.unwrap();
    drop(store);
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("UPDATE weir_sagas SET steps = 'not json' WHERE id = 'o1'").execute(&mut conn).await.unwrap();
    }
    let out = weir(&["sagas", "list", "--db", path.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("saga o1: steps"), "{}", stderr(&out));
}
