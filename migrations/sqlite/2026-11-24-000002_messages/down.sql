DROP TABLE message_receipts;
DROP TABLE messages;
ALTER TABLE participants DROP COLUMN checkpoint;
ALTER TABLE events DROP COLUMN recipient;
CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    from_ai TEXT NOT NULL,
    to_ai TEXT,
    priority TEXT NOT NULL CHECK (priority IN ('critical', 'important', 'routine')),
    body TEXT NOT NULL,
    reply_to TEXT,
    requires_ack BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX messages_session ON messages (session_id, event_id);

CREATE TABLE message_acks (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    read_at TIMESTAMP,
    acked_at TIMESTAMP,
    PRIMARY KEY (message_id, ai_id)
);
