-- API tokens expire. Tokens made before this version get 90 days from the upgrade.
ALTER TABLE api_tokens ADD COLUMN expires_ms INTEGER;
UPDATE api_tokens SET expires_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 7776000000
    WHERE expires_ms IS NULL;
