CREATE TABLE classes (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    capacity INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 1000),
    instructor_id BLOB
);
CREATE INDEX classes_newest_first ON classes (created_at DESC, id DESC);
CREATE INDEX classes_by_instructor ON classes (instructor_id);

-- A member is in one class at a time (the seed's member has one classId).
CREATE TABLE enrollments (
    class_id BLOB NOT NULL REFERENCES classes (id),
    member_id BLOB NOT NULL CONSTRAINT enrollments_one_class UNIQUE,
    enrolled_at TEXT NOT NULL,
    PRIMARY KEY (class_id, member_id)
);
