from services.eventing.offset_guard import RESEEK_AFTER_S, OffsetGuard, Verdict

TP = ("boomerang.pickup.events", 3)


def test_contiguous_offsets_are_processed():
    guard = OffsetGuard()
    for offset in (5, 6, 7):
        assert guard.check(TP, offset, 0.0) is Verdict.PROCESS
        guard.processed(TP, offset)


def test_a_jump_forward_asks_for_a_seek_back_to_the_first_missing_offset():
    guard = OffsetGuard()
    guard.processed(TP, 468)
    assert guard.check(TP, 587, 1.0) is Verdict.SEEK
    assert guard.expected(TP) == 469
    assert guard.gaps_seen == 1


def test_records_arriving_before_the_re_read_are_skipped_then_the_gap_is_filled():
    guard = OffsetGuard()
    guard.processed(TP, 468)
    guard.check(TP, 587, 1.0)
    assert guard.check(TP, 588, 1.5) is Verdict.SKIP  # still buffered from before the seek
    assert guard.check(TP, 469, 2.0) is Verdict.PROCESS  # the re-read starts
    guard.processed(TP, 469)
    assert guard.check(TP, 470, 2.1) is Verdict.PROCESS


def test_a_seek_that_did_not_help_is_sent_again_later():
    guard = OffsetGuard()
    guard.processed(TP, 10)
    assert guard.check(TP, 20, 0.0) is Verdict.SEEK
    assert guard.check(TP, 21, RESEEK_AFTER_S - 1) is Verdict.SKIP
    assert guard.check(TP, 22, RESEEK_AFTER_S + 1) is Verdict.SEEK


def test_records_already_handled_are_skipped_when_delivered_again():
    guard = OffsetGuard()
    for offset in (1, 2, 3):
        guard.processed(TP, offset)
    assert guard.check(TP, 2, 0.0) is Verdict.SKIP


def test_partitions_are_independent():
    guard = OffsetGuard()
    guard.processed(TP, 1)
    assert guard.check(("other", 0), 100, 0.0) is Verdict.PROCESS


def test_a_jump_to_the_committed_offset_is_the_framework_resuming_not_a_gap():
    guard = OffsetGuard()
    guard.processed(TP, 1)  # read from the earliest offset before the seek to committed
    assert guard.check(TP, 115, 0.0, committed=115) is Verdict.PROCESS
    assert guard.check(TP, 200, 0.0, committed=115) is Verdict.SEEK
