-- Claims against carriers: one per carrier-liable return, written with the liability entry
-- that booked the receivable, then filed with the carrier over its API and followed until
-- it is paid or rejected (services/settlement/claims_desk.py). The outcome's entry is
-- booked in the same transaction as the status that says so.
CREATE TABLE carrier_claims (
    claim_id     text        PRIMARY KEY,
    return_id    text        NOT NULL UNIQUE,
    carrier_id   text        NOT NULL,
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    currency     char(3)     NOT NULL,
    status       text        NOT NULL DEFAULT 'to_file'
                 CHECK (status IN ('to_file', 'filed', 'accepted', 'rejected', 'paid')),
    paid_minor   bigint      NOT NULL DEFAULT 0,
    detail       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0
);
CREATE INDEX carrier_claims_open ON carrier_claims (status, updated_at)
    WHERE status IN ('to_file', 'filed', 'accepted');
GRANT SELECT ON carrier_claims TO boomerang_finance;
