"""Where a return's time goes, hop by hop, from the broker's timestamps.

    make kafka-up
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port> make bench LEVELS=150   # the broker outlives it
    .venv/bin/python -m tests.bench.hop_delays --bootstrap 127.0.0.1:<port> [--bucket-s 10]

Reads every stream to its end, takes each return's first record of each type on the loop's
forward path (the broker's timestamp) and prints, per bucket of time (by when the return
was accepted), the p50 and p95 of each hop: a hop whose delay grows while the others stay
flat is where the loop queues (this is how a lock held across every scan's publish was
found: PickupCompleted → InspectionRecorded took 2-6 s, every other hop 20-60 ms).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from itertools import pairwise

from services.eventing.avro_codec import CodecError
from services.eventing.topics import STREAMS
from services.tools.oncall.topic_reader import catalogue_codec, read_topic
from tests.bench.bench_figures import percentile

FORWARD_PATH = (
    "ReturnAccepted",
    "PickupRequested",
    "PickupScheduled",
    "PickupCompleted",
    "InspectionRecorded",
    "IntakeRequested",
    "IntakeCompleted",
    "RefundReservationRequested",
    "RefundReserved",
    "RefundRequested",
    "RefundIssued",
    "ReturnCompleted",
)

Seen = tuple[str, str, int]  # (return_id, record name, broker timestamp ms)


def hop_delays(seen: Iterable[Seen], bucket_ms: int) -> dict[int, dict[str, list[int]]]:
    """bucket (ms since the first return's acceptance, floored) → "A → B" → delays in ms,
    for the returns that reached both A and B (their first records of each)."""
    first: dict[str, dict[str, int]] = {}
    for return_id, name, at in seen:
        if name in FORWARD_PATH:
            times = first.setdefault(return_id, {})
            times[name] = min(at, times.get(name, at))
    started = [times["ReturnAccepted"] for times in first.values() if "ReturnAccepted" in times]
    if not started:
        return {}
    origin = min(started)
    buckets: dict[int, dict[str, list[int]]] = {}
    for times in first.values():
        if "ReturnAccepted" not in times:
            continue
        bucket = (times["ReturnAccepted"] - origin) // bucket_ms * bucket_ms
        path = [name for name in FORWARD_PATH if name in times]
        for before, after in pairwise(path):
            delays = buckets.setdefault(bucket, {}).setdefault(f"{before} → {after}", [])
            delays.append(times[after] - times[before])
    return buckets


async def _seen(bootstrap: str) -> list[Seen]:
    codec = catalogue_codec()
    seen: list[Seen] = []
    for stream in STREAMS:
        for message in await read_topic(bootstrap, stream.name, stream.partitions):
            try:
                decoded = codec.decode(message.value)
            except CodecError:
                continue  # poison: not a step of any return
            seen.append((decoded.record["envelope"]["return_id"], decoded.name, message.timestamp))
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--bucket-s", type=float, default=10.0)
    parser.add_argument("--min-returns", type=int, default=20, help="smaller hops are left out")
    args = parser.parse_args(argv)
    buckets = hop_delays(asyncio.run(_seen(args.bootstrap)), int(args.bucket_s * 1000))
    for bucket, hops in sorted(buckets.items()):
        print(f"accepted at +{bucket / 1000:g} s")
        for hop, delays in hops.items():
            if len(delays) >= args.min_returns:
                p50, p95 = percentile(delays, 50), percentile(delays, 95)
                print(f"  {hop:48s} n {len(delays):5d}  p50 {p50:6.0f} ms  p95 {p95:6.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
