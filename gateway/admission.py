"""A backend's concurrency limit: at most N calls at once, a bounded queue behind them, and
RESOURCE_EXHAUSTED past that, so a flood waits in order or is refused instead of piling up
in the backend."""

from __future__ import annotations

import asyncio
import collections

from gateway import metrics
from servemesh.errors import ResourceExhausted


class Admission:
    """Lets at most `max_concurrency` calls run, and `max_queue` wait; 0 means no limit."""

    def __init__(self, backend: str, max_concurrency: int = 0, max_queue: int = 0) -> None:
        self._backend = backend
        self._max_concurrency, self._max_queue = max_concurrency, max_queue
        self._running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._running_gauge = metrics.BACKEND_RUNNING.labels(backend)
        self._waiting_gauge = metrics.BACKEND_WAITING.labels(backend)

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def slot(self) -> _Slot:
        """Holds one of the backend's call slots for the body of `async with`; waits in line
        for one (the caller's deadline and cancellation end the wait)."""
        return _Slot(self)

    async def _acquire(self) -> None:
        if self._max_concurrency and self._running >= self._max_concurrency:
            await self._wait_in_line()
        else:
            self._running += 1
        self._running_gauge.set(self._running)

    def _leave(self) -> None:
        self._release()
        self._running_gauge.set(self._running)
        self._waiting_gauge.set(len(self._waiting))

    async def _wait_in_line(self) -> None:
        if len(self._waiting) >= self._max_queue:
            raise ResourceExhausted(
                f"backend {self._backend!r} is at its limit: {self._running} calls running and "
                f"{len(self._waiting)} waiting (max_concurrency={self._max_concurrency}, "
                f"max_queue={self._max_queue}); retry later",
                reason="BACKEND_AT_CAPACITY",
                metadata={"backend": self._backend},
            )
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._waiting_gauge.set(len(self._waiting))
        try:
            await turn  # _release hands its slot over: _running stays counted
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot came just as the caller left: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def _release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1


class _Slot:
    """One call's slot, as a plain async context manager: every call goes through one, and a
    class costs less per call than an @asynccontextmanager generator."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    async def __aenter__(self) -> None:
        await self._admission._acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._leave()
