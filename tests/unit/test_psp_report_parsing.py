"""A provider's settlement report is outside input: each wrong row is set aside with the
reason, the good rows are read, a report without the columns is refused whole."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from services.settlement.psp_reports import parse_report

HEADER = (
    "provider_reference,merchant_reference,type,gross_minor,fee_minor,net_minor,currency,"
    "booking_date,batch"
)
GOOD = "rf_1,R-1-refund-1,Refunded,1000,2,1002,EUR,2026-12-01,psp-2026-12-01"


def test_good_rows_are_read_and_each_bad_row_says_why() -> None:
    text = "\n".join(
        [
            HEADER,
            GOOD,
            "rf_2,R-2,Refunded,abc,2,1002,EUR,2026-12-01,b",
            "rf_3,R-3,Refunded,1000,2,1003,EUR,2026-12-01,b",
            "rf_4,R-4,Refunded,1000,2,1002,XXX,2026-12-01,b",
            "rf_5,R-5,Bonus,1000,2,1002,EUR,2026-12-01,b",
            "rf_6,R-6,Refunded,1000,2,1002,EUR,01/12/2026,b",
            ",R-7,Refunded,1000,2,1002,EUR,2026-12-01,b",
            "rf_8,R-8,Chargeback,500,0,500,JPY,2026-12-02,b",
        ]
    )

    lines, rejected = parse_report("psp", text)

    assert [(line.provider_reference, line.line_no) for line in lines] == [("rf_1", 1), ("rf_8", 8)]
    assert lines[0].booking_date == date(2026, 12, 1) and lines[0].fee_minor == 2
    reasons = {row.row_no: row.reason for row in rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "whole number" in reasons[2] and "add up" in reasons[3] and "ISO 4217" in reasons[4]
    assert "type" in reasons[5] and "date" in reasons[6] and "provider_reference" in reasons[7]


def test_a_report_without_its_columns_is_refused_whole() -> None:
    lines, rejected = parse_report("psp", "ref,amount\nrf_1,100\n")
    assert lines == [] and len(rejected) == 1 and "header lacks" in rejected[0].reason


@given(st.text(max_size=300))
def test_no_text_makes_the_parser_raise(text: str) -> None:
    lines, rejected = parse_report("psp", HEADER + "\n" + text)
    assert len(lines) + len(rejected) >= 0


def test_amounts_dates_and_text_a_database_would_refuse_are_wrong_rows() -> None:
    huge = "9" * 20
    text = "\n".join(
        [
            HEADER,
            f"rf_1,R-1,Refunded,{huge},0,{huge},EUR,2026-12-01,b",
            "rf_2,R-2,Chargeback,100,0,100,EUR,9999-12-31,b",
            "rf_3,R-\x00,Refunded,100,0,100,EUR,2026-12-01,b",
            GOOD,
        ]
    )
    lines, rejected = parse_report("psp", text, date(2026, 12, 1))
    assert [line.line_no for line in lines] == [4]  # the good row
    assert {row.row_no for row in rejected} == {1, 2, 3}
    reasons = " ".join(row.reason for row in rejected)
    assert "above" in reasons and "far from" in reasons and "control" in reasons
