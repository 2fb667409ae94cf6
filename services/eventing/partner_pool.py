"""The connection pool of every partner client (carrier, PSPs, marketplace).

Up to BOOMERANG_MAX_IN_FLIGHT handlers call partners at once and share these connections.
Measured here: httpx's CPU per call grows with the size of its pool (a load generator with
100 connections spent about twice the CPU per request of one with 20), so the pool stays
at 20, and every connection is kept alive (none closed and reopened under load).
"""

import httpx

PARTNER_POOL = httpx.Limits(max_connections=20, max_keepalive_connections=20, keepalive_expiry=30)
