-- An assignee's tickets newest first without sorting them all (measured with a
-- million tickets: an agent's list was the slowest question before this).
CREATE INDEX tickets_assignee_num ON tickets(assignee, num);
