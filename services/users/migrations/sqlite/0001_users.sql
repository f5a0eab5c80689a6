CREATE TABLE users (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    -- Stored in lower case: two spellings of one address are one account.
    email TEXT NOT NULL CONSTRAINT users_email UNIQUE,
    -- Argon2id, in PHC form; never the password.
    password_hash TEXT NOT NULL,
    phone_number TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A saved card is the provider's token for it and what a person recognises it by; its number
-- is never stored.
CREATE TABLE payment_methods (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    provider TEXT NOT NULL,
    provider_token TEXT NOT NULL,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month INTEGER NOT NULL,
    exp_year INTEGER NOT NULL,
    cardholder_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT payment_methods_same_card UNIQUE (user_id, brand, last4, exp_month, exp_year)
);
