//! Agents as stored: a display name, an extension their phone registers as, the
//! queues they serve and their skills, and their phone's digest HA1s (sealed).

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::access::Audit;
use super::{Store, from_ms, ms, new_id};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub extension: String,
    pub queues: Vec<String>,
    pub skills: Vec<String>,
    /// The user who signs in to the desk as this agent, if any.
    pub user_id: Option<String>,
    /// Where the agent is called when their phone has not registered (a SIP URI).
    pub contact_uri: Option<String>,
    pub created: DateTime<Utc>,
}

/// A new agent.
#[derive(Clone, Debug)]
pub struct NewAgent {
    pub name: String,
    pub extension: String,
    pub queues: Vec<String>,
    pub skills: Vec<String>,
    pub user_id: Option<String>,
    pub contact_uri: Option<String>,
    /// H(extension:realm:password), SHA-256 and MD5.
    pub ha1_sha256: String,
    pub ha1_md5: String,
}

/// A comma-separated list (queues, skills), trimmed, without empty entries.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn agent_of(r: &sqlx::any::AnyRow) -> anyhow::Result<Agent> {
    Ok(Agent {
        id: r.try_get("id")?,
        name: r.try_get("display_name")?,
        extension: r.try_get("extension")?,
        queues: split_list(&r.try_get::<String, _>("queues")?),
        skills: split_list(&r.try_get::<String, _>("skills")?),
        user_id: r.try_get("user_id")?,
        contact_uri: r.try_get("contact_uri")?,
        created: from_ms(r.try_get("created_ms")?),
    })
}

/// Formatted into queries (hence `AssertSqlSafe`): a constant, never input.
const COLUMNS: &str =
    "id, display_name, extension, queues, skills, user_id, contact_uri, created_ms";

impl Store {
    pub async fn add_agent(&self, a: &NewAgent, audit: Audit) -> anyhow::Result<Agent> {
        let now = Utc::now();
        let id = new_id("a");
        let s = self.sealer();
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT 1 FROM agents WHERE extension = $1")
            .bind(a.extension.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            bail!("extension {} is taken", a.extension);
        }
        sqlx::query(
            "INSERT INTO agents (id, user_id, display_name, queues, created_ms, extension, skills, \
             ha1_sha256, ha1_md5, key_id, contact_uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id.as_str())
        .bind(a.user_id.as_deref())
        .bind(a.name.as_str())
        .bind(a.queues.join(","))
        .bind(ms(now))
        .bind(a.extension.as_str())
        .bind(a.skills.join(","))
        .bind(s.seal("agents.ha1_sha256", &a.ha1_sha256))
        .bind(s.seal("agents.ha1_md5", &a.ha1_md5))
        .bind(s.key_id())
        .bind(a.contact_uri.as_deref())
        .execute(&mut *tx)
        .await
        .context("cannot add the agent")?;
        super::access::append_audit(&mut tx, now, &audit).await?;
        tx.commit().await?;
        Ok(Agent {
            id,
            name: a.name.clone(),
            extension: a.extension.clone(),
            queues: a.queues.clone(),
            skills: a.skills.clone(),
            user_id: a.user_id.clone(),
            contact_uri: a.contact_uri.clone(),
            created: from_ms(ms(now)),
        })
    }

    pub async fn agents(&self) -> anyhow::Result<Vec<Agent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE extension IS NOT NULL ORDER BY extension"
        )))
        .fetch_all(self.pool())
        .await
        .context("cannot read agents")?;
        rows.iter().map(agent_of).collect()
    }

    /// The agent registering as `extension` and its HA1 for the algorithm
    /// ("sha256" or "md5"), opened.
    pub async fn agent_secret(
        &self,
        extension: &str,
        algorithm: &str,
    ) -> anyhow::Result<Option<(Agent, String)>> {
        let column = match algorithm {
            "sha256" => "ha1_sha256",
            "md5" => "ha1_md5",
            other => bail!("no HA1 is kept for {other}"),
        };
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {column} AS ha1, key_id FROM agents WHERE extension = $1"
        )))
        .bind(extension)
        .fetch_optional(self.pool())
        .await
        .context("cannot read agents")?
        else {
            return Ok(None);
        };
        let sealed: Option<Vec<u8>> = r.try_get("ha1")?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let ha1 = self
            .sealer()
            .open(r.try_get("key_id")?, &format!("agents.{column}"), &sealed)?;
        Ok(Some((agent_of(&r)?, ha1)))
    }
}

impl Store {
    /// The agent a signed-in user works as.
    pub async fn agent_of_user(&self, user_id: &str) -> anyhow::Result<Option<Agent>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE user_id = $1 AND extension IS NOT NULL"
        )))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("cannot read agents")?;
        r.as_ref().map(agent_of).transpose()
    }

    /// The agent with this id.
    pub async fn agent_by_id(&self, id: &str) -> anyhow::Result<Option<Agent>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1 AND extension IS NOT NULL"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .context("cannot read agents")?;
        r.as_ref().map(agent_of).transpose()
    }
}
