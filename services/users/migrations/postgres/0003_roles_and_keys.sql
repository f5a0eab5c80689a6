-- A person's role: `customer` unless an operator granted another (`kassa users grant-admin`).
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'customer';

-- Keys for machines and staff (`kassa keys create`): a name, a role, and a SHA-256 of the
-- secret, never the secret. A revoked key's row is deleted.
CREATE TABLE api_keys (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL CONSTRAINT api_keys_name UNIQUE,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
