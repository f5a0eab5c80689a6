CREATE TABLE classes (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    capacity BIGINT NOT NULL CHECK (capacity BETWEEN 1 AND 1000),
    instructor_id UUID
);
CREATE INDEX classes_newest_first ON classes (created_at DESC, id DESC);
CREATE INDEX classes_by_instructor ON classes (instructor_id);

-- A member is in one class at a time (the seed's member has one classId).
CREATE TABLE enrollments (
    class_id UUID NOT NULL REFERENCES classes (id),
    member_id UUID NOT NULL CONSTRAINT enrollments_one_class UNIQUE,
    enrolled_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (class_id, member_id)
);
