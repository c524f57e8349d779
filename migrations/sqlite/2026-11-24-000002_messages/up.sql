-- Step 3: directed events, messages with receipts, checkpoints. Keep in step with
-- migrations/postgres.

-- NULL: every participant sees the event; otherwise only its actor and this participant.
ALTER TABLE events ADD COLUMN recipient TEXT;

-- A participant's open checkpoint as JSON (NULL when none).
ALTER TABLE participants ADD COLUMN checkpoint TEXT;

-- The first schema's message tables were never written; messages are keyed by the id of the
-- event that carried them, so acknowledgements and `upTo` follow the log order.
DROP TABLE message_acks;
DROP TABLE messages;

CREATE TABLE messages (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    from_ai TEXT NOT NULL,
    to_ai TEXT,
    priority TEXT NOT NULL CHECK (priority IN ('critical', 'important', 'routine')),
    body TEXT NOT NULL,
    reply_to BIGINT,
    thread_id BIGINT NOT NULL,
    requires_ack BOOLEAN NOT NULL DEFAULT FALSE,
    ack_deadline TIMESTAMP,
    overdue_alerted BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (session_id, id)
);
CREATE INDEX messages_thread ON messages (session_id, thread_id);
CREATE INDEX messages_pending_ack ON messages (session_id, requires_ack, overdue_alerted);

CREATE TABLE message_receipts (
    session_id TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    ai_id TEXT NOT NULL,
    read_at TIMESTAMP,
    acked_at TIMESTAMP,
    PRIMARY KEY (session_id, message_id, ai_id),
    FOREIGN KEY (session_id, message_id) REFERENCES messages (session_id, id) ON DELETE CASCADE
);
