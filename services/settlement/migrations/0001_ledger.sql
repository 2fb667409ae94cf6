-- The ledger: journal entries and their postings, partitioned by booking month (a month
-- past the statutory retention is dropped whole), immutable once written, each entry
-- balanced to zero per currency (checked at commit); the ids of booked entries (a
-- redelivered event books nothing twice); the consumed offsets, written in the same
-- transaction as the postings they produced.

CREATE TABLE journal_entries (
    entry_id     uuid        NOT NULL,
    booked_at    timestamptz NOT NULL,
    return_id    text        NOT NULL,
    step         text        NOT NULL,
    reverses     uuid,
    refs         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, booked_at)
) PARTITION BY RANGE (booked_at);

CREATE TABLE postings (
    entry_id     uuid        NOT NULL,
    booked_at    timestamptz NOT NULL,
    line_no      smallint    NOT NULL,
    account      text        NOT NULL,
    amount_minor bigint      NOT NULL CHECK (amount_minor <> 0),
    currency     char(3)     NOT NULL,
    line_type    text,
    description  text        NOT NULL DEFAULT '',
    PRIMARY KEY (entry_id, booked_at, line_no)
) PARTITION BY RANGE (booked_at);

CREATE INDEX postings_account ON postings (account, booked_at);
CREATE INDEX journal_entries_return ON journal_entries (return_id);

-- one row per booked entry, whatever its month: the idempotency index
CREATE TABLE booked_entries (
    entry_id  uuid        PRIMARY KEY,
    booked_at timestamptz NOT NULL
);
CREATE INDEX booked_entries_booked_at ON booked_entries (booked_at);

CREATE TABLE consumer_offsets (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);

-- immutable: a correction is a reversing entry (retention drops whole partitions)
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (book a reversing entry)',
        TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- balanced per currency, checked when the transaction commits
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    off record;
BEGIN
    SELECT currency, sum(amount_minor) AS total INTO off
      FROM postings
     WHERE entry_id = NEW.entry_id AND booked_at = NEW.booked_at
     GROUP BY currency
    HAVING sum(amount_minor) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % does not balance in %: %', NEW.entry_id, off.currency, off.total;
    END IF;
    RETURN NULL;
END $$;
-- on the partitioned table: cloned onto every partition, also those created later
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
