-- kefu's store, SQLite dialect (the PostgreSQL twin is ../postgres/0001_init.sql;
-- keep the two in step). Times are Unix milliseconds. Columns of type BLOB named
-- like personal data hold values sealed by store::crypto (or UTF-8 with encryption
-- off); `key_id` names the key that sealed the row's values (0: not encrypted);
-- `*_lookup` columns hold keyed hashes for finding rows by value.

CREATE TABLE customers (
    id          TEXT PRIMARY KEY,
    name        BLOB,
    key_id      INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE identities (
    kind        TEXT NOT NULL,
    lookup      BLOB NOT NULL,
    value       BLOB NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    key_id      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, lookup)
);
CREATE INDEX identities_customer ON identities(customer_id);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    call_id     TEXT,
    started_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX conversations_customer ON conversations(customer_id);

CREATE TABLE turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    speaker     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    text        BLOB NOT NULL,
    intent      TEXT,
    confidence  REAL,
    latency_us  INTEGER,
    key_id      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX turns_at ON turns(at_ms);

CREATE TABLE calls (
    call_id     TEXT PRIMARY KEY,
    caller      BLOB NOT NULL,
    caller_lookup BLOB NOT NULL,
    callee      BLOB NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    trunk       TEXT,
    transport   TEXT NOT NULL,
    dialplan    TEXT NOT NULL,
    dialplan_version TEXT NOT NULL,
    invite_ms   INTEGER,
    answer_ms   INTEGER,
    end_ms      INTEGER,
    path        TEXT NOT NULL,
    end_reason  TEXT NOT NULL,
    transfer    TEXT,
    detail      BLOB NOT NULL,
    -- When retention removed the words and keys from `detail`.
    purged_ms   INTEGER,
    key_id      INTEGER NOT NULL
);
CREATE INDEX calls_caller ON calls(caller_lookup);
CREATE INDEX calls_invite ON calls(invite_ms);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    conversation_id TEXT REFERENCES conversations(id),
    queue       TEXT,
    status      TEXT NOT NULL,
    assignee    TEXT,
    subject     BLOB NOT NULL,
    body        BLOB NOT NULL,
    key_id      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    password_hash TEXT,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    user_id     TEXT REFERENCES users(id),
    display_name TEXT NOT NULL,
    queues      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
-- Append-only: rows can be added, never changed or removed.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE kb_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL,
    loaded_ms   INTEGER NOT NULL,
    summary     TEXT NOT NULL
);

CREATE TABLE dialplan_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL,
    loaded_ms   INTEGER NOT NULL,
    summary     TEXT NOT NULL
);
