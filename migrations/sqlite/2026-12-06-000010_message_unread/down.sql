DROP TABLE message_unread;
