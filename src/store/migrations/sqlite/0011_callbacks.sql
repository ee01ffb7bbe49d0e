-- Follow-up calls: a caller asked to be called back (a dialplan's `callback`
-- node), or an agent called a customer from a ticket. One row per ticket: the
-- number to call (sealed), when it was asked for, the tries so far and how the
-- last one ended. `done_ms` is set once a call back reached the customer;
-- until then the ticket is on the desk's list of callbacks to make.
CREATE TABLE callbacks (
    ticket        INTEGER PRIMARY KEY,
    number        BLOB NOT NULL,
    key_id        INTEGER NOT NULL,
    requested_ms  INTEGER NOT NULL,
    tries         INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT,
    tried_ms      INTEGER,
    done_ms       INTEGER
);
CREATE INDEX callbacks_waiting ON callbacks(requested_ms) WHERE done_ms IS NULL;
