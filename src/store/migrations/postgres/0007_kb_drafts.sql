-- Knowledge-base drafts made from customers' unanswered questions: their example
-- phrasings are customers' words, so they are sealed here like turns (they used to
-- be files in the knowledge-base directory).
CREATE TABLE kb_drafts (
    file        TEXT PRIMARY KEY,
    text        BYTEA NOT NULL,
    key_id      BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);
