-- Step 10: what each participant has not read yet, kept on write, so that an unread count and
-- an unread page cost what that participant's backlog costs, not the session's history.
-- Keep in step with migrations/sqlite.
--
-- One row per (participant, message it received and has not read): written with the message
-- (its recipient, or for a broadcast every participant of the session but the sender), with a
-- participant who joins later (the broadcasts so far), and deleted by the read receipt
-- (`messages_read`, `message_ack`). Derived from messages, receipts and participants: a backup
-- does not carry it; a restore rebuilds it (`store::messages::rebuild_unread`), as this
-- migration does for the messages already stored.
CREATE TABLE message_unread (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (session_id, ai_id, message_id)
);

INSERT INTO message_unread (session_id, ai_id, message_id)
SELECT p.session_id, p.ai_id, m.id
FROM participants p
JOIN messages m ON m.session_id = p.session_id
WHERE (m.to_ai IS NULL OR m.to_ai = p.ai_id)
  AND m.from_ai <> p.ai_id
  AND NOT EXISTS (
      SELECT 1 FROM message_receipts r
      WHERE r.session_id = m.session_id AND r.message_id = m.id AND r.ai_id = p.ai_id
        AND r.read_at IS NOT NULL
  );
