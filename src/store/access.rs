//! Who may use kefu: users (people, with argon2 password hashes), API tokens
//! (programs; only a SHA-256 of the token is kept) and web sessions (only a SHA-256
//! of the cookie is kept). Every change is committed together with its audit-log
//! entry, so the log cannot miss a change that happened.
//!
//! These writes are rare and small, so they take their own transaction instead of
//! the writer's queue; SQLite's busy timeout orders them with the writer's commits.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, from_ms, ms, new_id};

/// A user as stored (without the password hash).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created: DateTime<Utc>,
}

/// An API token as stored (the token itself is only shown once, when created).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created: DateTime<Utc>,
    pub revoked: Option<DateTime<Utc>>,
    /// After this the token no longer works (a new one must be made).
    pub expires: DateTime<Utc>,
}

/// A live web session: whose it is and its CSRF token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// Who did something, for the audit log: "user:NAME", "token:NAME" or "cli".
#[derive(Clone, Debug)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub detail: String,
}

/// What changes about a user; `None` leaves it as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChange {
    pub role: Option<String>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
}

/// SHA-256 of a secret (a session cookie or an API token): what the store keeps.
/// These secrets are 256 random bits, so a plain hash is as strong as a slow one.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn user_of(r: &sqlx::any::AnyRow) -> anyhow::Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created: from_ms(r.try_get("created_ms")?),
    })
}

fn token_of(r: &sqlx::any::AnyRow) -> anyhow::Result<Token> {
    Ok(Token {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        created: from_ms(r.try_get("created_ms")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_ms")?.map(from_ms),
        expires: from_ms(r.try_get::<Option<i64>, _>("expires_ms")?.unwrap_or(0)),
    })
}

pub(super) async fn append_audit(
    c: &mut sqlx::AnyConnection,
    at: DateTime<Utc>,
    a: &Audit,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ms(at))
    .bind(a.actor.as_str())
    .bind(a.action)
    .bind(a.target.as_str())
    .bind(a.detail.as_str())
    .execute(c)
    .await
    .context("cannot append to the audit log")?;
    Ok(())
}

/// Formatted into queries (hence `AssertSqlSafe`): a constant, never input.
const USER_COLUMNS: &str = "id, name, role, disabled, created_ms";

impl Store {
    /// Adds a user; None if the name is taken.
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        audit: Audit,
    ) -> anyhow::Result<Option<User>> {
        let now = Utc::now();
        let id = new_id("u");
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO users (id, name, role, password_hash, disabled, created_ms) VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("cannot add user {name:?}"))?;
        append_audit(&mut tx, now, &audit).await?;
        tx.commit().await?;
        Ok(Some(User {
            id,
            name: name.into(),
            role: role.into(),
            disabled: false,
            created: from_ms(ms(now)),
        }))
    }

    /// Changes a user; a new password, role or disabling ends their sessions.
    /// Returns the user as changed, or None if there is no such user.
    pub async fn change_user(
        &self,
        name: &str,
        change: &UserChange,
        audit: Audit,
    ) -> anyhow::Result<Option<User>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let mut user = user_of(&row)?;
        if let Some(role) = &change.role {
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await?;
            user.role = role.clone();
        }
        if let Some(hash) = &change.password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash.as_str())
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(disabled) = change.disabled {
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(i64::from(disabled))
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await?;
            user.disabled = disabled;
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.id.as_str())
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, Utc::now(), &audit).await?;
        tx.commit()
            .await
            .with_context(|| format!("cannot change user {name:?}"))?;
        Ok(Some(user))
    }

    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name"
        )))
        .fetch_all(self.pool())
        .await
        .context("cannot read users")?;
        rows.iter().map(user_of).collect()
    }

    /// A user and their password hash, by name.
    pub async fn user_with_hash(&self, name: &str) -> anyhow::Result<Option<(User, String)>> {
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .context("cannot read users")?
        else {
            return Ok(None);
        };
        let hash: Option<String> = r.try_get("password_hash")?;
        Ok(Some((user_of(&r)?, hash.unwrap_or_default())))
    }

    /// Stores a new session for `user` under the hash of its cookie value; expired
    /// sessions are swept at the same time.
    pub async fn add_session(
        &self,
        key: &str,
        user: &User,
        csrf: &str,
        expires: DateTime<Utc>,
        audit: Audit,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (key_hash, user_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_hash(key))
        .bind(user.id.as_str())
        .bind(csrf)
        .bind(ms(now))
        .bind(ms(expires))
        .execute(&mut *tx)
        .await?;
        append_audit(&mut tx, now, &audit).await?;
        tx.commit().await.context("cannot store the session")
    }

    /// The live session a cookie value names: not expired, its user not disabled.
    pub async fn session(&self, key: &str) -> anyhow::Result<Option<Session>> {
        let Some(r) = sqlx::query(
            "SELECT u.id, u.name, u.role, u.disabled, u.created_ms, s.csrf, s.expires_ms \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.key_hash = $1 AND s.expires_ms > $2 AND u.disabled = 0",
        )
        .bind(secret_hash(key))
        .bind(ms(Utc::now()))
        .fetch_optional(self.pool())
        .await
        .context("cannot read sessions")?
        else {
            return Ok(None);
        };
        Ok(Some(Session {
            user: user_of(&r)?,
            csrf: r.try_get("csrf")?,
            expires: from_ms(r.try_get("expires_ms")?),
        }))
    }

    pub async fn end_session(&self, key: &str, audit: Audit) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE key_hash = $1")
            .bind(secret_hash(key))
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, Utc::now(), &audit).await?;
        tx.commit().await.context("cannot end the session")
    }

    /// Stores a new API token (its hash) with a role, working until `expires`.
    pub async fn add_token(
        &self,
        token: &str,
        name: &str,
        role: &str,
        expires: DateTime<Utc>,
        audit: Audit,
    ) -> anyhow::Result<Token> {
        let now = Utc::now();
        let id = new_id("t");
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(role)
        .bind(secret_hash(token))
        .bind(ms(now))
        .bind(ms(expires))
        .execute(&mut *tx)
        .await
        .context("cannot store the token")?;
        append_audit(&mut tx, now, &audit).await?;
        tx.commit().await?;
        Ok(Token {
            id,
            name: name.into(),
            role: role.into(),
            created: from_ms(ms(now)),
            revoked: None,
            expires: from_ms(ms(expires)),
        })
    }

    /// Revokes a token; false if there is no such live token.
    pub async fn revoke_token(&self, id: &str, audit: Audit) -> anyhow::Result<bool> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        append_audit(&mut tx, now, &audit).await?;
        tx.commit().await.context("cannot revoke the token")?;
        Ok(true)
    }

    pub async fn tokens(&self) -> anyhow::Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_ms, revoked_ms, expires_ms FROM api_tokens \
             ORDER BY created_ms, id",
        )
        .fetch_all(self.pool())
        .await
        .context("cannot read tokens")?;
        rows.iter().map(token_of).collect()
    }

    /// The live token a bearer value names: neither revoked nor expired.
    pub async fn token(&self, token: &str) -> anyhow::Result<Option<Token>> {
        let r = sqlx::query(
            "SELECT id, name, role, created_ms, revoked_ms, expires_ms FROM api_tokens \
             WHERE token_hash = $1 AND revoked_ms IS NULL AND expires_ms > $2",
        )
        .bind(secret_hash(token))
        .bind(ms(Utc::now()))
        .fetch_optional(self.pool())
        .await
        .context("cannot read tokens")?;
        r.as_ref().map(token_of).transpose()
    }
}
