-- Settlement cycles: each entry with a seller's lines is assigned, when booked, to its
-- market's cycle (or the first open one after it when that is closed); closing a cycle
-- writes one statement per seller and currency, never changed afterwards.

ALTER TABLE journal_entries ADD COLUMN market text, ADD COLUMN cycle_number integer;
CREATE INDEX journal_entries_cycle ON journal_entries (market, cycle_number);
ALTER TABLE postings ADD COLUMN sku text NOT NULL DEFAULT '';

CREATE TABLE settlement_cycles (
    market    text        NOT NULL,
    number    integer     NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL,
    closed_at timestamptz,
    PRIMARY KEY (market, number)
);

CREATE TABLE statements (
    seller_id     text        NOT NULL,
    currency      char(3)     NOT NULL,
    market        text        NOT NULL,
    cycle_number  integer     NOT NULL,
    cycle_id      text        NOT NULL,
    opening_minor bigint      NOT NULL,
    closing_minor bigint      NOT NULL,
    payout_minor  bigint      NOT NULL,
    carried_minor bigint      NOT NULL,
    totals        jsonb       NOT NULL,
    lines         jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, currency, market, cycle_number)
);
CREATE INDEX statements_cycle ON statements (cycle_id);
CREATE TRIGGER statements_immutable BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
