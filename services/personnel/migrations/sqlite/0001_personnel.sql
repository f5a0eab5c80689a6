CREATE TABLE personnel (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    department TEXT NOT NULL,
    position TEXT NOT NULL,
    member_id BLOB
);
CREATE INDEX personnel_newest_first ON personnel (created_at DESC, id DESC);
CREATE INDEX personnel_by_department ON personnel (department, created_at DESC, id DESC);
