DROP TABLE applied_requests;
