-- Reconciliation: what the consumer saw that the ledger does not hold (the refunds the
-- providers declined, the liable party of each completion), the providers' daily reports
-- as read, and each reconciled day's breaks and figures. A break key is the same on every
-- day it is seen; a ticket is opened once per key.

CREATE TABLE refund_declines (
    provider           text        NOT NULL,
    merchant_reference text        NOT NULL,
    return_id          text        NOT NULL,
    decline_code       text,
    declined_at        timestamptz NOT NULL,
    PRIMARY KEY (provider, merchant_reference)
);
CREATE INDEX refund_declines_at ON refund_declines (declined_at);  -- retention

CREATE TABLE completions_seen (
    return_id    text        PRIMARY KEY,
    liable       text,
    order_ref    text,
    refunded     bigint      NOT NULL DEFAULT 0,
    currency     char(3),
    completed_at timestamptz NOT NULL
);
CREATE INDEX completions_seen_at ON completions_seen (completed_at);

CREATE TABLE psp_report_lines (
    provider           text    NOT NULL,
    report_date        date    NOT NULL,
    line_no            integer NOT NULL,
    provider_reference text    NOT NULL,
    merchant_reference text    NOT NULL,
    type               text    NOT NULL,
    gross_minor        bigint  NOT NULL,
    fee_minor          bigint  NOT NULL,
    net_minor          bigint  NOT NULL,
    currency           char(3) NOT NULL,
    booking_date       date    NOT NULL,
    batch              text    NOT NULL,
    PRIMARY KEY (provider, report_date, line_no)
);
CREATE INDEX psp_report_lines_merchant ON psp_report_lines (provider, merchant_reference);

CREATE TABLE recon_runs (
    run_date   date        PRIMARY KEY,
    ran_at     timestamptz NOT NULL DEFAULT now(),
    matched    integer     NOT NULL,
    compared   integer     NOT NULL,
    match_rate numeric     NOT NULL,
    by_category jsonb      NOT NULL,
    reports    jsonb       NOT NULL  -- per provider: the lines read
);

CREATE TABLE recon_breaks (
    run_date   date    NOT NULL REFERENCES recon_runs (run_date) ON DELETE CASCADE,
    break_key  text    NOT NULL,
    category   text    NOT NULL,
    provider   text    NOT NULL,
    reference  text    NOT NULL,
    return_id  text    NOT NULL,
    age_days   integer NOT NULL,
    detail     text    NOT NULL,
    PRIMARY KEY (run_date, break_key)
);
CREATE INDEX recon_breaks_key ON recon_breaks (break_key);

CREATE TABLE recon_tickets (
    ticket_id  bigserial   PRIMARY KEY,
    break_key  text        NOT NULL UNIQUE,
    category   text        NOT NULL,
    return_id  text        NOT NULL,
    detail     text        NOT NULL,
    opened_on  date        NOT NULL,
    opened_at  timestamptz NOT NULL DEFAULT now()
);

-- finance's views: a break's history (first and last day seen, resolved when a later
-- day's run no longer has it) and every account's balance
CREATE VIEW recon_break_history AS
SELECT b.break_key,
       min(b.category) AS category,
       min(b.provider) AS provider,
       min(b.reference) AS reference,
       min(b.return_id) AS return_id,
       min(b.run_date) AS first_seen,
       max(b.run_date) AS last_seen,
       CASE WHEN max(b.run_date) < (SELECT max(run_date) FROM recon_runs)
            THEN (SELECT min(r.run_date) FROM recon_runs r WHERE r.run_date > max(b.run_date))
       END AS resolved_on,
       (SELECT t.ticket_id FROM recon_tickets t WHERE t.break_key = b.break_key) AS ticket_id
FROM recon_breaks b
GROUP BY b.break_key;

CREATE VIEW account_balances AS
SELECT account, currency, sum(amount_minor) AS balance_minor, count(*) AS postings
FROM postings
GROUP BY account, currency;
