"""The ledger's accounts (pure): a name per account, its kind first, then what it is per
(seller, carrier, provider) and its currency, e.g. `seller_payable:S-1:GBP`."""

from __future__ import annotations

from enum import StrEnum


class AccountKind(StrEnum):
    SELLER_PAYABLE = "seller_payable"  # what the marketplace owes a seller (liability)
    PLATFORM_EXPENSE = "platform_expense"  # returns the platform pays for, goodwill
    CARRIER_CLAIMS = "carrier_claims"  # claims receivable from a carrier
    CARRIER_WRITE_OFF = "carrier_claims_written_off"  # rejected claims, the platform's cost
    PSP_CLEARING = "psp_clearing"  # money moving through a payment provider
    BUYER_REFUNDS_PAYABLE = "buyer_refunds_payable"  # refunds owed, not yet at a provider
    STORE_CREDIT = "store_credit_liability"  # store credit issued to buyers
    COMMISSION = "commission"  # the marketplace's commission income
    FEES_RETAINED = "fees_retained"  # restocking / return shipping kept from buyers
    RETURN_SHIPPING_RECOVERY = "return_shipping_recovery"  # return labels charged to sellers
    RETURNS_CLEARING = "returns_clearing"  # a refund paid, not yet charged to whoever is liable
    FX_CONVERSION = "fx_conversion"  # the two sides of a conversion, per currency
    ROUNDING = "rounding"  # the residue of conversions, booked explicitly
    CHARGEBACKS = "chargebacks"  # disputes a provider took back
    BANK = "bank"  # money received outside the providers (a carrier paying a claim)


def account(kind: AccountKind, currency: str, party: str | None = None) -> str:
    """`kind:party:currency` (or `kind:currency` for the platform's own accounts)."""
    if party is not None and (":" in party or not party):
        raise ValueError(f"a party id may not be empty or contain ':' ({party!r})")
    return f"{kind.value}:{party}:{currency}" if party is not None else f"{kind.value}:{currency}"


def kind_of(name: str) -> AccountKind:
    return AccountKind(name.split(":", 1)[0])


def party_of(name: str) -> str | None:
    parts = name.split(":")
    return parts[1] if len(parts) == 3 else None
