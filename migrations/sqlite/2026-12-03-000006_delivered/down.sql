ALTER TABLE message_receipts DROP COLUMN delivered_at;
