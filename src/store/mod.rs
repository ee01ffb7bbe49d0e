//! The store: every customer, conversation turn and call, kept with sqlx in SQLite
//! (the embedded default, `DATA/kefu.db` in WAL mode) or PostgreSQL (`database =
//! "postgres://..."`), with customer data sealed by `crypto`.
//!
//! One code path serves both databases through sqlx's `Any` driver: the SQL is
//! written to mean the same in both dialects (`$n` parameters, `ON CONFLICT`), and
//! only the migrations (`migrations/{sqlite,postgres}`) differ.
//!
//! Writes go through one writer task (`writer`) that commits whatever has queued up
//! in one transaction (group commit): a caller's `await` returns once its rows are
//! committed, so a channel replies only after the customer's message and the reply
//! are stored. Reads use the pool directly.

pub mod access;
pub mod agents;
pub mod analytics;
pub mod backup;
pub mod callbacks;
pub mod chat_state;
pub mod cluster;
pub mod crypto;
pub mod customers;
pub mod drafts;
pub mod export;
mod migrate;
pub mod privacy;
pub mod ratings;
pub mod recordings;
pub mod reports;
pub mod retention;
pub mod rotate;
pub mod terms;
pub mod ticket_list;
pub mod tickets;
pub mod writer;

use std::path::Path;
use std::sync::{Arc, Once};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::dialogue::conversations::{Channel, Identity, IdentityKind};
use crate::dialogue::engine::{Speaker, Turn};
use crypto::Keyring;
pub use writer::Write;

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            bail!("database URL {url:?} is neither sqlite:// nor postgres://")
        }
    }
}

/// Registers sqlx's SQLite and PostgreSQL drivers for `Any` connections (once).
pub fn drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(install_default_drivers);
}

/// The SQLite URL for a database file (created if missing).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Seals and opens column values, or passes them through with encryption off.
#[derive(Clone, Debug)]
pub struct Sealer {
    keys: Option<Arc<Keyring>>,
}

impl Sealer {
    pub fn new(keys: Option<Keyring>) -> Self {
        Self {
            keys: keys.map(Arc::new),
        }
    }

    pub fn encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The key id new rows carry (0: stored in plaintext).
    pub fn key_id(&self) -> i64 {
        self.keys.as_ref().map_or(0, |k| i64::from(k.current_id()))
    }

    pub fn seal(&self, column: &str, plain: &str) -> Vec<u8> {
        match &self.keys {
            Some(k) => k.seal_str(column, plain),
            None => plain.as_bytes().to_vec(),
        }
    }

    /// Opens a value of a row sealed with `key_id`.
    pub fn open(&self, key_id: i64, column: &str, stored: &[u8]) -> anyhow::Result<String> {
        if key_id == 0 {
            return String::from_utf8(stored.to_vec())
                .with_context(|| format!("{column}: stored plaintext is not UTF-8"));
        }
        let Some(keys) = &self.keys else {
            bail!("{column}: value is encrypted (key {key_id}) but encryption is off");
        };
        keys.open_str(column, stored)
            .with_context(|| format!("cannot open {column}"))
    }

    /// The lookup hash new rows carry.
    pub fn lookup(&self, column: &str, value: &str) -> Vec<u8> {
        match &self.keys {
            Some(k) => k.lookup(column, value),
            None => plain_lookup(column, value),
        }
    }

    /// The HMACs of `value` under every key of the keyring, the current one last;
    /// none with encryption off (a plain lookup hash is no secret).
    pub fn keyed_lookups(&self, column: &str, value: &str) -> Vec<Vec<u8>> {
        self.keys
            .as_ref()
            .map(|k| k.lookups(column, value))
            .unwrap_or_default()
    }

