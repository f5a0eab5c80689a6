-- Who may be written to, from user.created|updated.
CREATE TABLE recipients (
    user_id BLOB PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL
);

-- One row per payment event an email was sent for (or is being sent for): an event is never
-- emailed twice, however often it is delivered.
CREATE TABLE emails (
    event_id BLOB PRIMARY KEY,
    order_id BLOB NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- 'sending' from the moment it is handed to the mail server, 'sent' once it took it,
    -- 'unknown' when it did not answer after it may have taken it (never sent again).
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
