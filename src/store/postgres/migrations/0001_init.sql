-- stocksync PostgreSQL store, migration 1: every table of the `Store` contract.
-- Applied inside one transaction with `search_path` set to the configured schema, so the
-- names below are unqualified. Text keys use the "C" collation: byte order, as the embedded
-- store orders SKUs (list_skus paging, hold_expiries, order lines), whatever the database's
-- default collation is.

-- The event log. `id` is the global history cursor (append order); (sku, seq) is unique,
-- so a second writer of a sequence number fails its whole commit. `source` and `kind` are
-- copied out of the encoded movement at write time so the history filters run in SQL.
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    idempotency_key text NOT NULL,
    key_expires_at_ms bigint NOT NULL,
    recorded_at_ms bigint NOT NULL,
    movement bytea NOT NULL,
    source text COLLATE "C",
    kind text COLLATE "C",
    CONSTRAINT events_sku_seq UNIQUE (sku, seq)
);
CREATE INDEX events_recorded_at ON events (recorded_at_ms, id);
CREATE INDEX events_source ON events (source, id);

-- Idempotency keys with their expiry and movement hash (the u64 stored as the bigint with
-- the same 64 bits). Rows are deleted by `expire_keys`; the event keeps its own copy of
-- the expiry for the history.
CREATE TABLE idempotency_keys (
    sku text COLLATE "C" NOT NULL,
    idempotency_key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    movement_hash bigint,
    PRIMARY KEY (sku, idempotency_key, seq)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at_ms);

CREATE TABLE snapshots (
    sku text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL,
    state bytea NOT NULL
);

CREATE TABLE skus (
    sku text COLLATE "C" PRIMARY KEY
);

CREATE TABLE offsets (
    grp text COLLATE "C" NOT NULL,
    topic text COLLATE "C" NOT NULL,
    part integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (grp, topic, part)
);

CREATE TABLE pushed (
    channel text COLLATE "C" NOT NULL,
    sku text COLLATE "C" NOT NULL,
    quantity bigint NOT NULL,
    pushed_at_ms bigint NOT NULL,
    PRIMARY KEY (channel, sku)
);

CREATE TABLE push_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel text COLLATE "C" NOT NULL,
    sku text COLLATE "C" NOT NULL,
    quantity bigint NOT NULL,
    change_from bigint,
    outcome text NOT NULL,
    detail text,
    requests bigint NOT NULL,
    at_ms bigint NOT NULL
);
CREATE INDEX push_log_at ON push_log (at_ms);
CREATE INDEX push_log_channel_at ON push_log (channel, at_ms);
CREATE INDEX push_log_sku_at ON push_log (sku, at_ms);

CREATE TABLE config_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms bigint NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    config_hash text NOT NULL,
    config_json text NOT NULL
);

CREATE TABLE hold_expiries (
    sku text COLLATE "C" PRIMARY KEY,
    next_expiry_ms bigint NOT NULL
);

CREATE TABLE reservations (
    id text COLLATE "C" PRIMARY KEY,
    request text NOT NULL,
    refusal text,
    created_at_ms bigint NOT NULL
);

CREATE TABLE order_lines (
    channel text COLLATE "C" NOT NULL,
    order_id text COLLATE "C" NOT NULL,
    line_id text COLLATE "C" NOT NULL,
    sku text NOT NULL,
    version bigint NOT NULL,
    seen_at_ms bigint NOT NULL,
    PRIMARY KEY (channel, order_id, line_id)
);
CREATE INDEX order_lines_seen ON order_lines (seen_at_ms);

CREATE TABLE event_outcomes (
    sku text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    outcome text NOT NULL,
    PRIMARY KEY (sku, seq)
);

CREATE TABLE dead_letters (
    sku text COLLATE "C" NOT NULL,
    parked_seq bigint NOT NULL,
    expired_seq bigint NOT NULL,
    idempotency_key text NOT NULL,
    source text NOT NULL,
    kind text NOT NULL,
    movement text NOT NULL,
    reason text NOT NULL,
    parked_at_ms bigint NOT NULL,
    expired_at_ms bigint NOT NULL,
    keep_until_ms bigint NOT NULL,
    PRIMARY KEY (sku, parked_seq)
);
CREATE INDEX dead_letters_expired ON dead_letters (expired_at_ms);
CREATE INDEX dead_letters_keep ON dead_letters (keep_until_ms);

-- Ownership epochs: a commit's fences are read here `FOR SHARE` inside its transaction.
CREATE TABLE ownership (
    scope text COLLATE "C" PRIMARY KEY,
    epoch bigint NOT NULL,
    owner text NOT NULL
);
