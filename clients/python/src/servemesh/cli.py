"""The `servemesh` command: list models, run them, stream their tokens, check health."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from servemesh.bench import cli as bench_cli
from servemesh.channel import DEFAULT_TARGET, DEFAULT_TIMEOUT_S, MAX_MESSAGE_BYTES
from servemesh.client import Client
from servemesh.errors import ServemeshError


def _parse_input(spec: str) -> tuple[str, bytes | str]:
    """NAME=@FILE reads bytes from a file; NAME=TEXT passes text."""
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: use NAME=TEXT or NAME=@FILE")
    if value.startswith("@"):
        with open(value[1:], "rb") as f:
            return name, f.read()
    return name, value


def _prediction_args(args: argparse.Namespace) -> dict[str, Any]:
    """The request options of `predict` and `stream`; ValueError for a usage mistake."""
    kwargs: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "stop": args.stop,
        "seed": args.seed,
        "repeat_penalty": args.repeat_penalty,
        "draft_tokens": args.draft_tokens,
    }
    kwargs = {name: value for name, value in kwargs.items() if value is not None}
    if args.json_schema is not None:
        with open(args.json_schema, encoding="utf-8") as f:
            schema = f.read()  # as written: the server reads its keys in this order
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    elif args.json_object:
        kwargs["response_format"] = {"type": "json_object"}
    if args.input:
        if args.prompt is not None:
            raise ValueError("give a prompt or --input values, not both")
        if "response_format" in kwargs:
            raise ValueError("--json-schema and --json-object go with a prompt, not --input")
        return {"inputs": dict(args.input)}
    if args.prompt is None:
        raise ValueError("give a prompt (or --input NAME=VALUE for models with named inputs)")
    if args.raw:
        if args.system is not None:
            raise ValueError("--system goes with a chat message; leave out --raw to use it")
        return {"prompt": args.prompt, **kwargs}
    return {"message": args.prompt, "system": args.system, **kwargs}


def _models(client: Client, args: argparse.Namespace) -> None:
    models = client.list_models()
    if args.json:
        print(json.dumps([asdict(m) for m in models], indent=2))
        return
    print(f"{'MODEL':28} {'BACKEND':12} {'KIND':11} {'READY':6} {'STREAM':7} {'INPUTS':20} LIMITS")
    for m in models:
        limits = f"ctx={m.context_length} max_tokens={m.max_tokens}" if m.context_length else ""
        print(
            f"{m.name:28} {m.backend or '-':12} {m.backend_kind or '-':11} {m.ready!s:6} "
            f"{m.streaming!s:7} {','.join(m.input_kinds) or '-':20} {limits}"
        )


def _predict(client: Client, args: argparse.Namespace) -> None:
    result = client.predict(args.model, **args.request)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=repr))
    elif result.outputs:
        for name, value in result.outputs.items():
            print(f"{name}: {value!r}")
    else:
        print(result.text)
        usage = result.usage
        if usage:
            print(
                f"[{result.finish_reason}; prompt {usage.prompt_tokens} tokens, "
                f"completion {usage.completion_tokens} tokens]",
                file=sys.stderr,
            )


def _stream(client: Client, args: argparse.Namespace) -> None:
    for chunk in client.predict_stream(args.model, **args.request):
        if args.json:
            print(json.dumps(asdict(chunk), default=repr), flush=True)
            continue
        print(chunk.text, end="", flush=True)
        if chunk.finish_reason and chunk.usage:
            print()
            print(
                f"[{chunk.finish_reason}; prompt {chunk.usage.prompt_tokens} tokens, "
                f"completion {chunk.usage.completion_tokens} tokens]",
                file=sys.stderr,
            )


def _health(client: Client, args: argparse.Namespace) -> None:
    status = client.health(args.service)
    print(status)
    if status != "SERVING":
        raise SystemExit(3)


def _add_prediction_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("prompt", nargs="?", help="sent as a user chat message unless --raw")
    p.add_argument("--raw", action="store_true", help="send the prompt as it is, no chat template")
    p.add_argument("--system", help="a system message before the prompt")
    p.add_argument("--input", action="append", type=_parse_input, metavar="NAME=TEXT|NAME=@FILE")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--stop", action="append", help="a stop sequence; repeat for more")
    p.add_argument("--seed", type=int)
    p.add_argument("--repeat-penalty", type=float)
    p.add_argument(
        "--draft-tokens",
        type=int,
        help="speculative decoding: most tokens per step guessed from the prompt (0: off)",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json-schema", metavar="FILE", help="the output must be JSON valid against this schema"
    )
    output.add_argument(
        "--json-object", action="store_true", help="the output must be a JSON object"
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    g = parser.add_argument_group("connection (also for bench's grpc:// URLs)")
    g.add_argument(
        "--api-key",
        default=env("SERVEMESH_API_KEY") or None,
        help="sent as 'authorization: Bearer KEY' (env SERVEMESH_API_KEY, which, unlike a "
        "flag, other users cannot see in ps)",
    )
    g.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=env("SERVEMESH_TLS", "").lower() in ("1", "true", "yes", "on"),
        help="TLS, trusting the system's CAs (env SERVEMESH_TLS=on); implied by --tls-*",
    )
    g.add_argument(
        "--tls-ca",
        default=env("SERVEMESH_TLS_CA") or None,
        help="PEM CA that signed the server's certificate (env SERVEMESH_TLS_CA)",
    )
    g.add_argument(
        "--tls-cert",
        default=env("SERVEMESH_TLS_CERT") or None,
        help="PEM client certificate, for servers that require one (env SERVEMESH_TLS_CERT)",
    )
    g.add_argument(
        "--tls-key",
        default=env("SERVEMESH_TLS_KEY") or None,
        help="its PEM key (env SERVEMESH_TLS_KEY)",
    )
    g.add_argument(
        "--tls-server-name",
        default=env("SERVEMESH_TLS_SERVER_NAME") or None,
        help="the name in the server's certificate, when it is not the target's host",
    )
    g.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(env("SERVEMESH_MAX_MESSAGE_BYTES", str(MAX_MESSAGE_BYTES))),
        help="largest message sent or received (env SERVEMESH_MAX_MESSAGE_BYTES)",
    )


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Client keyword arguments for the connection flags."""
    return {
        "api_key": args.api_key,
        "tls": args.tls,
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_server_name": args.tls_server_name,
        "max_message_bytes": args.max_message_bytes,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servemesh", description="Talk to a servemesh mesh.")
    parser.add_argument(
        "--target",
        default=os.environ.get("SERVEMESH_TARGET", DEFAULT_TARGET),
        help="gateway or predictor address (env SERVEMESH_TARGET)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("SERVEMESH_TIMEOUT", DEFAULT_TIMEOUT_S)),
        help="deadline of each call in seconds (env SERVEMESH_TIMEOUT)",
    )
    _add_connection_flags(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="list the models and what they can do")
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=_models)
    predict = commands.add_parser("predict", help="run a model and print its output")
    _add_prediction_flags(predict)
    predict.set_defaults(run=_predict)
    stream = commands.add_parser("stream", help="run a model and print tokens as they come")
    _add_prediction_flags(stream)
    stream.set_defaults(run=_stream)
    health = commands.add_parser("health", help="print the server's health status")
    health.add_argument("service", nargs="?", default="", help="e.g. model/NAME or backend/NAME")
    health.set_defaults(run=_health)
    bench_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return args.run_bench(args, _client_options(args))
    if args.command in ("predict", "stream"):
        try:
            args.request = _prediction_args(args)
        except ValueError as error:
            parser.error(f"{args.command}: {error}")
    try:
        client = Client(args.target, timeout=args.timeout, **_client_options(args))
    except ValueError as error:  # an unreadable TLS file or a malformed key
        parser.error(str(error))
    try:
        with client:
            args.run(client, args)
    except ServemeshError as error:
        print(f"servemesh: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