    /// Every lookup hash a stored row may carry for `value`.
    pub fn lookups(&self, column: &str, value: &str) -> Vec<Vec<u8>> {
        let mut all = self
            .keys
            .as_ref()
            .map(|k| k.lookups(column, value))
            .unwrap_or_default();
        all.push(plain_lookup(column, value));
        all
    }
}

/// The lookup hash of rows written with encryption off: plain SHA-256 (a stable
/// key for the index, not a secret).
fn plain_lookup(column: &str, value: &str) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(column.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().to_vec()
}

/// The customer an identity's row names, looking under every key's hash (rows sealed
/// before a rotation finished carry an older one).
async fn find_identity(
    c: &mut sqlx::AnyConnection,
    sealer: &Sealer,
    identity: &Identity,
) -> anyhow::Result<Option<String>> {
    let kind = identity_kind_name(identity.kind);
    for lookup in sealer.lookups("identities.value", &identity.value) {
        let row = sqlx::query("SELECT customer_id FROM identities WHERE kind = $1 AND lookup = $2")
            .bind(kind)
            .bind(lookup)
            .fetch_optional(&mut *c)
            .await
            .context("cannot look up an identity")?;
        if let Some(row) = row {
            return Ok(Some(row.try_get(0)?));
        }
    }
    Ok(None)
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

pub(crate) async fn begin_write(
    pool: &AnyPool,
    backend: Backend,
) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
    .context("cannot begin a transaction")
}

/// The store, shared by the server's parts.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    sealer: Sealer,
    writes: mpsc::Sender<writer::Job>,
    slas: Arc<tickets::Slas>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("encrypted", &self.sealer.encrypted())
            .finish()
    }
}

/// A turn as stored, opened.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredTurn {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub speaker: String,
    pub channel: String,
    pub text: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub latency_us: Option<i64>,
}

/// A conversation's rows to write: the conversation and its new turns.
#[derive(Clone, Debug)]
pub struct TurnsWrite {
    pub conversation: String,
    pub channel: Channel,
    pub customer: String,
    pub call_id: Option<String>,
    pub started: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Sequence number of the first turn (its index in the conversation).
    pub first_seq: usize,
    pub turns: Vec<Turn>,
    /// How long the reply (the last turn) took, when it is one.
    pub latency_us: Option<i64>,
    /// The engine's state after these turns (a text conversation's): the write
    /// is then refused unless the store has exactly `first_seq` turns.
    pub state: Option<String>,
}

pub fn identity_kind_name(k: IdentityKind) -> &'static str {
    match k {
        IdentityKind::Phone => "phone",
        IdentityKind::Wechat => "wechat",
        IdentityKind::Web => "web",
        IdentityKind::App => "app",
        IdentityKind::Sms => "sms",
        IdentityKind::Wecom => "wecom",
    }
}

/// The identity kind stored under `name` (the inverse of [`identity_kind_name`]).
pub fn identity_kind_named(name: &str) -> Option<IdentityKind> {
    IdentityKind::ALL
        .into_iter()
        .find(|k| identity_kind_name(*k) == name)
}

pub fn speaker_name(s: Speaker) -> &'static str {
    match s {
        Speaker::Customer => "customer",
        Speaker::Bot => "bot",
        Speaker::Agent => "agent",
    }
}

