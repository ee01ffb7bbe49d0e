-- A text conversation goes on from any node, and after a restart: `said` is the
-- number of turns stored (the next turn's sequence number; a write that expected
-- another count was made from a stale copy and is refused), `state` the dialogue
-- engine's state after the last turn (sealed JSON: a slot's values are the
-- customer's words), `key_id` the key that sealed it (none without a state).
ALTER TABLE conversations ADD COLUMN said INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN state BLOB;
ALTER TABLE conversations ADD COLUMN key_id INTEGER;
UPDATE conversations SET said = COALESCE((SELECT MAX(seq) + 1 FROM turns WHERE turns.conversation_id = conversations.id), 0);
-- Secrets every node on this database shares and that outlive a restart (the
-- web chat customers' keys when the store is not encrypted), made on first use.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
