CREATE TABLE personnel (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    department TEXT NOT NULL,
    position TEXT NOT NULL,
    member_id UUID
);
CREATE INDEX personnel_newest_first ON personnel (created_at DESC, id DESC);
CREATE INDEX personnel_by_department ON personnel (department, created_at DESC, id DESC);
