"""A V2 request of n elements as n servemesh predictions: the batch-size cap, and running them
at once (each through admission, and TorchServe's own dynamic batching) with their results in
order, the first failure cancelling the rest and naming its element."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from runtime.quoting import cut, shown
from servemesh.errors import InvalidArgument, ServemeshError, from_rpc_error

T = TypeVar("T")
# Elements one request may hold. Each is a call of its own at the backend, so one request
# cannot hold more of a backend's slots than this; a bigger batch is split by the client.
MAX_BATCH_SIZE = 32
BATCH_LIMIT_NAME = "kserve.max_batch_size"


def check_batch_size(name: str, shape: Sequence[int]) -> int:
    """The batch size of an input of shape [n] or [n, 1], one element per item; refuses
    other shapes, an empty batch, and one over MAX_BATCH_SIZE, naming the limit."""
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidArgument(
            f"input {shown(name)} has shape {list(shape)}; give [n] or [n, 1], one element per "
            "item of the batch",
            reason="INVALID_TENSOR",
            metadata={"input": cut(name)},
        )
    size = shape[0]
    if size < 1:
        raise InvalidArgument(
            f"input {shown(name)} has shape {list(shape)}: no elements to run the model on",
            reason="INVALID_TENSOR",
            metadata={"input": cut(name)},
        )
    if size > MAX_BATCH_SIZE:
        raise InvalidArgument(
            f"input {shown(name)} has {size} elements; at most {MAX_BATCH_SIZE} per request "
            f"({BATCH_LIMIT_NAME}); split the batch into several requests",
            reason="INVALID_PARAMETER",
            metadata={
                "field": f"inputs[{name}].shape",
                "limit": BATCH_LIMIT_NAME,
                "max": str(MAX_BATCH_SIZE),
                "actual": str(size),
            },
        )
    return size


def _for_element(error: BaseException, index: int, size: int) -> BaseException:
    """`error` with the element it failed on in its message and metadata, in a batch of more
    than one; a lone element's error passes through as it is."""
    if size == 1:
        return error
    if isinstance(error, grpc.aio.AioRpcError):
        error = from_rpc_error(error)
    if not isinstance(error, ServemeshError):
        return error  # a bug, not the element's fault: the interceptor makes it INTERNAL
    return type(error)(
        f"element {index} of {size}: {error.message}",
        reason=error.reason,
        metadata={**error.metadata, "element": str(index)},
    )


async def run_all(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Runs every call at once and returns their results in order. The first call to fail
    cancels the others, and its error is raised; cancelling this (the client went away)
    cancels them all."""
    size = len(calls)
    if size == 1:  # no task to make, and nothing to name: a lone element's error is the call's
        return [await calls[0]()]

    async def call(index: int) -> T:
        try:
            return await calls[index]()
        except Exception as error:
            raise _for_element(error, index, size) from None

    tasks = [asyncio.ensure_future(call(i)) for i in range(size)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        # Of the failures that ended together, the earliest element, so the answer to one
        # request does not depend on scheduling.
        for task in tasks:
            if task in done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        # Cancelled calls end their backend calls before this returns, so nothing runs on
        # for a request that has been answered.
        await asyncio.gather(*tasks, return_exceptions=True)
