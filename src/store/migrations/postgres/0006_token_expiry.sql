-- API tokens expire. Tokens made before this version get 90 days from the upgrade.
ALTER TABLE api_tokens ADD COLUMN expires_ms BIGINT;
UPDATE api_tokens SET expires_ms = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) + 7776000000
    WHERE expires_ms IS NULL;
