-- Step 10: the owner's life (src/store/lease.rs). `life` is `<holder>:<backend pid>` of the
-- owner's lease connection, written by each take and renewal. A hub that starts after the owner
-- died never saw the owner's life lock held; when this names the current holder and no backend
-- with that pid is connected, the owner's lease connection is gone, and the new hub need not wait
-- for the lease to expire. Owners of older versions leave it naming someone else (or NULL), and
-- so keep their lease until it expires.
ALTER TABLE owners ADD COLUMN life TEXT;
