//! The example server's key-encryption key file: where it lives, created
//! once (mode 0600) and agreed on by processes starting together, and the
//! start-up sealing of keys an earlier run stored in plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sql_support;

#[path = "../examples/server/app.rs"]
#[allow(dead_code)]
mod app;

use authio_mcp::jose::{PrivateKey, SigningAlgorithm};
use authio_mcp::keys::{KeyId, SigningKey};
use authio_mcp::project::ProjectId;
use authio_mcp::store::KeyStore as _;
use authio_mcp::store::sql::{SqlOptions, SqliteStore};
use sql_support::TempDir;

#[test]
fn the_key_file_sits_next_to_a_sqlite_database() {
    use std::path::PathBuf;
    let path = app::key_encryption_key_path;
    assert_eq!(
        path("sqlite://authio-example.db"),
        PathBuf::from("authio-example.db.kek")
    );
    assert_eq!(
        path("sqlite:///var/lib/a.db?mode=rwc"),
        PathBuf::from("/var/lib/a.db.kek")
    );
    assert_eq!(path("sqlite:data/a.db"), PathBuf::from("data/a.db.kek"));
    assert_eq!(path("sqlite::memory:"), PathBuf::from("authio-example.kek"));
    assert_eq!(path("postgres://u@h/db"), PathBuf::from("authio-example.kek"));
}

#[test]
fn the_key_file_is_created_once_and_agreed_on() {
    let dir = TempDir::new();
    let file = dir.0.join("k.kek");
    // Eight processes (threads here) starting at once end with one key.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    app::load_or_create_key_encryption_key(&file)
                        .unwrap()
                        .key_id()
                        .to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(ids[0].starts_with("file-"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let leftovers = std::fs::read_dir(&dir.0).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary files left behind");
    // Read back: the same key.
    assert_eq!(app::load_or_create_key_encryption_key(&file).unwrap().key_id(), ids[0]);
    // A file someone wrote by hand (`openssl rand -base64 32`) works; a
    // malformed one is an error naming the expected form.
    std::fs::write(&file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    assert_ne!(app::load_or_create_key_encryption_key(&file).unwrap().key_id(), ids[0]);
    std::fs::write(&file, "not a key\n").unwrap();
    let e = app::load_or_create_key_encryption_key(&file).unwrap_err();
    assert!(e.to_string().contains("32 bytes"), "{e}");
}

/// A database from before sealing (keys in plaintext) is sealed when the
/// example server opens it; another key file cannot read it afterwards.
#[tokio::test]
async fn opening_the_database_seals_plaintext_keys() {
    let dir = TempDir::new();
    let url = dir.sqlite_url("old.db");
    let p = ProjectId::new("proj_demo").unwrap();
    let key = SigningKey::new(
        p.clone(),
        KeyId::new("es256-old").unwrap(),
        PrivateKey::generate(SigningAlgorithm::Es256, &[5; 32]).unwrap(),
        time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
    );
    let old = SqliteStore::connect(&url, SqlOptions::default().danger_plaintext_keys())
        .await
        .unwrap();
    old.migrate().await.unwrap();
    assert!(old.insert(key.clone()).await.unwrap());
    old.close().await;

    let key_file = dir.0.join("server.kek");
    let storage = app::Storage::open(&url, SqlOptions::default(), key_file.to_str())
        .await
        .unwrap();
    let app::Storage::Sqlite(store) = &storage else {
        panic!("a SQLite store")
    };
    let back = store.keys(&p).await.unwrap();
    assert_eq!(back[0].private_key.expose_der(), key.private_key.expose_der());
    storage.close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (protection, stored): (String, Vec<u8>) =
        sqlx::query_as("SELECT key_protection, private_key FROM signing_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(protection, "sealed");
    assert_ne!(stored, key.private_key.expose_der());
    pool.close().await;

    // Another key file: the server does not start, and says why.
    let other = dir.0.join("other.kek");
    let Err(e) = app::Storage::open(&url, SqlOptions::default(), other.to_str()).await else {
        panic!("another key file opened the database")
    };
    let e = e.to_string();
    assert!(e.contains("es256-old") && e.contains("other.kek"), "{e}");
}
