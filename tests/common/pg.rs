//! A fresh PostgreSQL database per test, in the server `deploy/test.sh` provides
//! (KEFU_TEST_POSTGRES: the machine's own when it answers, else a private cluster the
//! script starts). Dropped, connections and all, when the test is done.

use sqlx::Connection;

/// The admin URL the tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("KEFU_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own; dropped with this value.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin = admin_url();
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "\n\n*** PostgreSQL is not reachable at {admin}: {e}\n*** deploy/test.sh \
                 starts one; or set KEFU_TEST_POSTGRES to a server that answers.\n\n"
                )
            });
        let name = format!("kefu_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => panic!("KEFU_TEST_POSTGRES must end in /DATABASE"),
        };
        Self { url, name }
    }

    /// `create` for synchronous tests.
    pub fn create_blocking() -> Self {
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(Self::create())
        })
        .join()
        .unwrap()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Its own thread and runtime: a test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            })
        })
        .join();
    }
}

/// A fresh, empty database of each kind: its URL, and what to drop afterwards.
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

pub async fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    Db {
        url: kefu::store::sqlite_url(&dir.path().join("kefu.db")),
        _dir: Some(dir),
        _pg: None,
    }
}

pub async fn postgres_db() -> Db {
    let pg = PgDatabase::create().await;
    Db {
        url: pg.url.clone(),
        _dir: None,
        _pg: Some(pg),
    }
}
