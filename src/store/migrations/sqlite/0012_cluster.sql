-- (A cluster needs PostgreSQL; SQLite has the tables so both schemas stay alike.)
-- Several kefu nodes as one contact center. `cluster_nodes`: each node's
-- heartbeat (wall-clock ms); a node not seen for a few seconds is gone, and so
-- are its claims. `agent_phones`: where each agent's phones registered, through
-- whichever node (the bindings as JSON, expiries in wall-clock ms), so every
-- node can ring them. `agent_presence`: who is available, as last set on any
-- node. `agent_claims`: the node that holds an agent now (ringing them, or on
-- its call), so no other node rings them meanwhile.
CREATE TABLE cluster_nodes (
    node     TEXT PRIMARY KEY,
    seen_ms  INTEGER NOT NULL
);
CREATE TABLE agent_phones (
    extension   TEXT PRIMARY KEY,
    bindings    TEXT NOT NULL,
    node        TEXT NOT NULL,
    changed_ms  INTEGER NOT NULL
);
CREATE TABLE agent_presence (
    agent       TEXT PRIMARY KEY,
    available   INTEGER NOT NULL,
    queues      TEXT NOT NULL,
    skills      TEXT NOT NULL,
    changed_ms  INTEGER NOT NULL
);
CREATE TABLE agent_claims (
    agent     TEXT PRIMARY KEY,
    node      TEXT NOT NULL,
    since_ms  INTEGER NOT NULL
);
-- The callers and chats waiting in each node's queues, as the node last wrote
-- them: the supervisors see every node's; a node that died leaves its rows,
-- which another node takes and records as abandoned stays.
CREATE TABLE queue_waiting (
    item         TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    node         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    enqueued_ms  INTEGER NOT NULL
);
