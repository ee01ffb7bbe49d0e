-- kefu's store, PostgreSQL dialect (the SQLite twin is ../sqlite/0001_init.sql;
-- keep the two in step). Times are Unix milliseconds. Columns of type BYTEA named
-- like personal data hold values sealed by store::crypto (or UTF-8 with encryption
-- off); `key_id` names the key that sealed the row's values (0: not encrypted);
-- `*_lookup` columns hold keyed hashes for finding rows by value.

CREATE TABLE customers (
    id          TEXT PRIMARY KEY,
    name        BYTEA,
    key_id      BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE identities (
    kind        TEXT NOT NULL,
    lookup      BYTEA NOT NULL,
    value       BYTEA NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    key_id      BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (kind, lookup)
);
CREATE INDEX identities_customer ON identities(customer_id);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    call_id     TEXT,
    started_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX conversations_customer ON conversations(customer_id);

CREATE TABLE turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    speaker     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    text        BYTEA NOT NULL,
    intent      TEXT,
    confidence  DOUBLE PRECISION,
    latency_us  BIGINT,
    key_id      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX turns_at ON turns(at_ms);

CREATE TABLE calls (
    call_id     TEXT PRIMARY KEY,
    caller      BYTEA NOT NULL,
    caller_lookup BYTEA NOT NULL,
    callee      BYTEA NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    trunk       TEXT,
    transport   TEXT NOT NULL,
    dialplan    TEXT NOT NULL,
    dialplan_version TEXT NOT NULL,
    invite_ms   BIGINT,
    answer_ms   BIGINT,
    end_ms      BIGINT,
    path        TEXT NOT NULL,
    end_reason  TEXT NOT NULL,
    transfer    TEXT,
    detail      BYTEA NOT NULL,
    -- When retention removed the words and keys from `detail`.
    purged_ms   BIGINT,
    key_id      BIGINT NOT NULL
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
    subject     BYTEA NOT NULL,
    body        BYTEA NOT NULL,
    key_id      BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    password_hash TEXT,
    disabled    BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    user_id     TEXT REFERENCES users(id),
    display_name TEXT NOT NULL,
    queues      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
-- Append-only: rows can be added, never changed or removed.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE kb_versions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version     TEXT NOT NULL,
    loaded_ms   BIGINT NOT NULL,
    summary     TEXT NOT NULL
);

CREATE TABLE dialplan_versions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version     TEXT NOT NULL,
    loaded_ms   BIGINT NOT NULL,
    summary     TEXT NOT NULL
);
