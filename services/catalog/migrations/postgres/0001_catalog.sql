CREATE TABLE categories (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    name TEXT NOT NULL CONSTRAINT categories_name UNIQUE,
    description TEXT
);
CREATE INDEX categories_newest_first ON categories (created_at DESC, id DESC);

CREATE TABLE products (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    name TEXT NOT NULL,
    -- Hundredths of the shop's currency: exact, never floating point.
    price_minor BIGINT NOT NULL CHECK (price_minor > 0),
    category_id UUID CONSTRAINT products_category REFERENCES categories (id),
    is_dispensable BOOLEAN NOT NULL,
    available BOOLEAN NOT NULL
);
CREATE INDEX products_newest_first ON products (created_at DESC, id DESC);
CREATE INDEX products_by_category ON products (category_id, created_at DESC, id DESC);
CREATE INDEX products_by_availability ON products (available, created_at DESC, id DESC);
