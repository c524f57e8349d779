-- Step 10: several hubs on one PostgreSQL. One row per thing a hub process owns, held through a
-- lease (docs/multi-hub.md). The owner renews `expires_at` (the database's clock, so the hubs'
-- clocks never matter); another hub takes the row only once it has expired, and taking it
-- raises `generation`, the fencing token: every batch the owner's writer commits first checks,
-- with `FOR SHARE`, that the row still names it with the generation it started with.
-- `url` is where the owner serves; the others forward what they receive to it.
-- Today one row, kind 'hub' and key '', covers the whole database; per-session keys are the
-- next refinement and need no new table. SQLite has none of this: one hub per file.
CREATE TABLE owners (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    trusts_loopback BOOLEAN NOT NULL,
    generation BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, key)
);
