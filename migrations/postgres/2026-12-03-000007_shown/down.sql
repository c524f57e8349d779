ALTER TABLE message_receipts DROP COLUMN shown_via;
ALTER TABLE message_receipts DROP COLUMN shown_at;
