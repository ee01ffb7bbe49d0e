-- The service desk: tickets get a number people can say, the channel they came
-- from, a priority, a due date from their queue's SLA (the clock pauses while
-- waiting on the customer: `paused_ms` is when the current wait began and
-- `due_ms` moves on by the wait when it ends) and a version that every change
-- bumps (two people changing one ticket: the second is told, nothing is lost).
-- Statuses: new (nobody has it), open, pending (waiting on the customer),
-- solved, closed (final).
CREATE SEQUENCE tickets_num_seq;
ALTER TABLE tickets ADD COLUMN num BIGINT;
ALTER TABLE tickets ADD COLUMN channel TEXT;
ALTER TABLE tickets ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE tickets ADD COLUMN due_ms BIGINT;
ALTER TABLE tickets ADD COLUMN paused_ms BIGINT;
ALTER TABLE tickets ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
UPDATE tickets SET num = n.k FROM (SELECT id, nextval('tickets_num_seq') AS k FROM (SELECT id FROM tickets ORDER BY created_ms) o) n WHERE n.id = tickets.id;
ALTER TABLE tickets ALTER COLUMN num SET DEFAULT nextval('tickets_num_seq');
ALTER TABLE tickets ALTER COLUMN num SET NOT NULL;
UPDATE tickets SET status = 'new' WHERE status = 'open' AND assignee IS NULL;
UPDATE tickets SET paused_ms = updated_ms WHERE status = 'pending';
UPDATE tickets SET channel = COALESCE(
    (SELECT c.channel FROM conversations c WHERE c.id = tickets.conversation_id),
    CASE WHEN call_id IS NOT NULL THEN 'phone' END);
UPDATE tickets SET due_ms = created_ms + 86400000;
CREATE UNIQUE INDEX tickets_num ON tickets(num);
CREATE INDEX tickets_status ON tickets(status, num);
CREATE INDEX tickets_assignee_status ON tickets(assignee, status, num);
CREATE INDEX tickets_queue ON tickets(queue, status, num);
CREATE INDEX tickets_customer ON tickets(customer_id, num);
CREATE INDEX tickets_channel ON tickets(channel, num);
CREATE INDEX tickets_due ON tickets(status, due_ms, num);
CREATE INDEX tickets_conversation ON tickets(conversation_id);

-- Internal notes on a ticket (sealed; customers never see them).
CREATE TABLE ticket_notes (
    ticket      BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    author      TEXT NOT NULL,
    text        BYTEA NOT NULL,
    key_id      BIGINT NOT NULL,
    PRIMARY KEY (ticket, seq)
);

-- The keyed search index: for each ticket, the keyed hashes (64 bits of an
-- HMAC under the store's key) of the words of its subject and of what the
-- customer wrote or said in its conversation. Subjects and words stay sealed.
CREATE TABLE ticket_terms (
    term        BIGINT NOT NULL,
    ticket      BIGINT NOT NULL,
    PRIMARY KEY (term, ticket)
);
CREATE INDEX ticket_terms_ticket ON ticket_terms(ticket);

-- A ticket's history is its audit entries (target `ticket:<num>`).
CREATE INDEX audit_log_target ON audit_log(target, id);

-- The customer on one screen: their calls and which conversation a call was.
CREATE INDEX calls_customer ON calls(customer_id);
CREATE INDEX conversations_call ON conversations(call_id);
