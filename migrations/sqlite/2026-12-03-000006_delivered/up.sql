-- Step 6: a message handed to a participant's event stream is delivered; returned in a result
-- (messages_read) it is read; acknowledged when the participant says so. Three receipts: a
-- stream reaching a client does not mean the model saw it (stock MCP clients do not show
-- notifications to the model). Keep in step with the other backend's migration.
ALTER TABLE message_receipts ADD COLUMN delivered_at TIMESTAMP;
