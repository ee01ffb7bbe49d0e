-- Warm transfers: a call's ticket names the call (a call has no conversation
-- unless its plan asks questions), and recordings (voicemail messages, bridged
-- calls) are kept sealed, one WAV per row.
ALTER TABLE tickets ADD COLUMN call_id TEXT;
-- An agent reached at a fixed SIP URI (a desk phone on the PBX, through the
-- trunk) rather than a phone that registers.
ALTER TABLE agents ADD COLUMN contact_uri TEXT;
CREATE INDEX tickets_call ON tickets(call_id);
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    kind        TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    audio       BYTEA NOT NULL,
    key_id      BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX recordings_call ON recordings(call_id);
CREATE INDEX recordings_customer ON recordings(customer_id);
