-- Customer satisfaction: one rating (1 to 5) per conversation or call, given
-- once (the chat widget's stars, a dialplan's `rate` node). No personal data:
-- the agent and queue it counts for are the conversation's queue stays.
CREATE TABLE ratings (
    conversation TEXT PRIMARY KEY,
    channel      TEXT NOT NULL,
    score        BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    at_ms        BIGINT NOT NULL
);
CREATE INDEX ratings_at ON ratings(at_ms);
