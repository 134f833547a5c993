from __future__ import annotations

import threading

from shared.local.scheduler import PeriodicTask


def test_task_runs_at_start_and_again_each_interval_when_scheduled():
    ran = threading.Semaphore(0)
    task = PeriodicTask(0.01, ran.release, name="t").start()
    try:
        assert all(ran.acquire(timeout=5) for _ in range(3))
    finally:
        task.stop()


def test_a_failing_run_is_logged_and_the_schedule_goes_on_when_the_task_raises():
    calls = []
    done = threading.Event()

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        done.set()

    exited = threading.Event()
    task = PeriodicTask(0.01, flaky, name="t", on_exit=exited.set).start()
    assert done.wait(5)
    task.stop()
    assert exited.is_set() and len(calls) >= 2
