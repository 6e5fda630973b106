"""A ModelInferRequest's `parameters`: typed reads of InferParameter values, the parameters
tritonclient reserves (`timeout`, `priority`, `sequence_*`), and refusal of names a model
does not read, so a misspelt parameter is an error rather than silently ignored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kserve_v2 import grpc_predict_v2_pb2 as pb
from runtime.quoting import shown
from servemesh.errors import InvalidArgument

Value = bool | int | float | str
# tritonclient's own request parameters. `timeout` (microseconds) shortens the call's
# deadline; `priority` is accepted and ignored, as Triton does for a model whose scheduler
# has no priority levels. A sequence id asks for a stateful sequence model, which no model
# behind the gateway is.
TIMEOUT = "timeout"
IGNORED = frozenset({"priority"})
SEQUENCE = frozenset({"sequence_id", "sequence_start", "sequence_end"})


def _invalid(name: str, message: str) -> InvalidArgument:
    return InvalidArgument(
        f"parameter {shown(name)} {message}",
        reason="INVALID_PARAMETER",
        metadata={"parameter": name[:64]},
    )


def values(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Value]:
    """The parameters as Python values; an unset one is refused."""
    out: dict[str, Value] = {}
    for name in sorted(parameters):
        kind = parameters[name].WhichOneof("parameter_choice")
        if kind is None:
            raise _invalid(name, "has no value; set one of bool, int64, uint64, double or string")
        out[name] = getattr(parameters[name], kind)
    return out


def model_parameters(
    parameters: Mapping[str, pb.InferParameter], known: Iterable[str], model: str
) -> dict[str, Value]:
    """The parameters that the model reads, without tritonclient's reserved ones; any other
    name is refused, naming the ones this model reads."""
    given = values(parameters)
    if SEQUENCE & given.keys():
        raise InvalidArgument(
            f"model {shown(model)} is not a sequence (stateful) model; send the request without "
            "sequence_id, sequence_start and sequence_end",
            reason="INVALID_PARAMETER",
            metadata={"parameter": "sequence_id"},
        )
    known = frozenset(known)
    for name in given:
        if name not in known and name not in IGNORED and name != TIMEOUT:
            readable = ", ".join(sorted(known)) or "none"
            raise _invalid(
                name,
                f"is not one that model {shown(model)} reads; it reads: {readable} (and "
                "tritonclient's timeout and priority)",
            )
    return {k: v for k, v in given.items() if k in known}


def deadline(parameters: Mapping[str, pb.InferParameter], remaining: float | None) -> float | None:
    """The seconds the call may take: the gRPC deadline left, shortened by tritonclient's
    `timeout` parameter (microseconds) where that is sooner."""
    if TIMEOUT not in parameters:
        return remaining
    timeout_us = integer(TIMEOUT, values({TIMEOUT: parameters[TIMEOUT]})[TIMEOUT], low=0)
    seconds = timeout_us / 1_000_000
    # Triton reads 0 as "no timeout of the request's own".
    if seconds == 0:
        return remaining
    return seconds if remaining is None else min(seconds, remaining)


def integer(name: str, value: Value, low: int | None = None, high: int | None = None) -> int:
    """`value` as an integer in [low, high]; a bool is not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, f"is {value!r}; it must be an integer (int64_param)")
    if low is not None and value < low:
        raise _invalid(name, f"is {value}; it must be at least {low}")
    if high is not None and value > high:
        raise _invalid(name, f"is {value}; it must be at most {high}")
    return value


def number(name: str, value: Value) -> float:
    """`value` as a float; integers are numbers too (tritonclient sends 1 as an int64)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(name, f"is {value!r}; it must be a number (double_param or int64_param)")
    return float(value)


def string(name: str, value: Value) -> str:
    if not isinstance(value, str):
        raise _invalid(name, f"is {value!r}; it must be a string (string_param)")
    return value


def boolean(name: str, value: Value) -> bool:
    if not isinstance(value, bool):
        raise _invalid(name, f"is {value!r}; it must be a boolean (bool_param)")
    return value
