-- Signed-in web sessions: the cookie's value is never stored, only its SHA-256.
CREATE TABLE sessions (
    key_hash    BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    csrf        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX tickets_assignee ON tickets(assignee, updated_ms);
