//! What the nodes of a cluster share through PostgreSQL (`crate::cluster` uses
//! it): heartbeats, agents' phone bindings and availability, which node holds
//! which agent, and the notifications (LISTEN/NOTIFY) that tell the other nodes
//! at once. A node that stops beating is gone: its claims count for nothing.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Store};
use crate::agents::center::Presence;

/// The channel nodes notify each other on.
pub const CHANNEL: &str = "kefu_cluster";

/// A node not seen for this long is gone, and its holds and waiting items with it.
pub const GONE_AFTER_MS: i64 = 5_000;

/// The earliest heartbeat of a node still counted as alive.
pub fn live_since() -> i64 {
    now_ms() - GONE_AFTER_MS
}

/// An item waiting in a node's queue, as the node wrote it down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingRow {
    pub item: String,
    pub queue: String,
    pub node: String,
    pub channel: String,
    pub reason: String,
    pub enqueued_ms: i64,
}

fn waiting_row(r: &sqlx::any::AnyRow) -> anyhow::Result<WaitingRow> {
    Ok(WaitingRow {
        item: r.try_get(0)?,
        queue: r.try_get(1)?,
        node: r.try_get(2)?,
        channel: r.try_get(3)?,
        reason: r.try_get(4)?,
        enqueued_ms: r.try_get(5)?,
    })
}

/// Now, in wall-clock milliseconds (nodes are different machines).
pub fn now_ms() -> i64 {
    super::ms(chrono::Utc::now())
}

impl Store {
    /// This node is alive now.
    pub async fn heartbeat(&self, node: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO cluster_nodes (node, seen_ms) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(node)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .context("cannot record the node's heartbeat")?;
        Ok(())
    }

    /// An extension's phone bindings as registered through `node` (JSON).
    pub async fn save_phones(
        &self,
        extension: &str,
        bindings: &str,
        node: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO agent_phones (extension, bindings, node, changed_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (extension) DO UPDATE SET bindings = excluded.bindings, \
             node = excluded.node, changed_ms = excluded.changed_ms",
        )
        .bind(extension)
        .bind(bindings)
        .bind(node)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .context("cannot record a phone's registration")?;
        Ok(())
    }

