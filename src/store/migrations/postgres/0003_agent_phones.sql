-- Agents' phones: an extension (the SIP user name) and the digest HA1 per
-- algorithm (sealed), never the password.
ALTER TABLE agents ADD COLUMN extension TEXT;
ALTER TABLE agents ADD COLUMN skills TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN ha1_sha256 BYTEA;
ALTER TABLE agents ADD COLUMN ha1_md5 BYTEA;
ALTER TABLE agents ADD COLUMN key_id BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX agents_extension ON agents(extension);
