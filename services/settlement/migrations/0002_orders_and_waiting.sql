-- What settlement knows of each order (the latest OrderPlaced / OrderDelivered), the
-- completions that came before their order (settled when it comes), and the records it
-- could not settle with the reason (nothing read is ever lost).

CREATE TABLE orders (
    order_ref    text        PRIMARY KEY,
    seller_id    text        NOT NULL,
    body         jsonb       NOT NULL,
    placed_at    timestamptz NOT NULL,
    delivered_at timestamptz
);
CREATE INDEX orders_placed_at ON orders (placed_at);  -- retention: oldest first
CREATE INDEX orders_seller ON orders (seller_id);

CREATE TABLE pending_completions (
    return_id     text        PRIMARY KEY,
    order_ref     text        NOT NULL,
    completion    jsonb       NOT NULL,
    waiting_since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_completions_order ON pending_completions (order_ref);

CREATE TABLE settlement_rejects (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    record_name text,
    return_id   text,
    reason      text        NOT NULL,
    payload     bytea,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
