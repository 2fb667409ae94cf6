from services.eventing.offset_guard import RESEEK_AFTER_S, STALL_AFTER_S, OffsetGuard, Verdict

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


def started_at(offset: int, tp=TP) -> OffsetGuard:
    guard = OffsetGuard()
    guard.start_at(tp, offset)
    return guard


def test_a_jump_to_the_groups_start_is_the_framework_resuming_not_a_gap():
    guard = started_at(115)
    assert guard.check(TP, 0, 0.0) is Verdict.PROCESS  # read from the earliest offset first
    guard.processed(TP, 0)
    assert guard.check(TP, 115, 0.0) is Verdict.PROCESS  # then the seek to the group's start
    guard.processed(TP, 115)
    assert guard.check(TP, 200, 0.0) is Verdict.SEEK


def test_only_offsets_with_nothing_missing_before_them_are_committable():
    guard = OffsetGuard()
    guard.processed("tp", 0)
    assert guard.check("tp", 64, now_s=0.0) is Verdict.SEEK
    assert guard.check("tp", 65, now_s=0.1) is Verdict.SKIP  # early: not handled
    assert guard.committable() == {"tp": 1}  # not past the hole, whatever arrived after it
    for offset in range(1, 66):
        assert guard.check("tp", offset, now_s=1.0) is Verdict.PROCESS
        guard.processed("tp", offset)
    assert guard.committable() == {"tp": 66}


def test_a_gap_whose_records_never_come_back_is_sought_again_by_the_timer():
    guard = OffsetGuard()
    guard.processed("tp", 0)
    assert guard.check("tp", 34, now_s=0.0) is Verdict.SEEK
    assert guard.due_reseeks(now_s=RESEEK_AFTER_S / 2) == {}
    assert guard.due_reseeks(now_s=RESEEK_AFTER_S) == {"tp": 1}
    assert guard.due_reseeks(now_s=RESEEK_AFTER_S + 1) == {}  # marked as sent
    guard.processed("tp", 1)
    assert guard.due_reseeks(now_s=10 * RESEEK_AFTER_S) == {}


def test_a_partition_given_away_is_forgotten():
    guard = OffsetGuard()
    guard.processed("tp", 5)
    guard.forget("tp")
    assert guard.committable() == {}
    assert guard.check("tp", 40, now_s=0.0) is Verdict.PROCESS


def test_a_partition_with_unread_records_that_delivers_none_is_sought_after_a_while():
    guard = OffsetGuard()
    guard.processed("tp", 0)
    assert guard.stalled("tp", now_s=0.0, end_offset=40) is None  # clock starts
    assert guard.stalled("tp", now_s=STALL_AFTER_S - 1, end_offset=40) is None
    assert guard.stalled("tp", now_s=STALL_AFTER_S, end_offset=40) == 1
    assert guard.stalled("tp", now_s=STALL_AFTER_S + 1, end_offset=40) is None
    assert guard.stalls_seen == 1


def test_a_partition_never_read_since_assignment_is_sought_to_the_groups_start():
    guard = started_at(3, tp="tp")
    assert guard.stalled("tp", now_s=0.0, end_offset=9) is None
    assert guard.stalled("tp", now_s=STALL_AFTER_S, end_offset=9) == 3


def test_a_partition_whose_start_is_unknown_is_not_sought():
    guard = OffsetGuard()
    assert guard.stalled("tp", now_s=0.0, end_offset=9) is None
    assert guard.stalled("tp", now_s=STALL_AFTER_S, end_offset=9) is None


def test_arrivals_and_an_idle_partition_are_not_stalls():
    guard = OffsetGuard()
    guard.processed("tp", 4)
    guard.stalled("tp", now_s=0.0, end_offset=9)
    guard.check("tp", 5, now_s=STALL_AFTER_S - 1)
    assert guard.stalled("tp", now_s=STALL_AFTER_S + 1, end_offset=9) is None
    caught_up = OffsetGuard()
    caught_up.processed("tp", 8)
    assert caught_up.stalled("tp", now_s=100.0, end_offset=9) is None


def test_a_first_record_past_the_groups_start_means_the_ones_before_were_dropped():
    # A 3-node chaos run: offsets 0-5 of a partition the group had never committed were
    # never delivered; the first record was offset 6. Start 0 is a real start, not "unknown".
    guard = started_at(0, tp="tp")
    assert guard.check("tp", 6, now_s=0.0) is Verdict.SEEK
    assert guard.expected("tp") == 0
    assert guard.committable() == {"tp": 0}
    assert guard.check("tp", 0, now_s=0.1) is Verdict.PROCESS


def test_a_first_record_at_or_before_the_groups_start_is_processed():
    assert started_at(7, tp="tp").check("tp", 7, now_s=0.0) is Verdict.PROCESS
    assert started_at(7, tp="tp").check("tp", 2, now_s=0.0) is Verdict.PROCESS


def test_without_a_known_start_the_first_record_is_taken_as_it_comes():
    assert OffsetGuard().check("tp", 9, now_s=0.0) is Verdict.PROCESS


def test_a_partition_given_away_loses_its_start_too():
    guard = started_at(4, tp="tp")
    guard.forget("tp")
    assert not guard.knows_start("tp")


def test_a_handled_record_is_committable_only_once_its_effects_are_durable():
    guard = OffsetGuard()
    guard.processed("tp", 9)
    for offset in (10, 11, 12):
        assert guard.check("tp", offset, 0.0) is Verdict.PROCESS
        guard.handled("tp", offset)
    assert guard.expected("tp") == 13  # the next record may be handled already
    assert guard.committable() == {"tp": 10}  # but nothing past the unacknowledged writes
    guard.durable("tp", 10)
    assert guard.committable() == {"tp": 11}
    guard.durable("tp", 11)
    guard.durable("tp", 12)
    assert guard.committable() == {"tp": 13}


def test_forgetting_a_partition_drops_its_unacknowledged_writes():
    guard = OffsetGuard()
    guard.handled("tp", 4)
    guard.forget("tp")
    assert guard.committable() == {}
