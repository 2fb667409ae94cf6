from services.engine.heap_release import heap_trimmer


def test_the_trimmer_runs_and_can_run_again() -> None:
    release = heap_trimmer()
    kept = [bytearray(4096) for _ in range(1000)]
    del kept[::2]
    release()
    release()
