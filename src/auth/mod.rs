//! Who may do what. Five roles (`Role`), a permission for every HTTP route
//! (`Permission`, declared where the route is added: `http::routes`), and the one
//! table between them (`Role::allows`). People sign in with a password (argon2,
//! `password`) and get a session cookie with a CSRF token; programs use API tokens.
//! Failed sign-ins are throttled per name and per address (`throttle`).

pub mod password;
pub mod throttle;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::Serialize;

/// A role, given to a user (a person) or an API token (a program).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Queues, reports, call records and recordings; their own tickets.
    Supervisor,
    /// Their own conversations and tickets.
    Agent,
    /// Read-only: reports and the audit log.
    Auditor,
    /// A program: the channel API and the knowledge base.
    Integrator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Supervisor,
        Role::Agent,
        Role::Auditor,
        Role::Integrator,
    ];

    /// Roles an API token may have: programs integrate or read reports; people
    /// (admins, supervisors, agents) sign in.
    pub fn token_may_have(self) -> bool {
        matches!(self, Role::Integrator | Role::Auditor)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Integrator => "integrator",
        }
    }

    /// Whether this role has `p`. The one place the role table lives.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        use Role as R;
        match p {
            P::Public | P::SignedIn => true,
            P::Channels | P::KbWrite | P::Speech => matches!(self, R::Admin | R::Integrator),
            P::KbRead => matches!(self, R::Admin | R::Supervisor | R::Integrator),
            P::KbDraft => matches!(self, R::Admin | R::Supervisor),
            P::Reports => matches!(self, R::Admin | R::Supervisor | R::Auditor),
            P::CallRecords | P::Queues => matches!(self, R::Admin | R::Supervisor),
            P::OwnWork | P::Tickets => matches!(self, R::Admin | R::Supervisor | R::Agent),
            P::AuditLog => matches!(self, R::Admin | R::Auditor),
            P::Users | P::CustomerData => self == R::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}: one of admin, supervisor, agent, auditor, integrator")
            })
    }
}

/// What a route needs. Every route declares one (`http::routes::Routes::add`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anyone: the customer-facing channels (each checks its own proof: a
    /// conversation id, a WeChat signature), health checks, sign-in.
    Public,
    /// Any signed-in user or token: who am I, sign out, change my password.
    SignedIn,
    /// The app/integrator channel API: conversations, messages, customer links.
    Channels,
    /// Reading the knowledge base: its intents, trying a question.
    KbRead,
    /// Changing the knowledge base.
    KbWrite,
    /// Drafting a knowledge-base entry from unanswered questions (a draft is not
    /// live until someone with `KbWrite` adds it).
    KbDraft,
    /// Aggregate reports (no personal data).
    Reports,
    /// Call records with the caller's number, digits and words.
    CallRecords,
    /// The signed-in user's own tickets and conversations (and, for an agent,
    /// their state and offers).
    OwnWork,
    /// The queues: who waits, which agents are free.
    Queues,
    /// Reading the audit log and the route permission table.
    AuditLog,
    /// Users and API tokens.
    Users,
    /// Exporting or erasing one customer's data.
    CustomerData,
    /// The service desk's tickets: the list and search, notes, changes (an agent
    /// changes their own and takes unassigned ones; supervisors assign anyone's).
    Tickets,
    /// Recognition and synthesis as a service (`/v1/audio/...`), for other
    /// kefu nodes and programs.
    Speech,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::Public,
        Permission::SignedIn,
        Permission::Channels,
        Permission::KbRead,
        Permission::KbWrite,
        Permission::KbDraft,
        Permission::Reports,
        Permission::CallRecords,
        Permission::OwnWork,
        Permission::Queues,
        Permission::AuditLog,
        Permission::Users,
        Permission::CustomerData,
        Permission::Tickets,
        Permission::Speech,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::SignedIn => "signed_in",
            Permission::Channels => "channels",
            Permission::KbRead => "kb_read",
            Permission::KbWrite => "kb_write",
            Permission::KbDraft => "kb_draft",
            Permission::Reports => "reports",
            Permission::CallRecords => "call_records",
            Permission::OwnWork => "own_work",
            Permission::Queues => "queues",
            Permission::AuditLog => "audit_log",
            Permission::Users => "users",
            Permission::CustomerData => "customer_data",
            Permission::Tickets => "tickets",
            Permission::Speech => "speech",
        }
    }
}

/// A new secret: 256 random bits, URL-safe base64 (session cookies, CSRF tokens,
/// API tokens, generated passwords use fewer).
pub fn secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether a secret someone sent equals the one expected. Compared as SHA-256
/// digests, so the time taken says nothing about how much of it was right.
pub fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    // Hashing first makes the lengths equal; the comparison takes the same time
    // wherever the digests differ.
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

/// A new API token: "kefu_" and a secret, so it is recognisable in a leak scan.
pub fn new_token() -> String {
    format!("kefu_{}", secret())
}

/// How long an API token works unless asked otherwise, and at most (days).
pub const TOKEN_DAYS: u32 = 90;
pub const TOKEN_MAX_DAYS: u32 = 366;

/// When a token made now for `days` (default [`TOKEN_DAYS`]) stops working.
pub fn token_expiry(days: Option<u32>) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let days = days.unwrap_or(TOKEN_DAYS);
    if !(1..=TOKEN_MAX_DAYS).contains(&days) {
        return Err(format!(
            "a token works for 1 to {TOKEN_MAX_DAYS} days, not {days}; make a new one before it expires"
        ));
    }
    Ok(chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
}

/// A name a user may have: 1 to 64 letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("unknown role"));
    }

    #[test]
    fn only_admin_manages_users() {
        for r in Role::ALL {
            assert_eq!(r.allows(Permission::Users), r == Role::Admin);
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("li.wei@example").is_ok());
        assert!(check_name("王芳").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn secrets_differ() {
        assert_ne!(secret(), secret());
        assert!(new_token().starts_with("kefu_"));
        assert_eq!(secret().len(), 43);
    }
}
