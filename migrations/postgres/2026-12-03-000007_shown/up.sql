-- Step 8: the third receipt. A message is *shown* to a participant's model when a tool result's
-- digest lists it in full, a client's hook confirms it printed it into the model's context, or
-- a briefing lists it: apart from delivered (handed to a stream) and from read/acknowledged.
-- `shown_via` is the first path that showed it (digest, hook, briefing, channel). Keep in step
-- with the other backend's migration.
ALTER TABLE message_receipts ADD COLUMN shown_at TIMESTAMP;
ALTER TABLE message_receipts ADD COLUMN shown_via TEXT;
