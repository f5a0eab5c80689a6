CREATE TABLE categories (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    name TEXT NOT NULL CONSTRAINT categories_name UNIQUE,
    description TEXT
);
CREATE INDEX categories_newest_first ON categories (created_at DESC, id DESC);

CREATE TABLE products (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Hundredths of the shop's currency: exact, never floating point.
    price_minor INTEGER NOT NULL CHECK (price_minor > 0),
    category_id BLOB CONSTRAINT products_category REFERENCES categories (id),
    is_dispensable INTEGER NOT NULL,
    available INTEGER NOT NULL
);
CREATE INDEX products_newest_first ON products (created_at DESC, id DESC);
CREATE INDEX products_by_category ON products (category_id, created_at DESC, id DESC);
CREATE INDEX products_by_availability ON products (available, created_at DESC, id DESC);
