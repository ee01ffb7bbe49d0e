-- Analytics (no personal data): every stay in an agent queue (a hand-over: why,
-- how long the customer waited, who took it, how it ended), and how each caller
-- used the menu (keys pressed, utterances recognised, the recognizer's
-- confidence per utterance as a JSON array).
CREATE TABLE queue_stays (
    item        TEXT NOT NULL,
    queue       TEXT NOT NULL,
    channel     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    agent       TEXT,
    enqueued_ms BIGINT NOT NULL,
    answered_ms BIGINT,
    ended_ms    BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (item, enqueued_ms)
);
CREATE INDEX queue_stays_enqueued ON queue_stays(enqueued_ms);
ALTER TABLE calls ADD COLUMN keys BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN utterances BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN asr_confidence TEXT NOT NULL DEFAULT '[]';
CREATE INDEX conversations_started ON conversations(started_ms);