/// A new random id with a prefix ("c" customers, ...).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 10]>()))
}

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates the database.
    pub async fn open(url: &str, keys: Option<Keyring>) -> anyhow::Result<Self> {
        drivers();
        let backend = Backend::of(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; synchronous stays FULL
                        // (sqlx's default), so a commit survives power loss too.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        // Erased rows are overwritten, not left in free pages.
                        sqlx::query("PRAGMA secure_delete = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot open the database {}", redact(url)))?;
        migrate::run(&pool, backend).await?;
        let sealer = Sealer::new(keys);
        let writes = writer::spawn(pool.clone(), backend, sealer.clone());
        Ok(Self {
            pool,
            backend,
            sealer,
            writes,
            slas: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Each queue's SLA, for tickets' due dates.
    pub fn slas(&self) -> &tickets::Slas {
        &self.slas
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// A transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a transaction that
    /// reads first and writes later would otherwise fail at once with "database is
    /// locked" when another process (a `kefu` command beside the server) committed
    /// in between.
    pub async fn begin_write(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        begin_write(&self.pool, self.backend).await
    }

    /// Queues a write and waits until it is committed.
    pub async fn write(&self, w: Write) -> anyhow::Result<writer::Done> {
        let (done, rx) = oneshot::channel();
        self.writes
            .send(writer::Job { write: w, done })
            .await
            .map_err(|_| anyhow::anyhow!("the store's writer has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the store's writer has stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// The customer behind an identity, if it is stored.
    pub async fn find_customer(&self, identity: &Identity) -> anyhow::Result<Option<String>> {
        let mut c = self
            .pool
            .acquire()
            .await
            .context("cannot reach the database")?;
        find_identity(&mut c, &self.sealer, identity).await
    }

    /// The customer behind an identity, created (with the identity) if new.
    pub async fn customer_for(&self, identity: &Identity) -> anyhow::Result<String> {
        if let Some(c) = self.find_customer(identity).await? {
            return Ok(c);
        }
        match self
            .write(Write::Identity {
                identity: identity.clone(),
                customer: None,
                at: Utc::now(),
            })
            .await?
        {
            writer::Done::Customer(c) => Ok(c),
            other => bail!("unexpected writer answer {other:?}"),
        }
    }

    /// Makes `identity` (and every identity of the customer it belonged to) part of
    /// `customer`.
    pub async fn link(&self, customer: &str, identity: &Identity) -> anyhow::Result<()> {
        self.write(Write::Identity {
            identity: identity.clone(),
            customer: Some(customer.to_string()),
            at: Utc::now(),
        })
        .await
        .map(|_| ())
    }

    /// Writes a conversation and its new turns; returns once they are committed:
    /// false when they were refused as made from a stale copy (see `TurnsWrite`).
    pub async fn record_turns(&self, w: TurnsWrite) -> anyhow::Result<bool> {
        Ok(!matches!(
            self.write(Write::Turns(w)).await?,
            writer::Done::Stale
        ))
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        self.write(Write::Audit {
            at: Utc::now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
        })
        .await
        .map(|_| ())
    }

    /// The stored turns of a conversation, in order.
    pub async fn turns(&self, conversation: &str) -> anyhow::Result<Vec<StoredTurn>> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, speaker, channel, text, intent, confidence, latency_us, key_id \
             FROM turns WHERE conversation_id = $1 ORDER BY seq",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await
        .context("cannot read turns")?;
        rows.iter().map(|r| self.turn_of(r)).collect()
    }

    fn turn_of(&self, r: &sqlx::any::AnyRow) -> anyhow::Result<StoredTurn> {
        let key_id: i64 = r.try_get("key_id")?;
        let text: Vec<u8> = r.try_get("text")?;
        Ok(StoredTurn {
            seq: r.try_get("seq")?,
            at: from_ms(r.try_get("at_ms")?),
            speaker: r.try_get("speaker")?,
            channel: r.try_get("channel")?,
            text: self.sealer.open(key_id, "turns.text", &text)?,
            intent: r.try_get("intent")?,
            confidence: r.try_get("confidence")?,
            latency_us: r.try_get("latency_us")?,
        })
    }

    /// The number of turns stored (all conversations).
    pub async fn turn_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM turns")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn customer_exists(&self, customer: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM customers WHERE id = $1")
            .bind(customer)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// A customer's conversations, oldest first.
    pub async fn conversations_of(&self, customer: &str) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM conversations WHERE customer_id = $1 ORDER BY started_ms, id",
        )
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    /// The identities stored for a customer, opened.
    pub async fn identities_of(&self, customer: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT kind, value, key_id FROM identities WHERE customer_id = $1 ORDER BY kind",
        )
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let value: Vec<u8> = r.try_get(1)?;
                Ok((
                    r.try_get(0)?,
                    self.sealer
                        .open(r.try_get(2)?, "identities.value", &value)?,
                ))
            })
            .collect()
    }

    /// A stored call record, opened: the record as JSON.
    pub async fn call(&self, call_id: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let Some(r) = sqlx::query("SELECT detail, key_id FROM calls WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let detail: Vec<u8> = r.try_get(0)?;
        let json = self.sealer.open(r.try_get(1)?, "calls.detail", &detail)?;
        Ok(Some(serde_json::from_str(&json)?))
    }

    /// Calls from a number (found by its lookup hash), newest first: call ids.
    pub async fn calls_from(&self, number: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for lookup in self.sealer.lookups("calls.caller", number) {
            let rows = sqlx::query(
                "SELECT call_id FROM calls WHERE caller_lookup = $1 ORDER BY invite_ms DESC",
            )
            .bind(lookup)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push(r.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// The audit log, oldest first: (at, actor, action, target, detail).
    pub async fn audit_log(&self) -> anyhow::Result<Vec<AuditEntry>> {
        let rows =
            sqlx::query("SELECT at_ms, actor, action, target, detail FROM audit_log ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: from_ms(r.try_get(0)?),
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Waits for queued writes and closes the pool.
    pub async fn close(&self) {
        // Answered once everything queued before it is committed.
        let _ = self.write(Write::Flush).await;
        self.pool.close().await;
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The conversation service as kefu runs it: on this store, with the agents'
/// center as its desk.
pub type ConversationService =
    crate::dialogue::service::Service<Store, std::sync::Arc<crate::agents::center::Center>>;

/// The store keeps what the conversation service changes.
impl crate::dialogue::service::Records for Store {
    async fn customer_for(&self, identity: &Identity) -> anyhow::Result<String> {
        Store::customer_for(self, identity).await
    }

    async fn find_customer(&self, identity: &Identity) -> anyhow::Result<Option<String>> {
        Store::find_customer(self, identity).await
    }

    async fn link(&self, customer: &str, identity: &Identity) -> anyhow::Result<()> {
        Store::link(self, customer, identity).await
    }

    async fn record(
        &self,
        a: &crate::dialogue::conversations::Appended,
        latency_us: Option<i64>,
    ) -> anyhow::Result<bool> {
        self.record_turns(TurnsWrite {
            conversation: a.conversation.clone(),
            channel: a.channel,
            customer: a.customer.clone(),
            call_id: None,
            started: a.created,
            updated: a.updated,
            first_seq: a.first_seq,
            turns: a.turns.clone(),
            latency_us,
            state: a.state.clone(),
        })
        .await
    }

    async fn load(&self, id: &str) -> anyhow::Result<Option<crate::dialogue::snapshot::Loaded>> {
        self.load_conversation(id).await
    }

    async fn recent(
        &self,
        channel: Channel,
        customer: &str,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Option<String>> {
        self.recent_conversation(channel, customer, since).await
    }

    async fn open_ticket(
        &self,
        customer: &str,
        about: crate::dialogue::service::TicketFor<'_>,
        queue: &str,
        subject: &str,
    ) -> anyhow::Result<()> {
        use crate::dialogue::service::TicketFor;
        let (conversation, call) = match about {
            TicketFor::Conversation(c) => (Some(c), None),
            TicketFor::Call(c) => (None, Some(c)),
        };
        Store::open_ticket(self, customer, conversation, call, queue, subject)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact("postgres://kefu:s3cret@db:5432/kefu"),
            "postgres://kefu:***@db:5432/kefu"
        );
        assert_eq!(redact("sqlite://data/kefu.db"), "sqlite://data/kefu.db");
        assert!(Backend::of("mysql://x").is_err());
    }
}