    /// Every extension's bindings (JSON).
    pub async fn phones(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT extension, bindings FROM agent_phones")
            .fetch_all(self.pool())
            .await
            .context("cannot read the phones' registrations")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// An agent's availability as last set on any node.
    pub async fn save_presence(&self, p: &Presence) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO agent_presence (agent, available, queues, skills, changed_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent) DO UPDATE SET \
             available = excluded.available, queues = excluded.queues, \
             skills = excluded.skills, changed_ms = excluded.changed_ms",
        )
        .bind(&p.agent)
        .bind(i64::from(p.available))
        .bind(serde_json::to_string(&p.queues)?)
        .bind(serde_json::to_string(&p.skills)?)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .context("cannot record an agent's availability")?;
        Ok(())
    }

    pub async fn presences(&self) -> anyhow::Result<Vec<Presence>> {
        let rows = sqlx::query("SELECT agent, available, queues, skills FROM agent_presence")
            .fetch_all(self.pool())
            .await
            .context("cannot read the agents' availability")?;
        rows.iter()
            .map(|r| {
                Ok(Presence {
                    agent: r.try_get(0)?,
                    available: r.try_get::<i64, _>(1)? != 0,
                    queues: serde_json::from_str(&r.try_get::<String, _>(2)?)?,
                    skills: serde_json::from_str(&r.try_get::<String, _>(3)?)?,
                })
            })
            .collect()
    }

    /// `node` takes the agent unless a node seen since `live_since_ms` holds
    /// them; true when it has them (a node holding them already keeps them).
    pub async fn claim_agent(
        &self,
        agent: &str,
        node: &str,
        live_since_ms: i64,
    ) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "INSERT INTO agent_claims (agent, node, since_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (agent) DO UPDATE SET node = excluded.node, since_ms = excluded.since_ms \
             WHERE agent_claims.node = excluded.node OR NOT EXISTS (\
                 SELECT 1 FROM cluster_nodes n WHERE n.node = agent_claims.node AND n.seen_ms > $4) \
             RETURNING node",
        )
        .bind(agent)
        .bind(node)
        .bind(now_ms())
        .bind(live_since_ms)
        .fetch_optional(self.pool())
        .await
        .context("cannot claim an agent")?;
        Ok(row.is_some())
    }

    /// `node` lets the agent go (nothing if another node holds them).
    pub async fn release_agent(&self, agent: &str, node: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM agent_claims WHERE agent = $1 AND node = $2")
            .bind(agent)
            .bind(node)
            .execute(self.pool())
            .await
            .context("cannot release an agent")?;
        Ok(())
    }

    /// Agents held by nodes seen since `live_since_ms`: (agent, node).
    pub async fn held_agents(&self, live_since_ms: i64) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT c.agent, c.node FROM agent_claims c JOIN cluster_nodes n ON n.node = c.node \
             WHERE n.seen_ms > $1",
        )
        .bind(live_since_ms)
        .fetch_all(self.pool())
        .await
        .context("cannot read which node holds which agent")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// What waits in `node`'s queues now (replacing what it wrote before).
    pub async fn write_waiting(&self, node: &str, rows: &[WaitingRow]) -> anyhow::Result<()> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .context("cannot begin a transaction")?;
        sqlx::query("DELETE FROM queue_waiting WHERE node = $1")
            .bind(node)
            .execute(&mut *tx)
            .await
            .context("cannot clear the node's waiting items")?;
        for r in rows {
            sqlx::query(
                "INSERT INTO queue_waiting (item, queue, node, channel, reason, enqueued_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (item) DO UPDATE SET \
                 queue = excluded.queue, node = excluded.node, channel = excluded.channel, \
                 reason = excluded.reason, enqueued_ms = excluded.enqueued_ms",
            )
            .bind(&r.item)
            .bind(&r.queue)
            .bind(node)
            .bind(&r.channel)
            .bind(&r.reason)
            .bind(r.enqueued_ms)
            .execute(&mut *tx)
            .await
            .context("cannot write a waiting item")?;
        }
        tx.commit()
            .await
            .context("cannot write the waiting items")?;
        Ok(())
    }

    /// What waits on the other live nodes, oldest first.
    pub async fn waiting_elsewhere(&self, node: &str) -> anyhow::Result<Vec<WaitingRow>> {
        let rows = sqlx::query(
            "SELECT w.item, w.queue, w.node, w.channel, w.reason, w.enqueued_ms \
             FROM queue_waiting w JOIN cluster_nodes n ON n.node = w.node \
             WHERE w.node <> $1 AND n.seen_ms > $2 ORDER BY w.enqueued_ms",
        )
        .bind(node)
        .bind(live_since())
        .fetch_all(self.pool())
        .await
        .context("cannot read the other nodes' waiting items")?;
        rows.iter().map(waiting_row).collect()
    }

    /// Takes the items of nodes that stopped beating (each once, whichever
    /// node asks first), and `own`'s from before it started again.
    pub async fn take_orphans(&self, own: Option<&str>) -> anyhow::Result<Vec<WaitingRow>> {
        let rows = sqlx::query(
            "DELETE FROM queue_waiting WHERE node = $2 OR node NOT IN \
             (SELECT node FROM cluster_nodes WHERE seen_ms > $1) \
             RETURNING item, queue, node, channel, reason, enqueued_ms",
        )
        .bind(live_since())
        .bind(own.unwrap_or(""))
        .fetch_all(self.pool())
        .await
        .context("cannot take a dead node's waiting items")?;
        rows.iter().map(waiting_row).collect()
    }

    /// Tells every node listening on [`CHANNEL`] (PostgreSQL only).
    pub async fn notify(&self, payload: &str) -> anyhow::Result<()> {
        if self.backend != Backend::Postgres {
            anyhow::bail!("a cluster needs PostgreSQL");
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(self.pool())
            .await
            .context("cannot notify the cluster")?;
        Ok(())
    }
}

/// A connection listening on [`CHANNEL`] (sqlx reconnects it when it drops;
/// what was sent meanwhile is lost, so nodes also read the tables).
pub async fn listen(url: &str) -> anyhow::Result<sqlx::postgres::PgListener> {
    let mut listener = sqlx::postgres::PgListener::connect(url)
        .await
        .context("cannot connect to PostgreSQL to listen to the cluster")?;
    listener
        .listen(CHANNEL)
        .await
        .context("cannot listen to the cluster")?;
    Ok(listener)
}
