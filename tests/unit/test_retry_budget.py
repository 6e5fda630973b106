"""The retry budget: its share of calls, its reserve, its window, and memory that stays fixed."""

from __future__ import annotations

from gateway.backends.servemesh.retry_budget import BUCKETS, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_retries_are_a_share_of_calls_plus_the_reserve() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_s=0.1, window_s=10, clock=clock)  # reserve 1
    for _ in range(50):
        budget.record_call()
    granted = sum(budget.try_retry() for _ in range(100))
    assert granted == 11  # 0.2 x 50 + 1


def test_a_quiet_backend_still_gets_its_reserve() -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=1, window_s=5, clock=Clock())
    assert sum(budget.try_retry() for _ in range(20)) == 5


def test_calls_and_retries_leave_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=1.0, min_per_s=0, window_s=10, clock=clock)
    for _ in range(3):
        budget.record_call()
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]
    clock.now += 10.0
    assert not budget.try_retry()  # the old calls are gone, and with them their share
    budget.record_call()
    assert budget.try_retry()


def test_memory_stays_fixed_however_many_calls() -> None:
    """A healthy backend records calls and never retries; the budget must not keep them."""
    clock = Clock()
    budget = RetryBudget(clock=clock)
    for i in range(100_000):
        clock.now += 0.001 * (i % 3)
        budget.record_call()
    assert len(budget._buckets) <= BUCKETS
    assert budget._calls < 100_000  # only the last window's calls are counted
