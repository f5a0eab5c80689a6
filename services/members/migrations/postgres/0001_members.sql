CREATE TABLE members (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    name TEXT NOT NULL,
    -- Stored in lower case: two spellings of one address are one member.
    email TEXT NOT NULL CONSTRAINT members_email UNIQUE,
    phone_number TEXT NOT NULL,
    class_id UUID
);
CREATE INDEX members_newest_first ON members (created_at DESC, id DESC);
CREATE INDEX members_by_class ON members (class_id, created_at DESC, id DESC);
