"""Helpers to build settings from flags whose defaults come from environment variables,
including the flags every server shares (address, grace, message size, TLS, API keys)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

import prometheus_client

from runtime import logs
from runtime.auth import ApiKeys
from runtime.connections import ConnectionLimits
from runtime.log_limit import CallerGoneFilter
from runtime.server import MAX_MESSAGE_BYTES, ServerSettings

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env(name: str, default: str) -> str:
    """The value of environment variable `name`, or `default`."""
    return os.environ.get(name, default)


def env_flag(name: str, default: bool) -> bool:
    """An on/off environment variable (on, true, yes, 1 / off, false, no, 0)."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() not in (*_TRUE, *_FALSE):
        raise SystemExit(f"{name}={value!r}: use on or off")
    return value.strip().lower() in _TRUE


def configure_logging(level: str, log_format: str = "text") -> None:
    """Logs at `level` to stderr, as text or JSON lines (`log_format`, see runtime.logs)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logs.formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("grpc._cython.cygrpc").addFilter(CallerGoneFilter())


def serve_metrics(port: int, program: str) -> None:
    """Prometheus metrics on http://HOST:PORT/metrics, none for port 0. HOST is loopback
    unless SERVEMESH_METRICS_HOST says otherwise (0.0.0.0 in a container, where Prometheus
    scrapes from another network namespace). A port that cannot be bound ends the program
    with one line that names the flag, not a traceback."""
    if not port:
        return
    host = env("SERVEMESH_METRICS_HOST", "127.0.0.1")
    try:
        prometheus_client.start_http_server(port, addr=host)
    except OSError as error:
        raise SystemExit(
            f"{program}: cannot serve metrics on {host}:{port} ({error.strerror}); choose "
            "another port with --metrics-port, or 0 for no metrics"
        ) from None


def add_observability_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    """--log-format and --otlp-endpoint, each defaulting to PREFIX + its name, then to the
    same for every servemesh program (SERVEMESH_LOG_FORMAT, SERVEMESH_OTLP_ENDPOINT); the
    endpoint also to OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT."""
    g = p.add_argument_group("logs and traces")
    g.add_argument(
        "--log-format",
        choices=logs.LOG_FORMATS,
        default=env(prefix + "LOG_FORMAT", env("SERVEMESH_LOG_FORMAT", "text")),
        help="text, or json: one JSON object per line, with the request id and trace id of "
        "the call a line belongs to",
    )
    g.add_argument(
        "--otlp-endpoint",
        default=env(
            prefix + "OTLP_ENDPOINT",
            env("SERVEMESH_OTLP_ENDPOINT", env("OTEL_EXPORTER_OTLP_ENDPOINT", "off")),
        ),
        help="send OpenTelemetry traces over OTLP/gRPC to this collector "
        "(http://HOST:4317 for plaintext); off (the default): no tracing",
    )


@dataclasses.dataclass(frozen=True)
class Observability:
    """How a program logs (text or json) and where its traces go (None: nowhere)."""

    log_format: str = "text"
    otlp_endpoint: str | None = None


def observability(p: argparse.ArgumentParser, args: argparse.Namespace) -> Observability:
    """The Observability of parsed `args`; a log format from the environment is checked here,
    since argparse checks choices only on the command line."""
    if args.log_format not in logs.LOG_FORMATS:
        p.error(f"--log-format {args.log_format!r}: use one of {', '.join(logs.LOG_FORMATS)}")
    endpoint = args.otlp_endpoint.strip()
    return Observability(args.log_format, None if endpoint.lower() in ("", "off") else endpoint)


def add_server_flags(p: argparse.ArgumentParser, prefix: str, default_address: str) -> None:
    """Adds the flags of ServerSettings to `p`, each defaulting to environment variable
    PREFIX + its name in capitals (SERVEMESH_GATEWAY_TLS_CERT for --tls-cert)."""
    g = p.add_argument_group("server")
    g.add_argument("--address", default=env(prefix + "ADDRESS", default_address))
    g.add_argument(
        "--grace-s",
        type=float,
        default=float(env(prefix + "GRACE_S", "10")),
        help="seconds calls in flight may run on after SIGTERM",
    )
    g.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(env(prefix + "MAX_MESSAGE_BYTES", str(MAX_MESSAGE_BYTES))),
        help="largest request or response message, in bytes",
    )
    limits = ConnectionLimits()
    for name, help_text in (
        ("max_concurrent_streams", "calls one client connection may hold at once"),
        ("keepalive_time_s", "seconds between the server's pings of a connection"),
        ("keepalive_timeout_s", "seconds a ping may go unanswered before the connection drops"),
        ("max_connection_idle_s", "seconds a connection may stay without calls; 0: no limit"),
        (
            "max_connection_age_s",
            "seconds a connection may live before it must reconnect; 0: no limit",
        ),
        ("max_connection_age_grace_s", "seconds its calls then have to finish"),
    ):
        default = getattr(limits, name)
        g.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=type(default)(env(prefix + name.upper(), str(default))),
            help=f"{help_text} (default {default:g})",
        )
    g.add_argument(
        "--tls-cert",
        default=env(prefix + "TLS_CERT", "") or None,
        help="PEM certificate chain; serves TLS instead of plaintext",
    )
    g.add_argument("--tls-key", default=env(prefix + "TLS_KEY", "") or None, help="its PEM key")
    g.add_argument(
        "--tls-client-ca",
        default=env(prefix + "TLS_CLIENT_CA", "") or None,
        help="PEM CA file; clients must then present a certificate it signed (mTLS)",
    )
    # Keys themselves come from a file or the environment, never a flag: a command line is
    # visible to every user of the machine in `ps`.
    g.add_argument(
        "--api-key-file",
        default=env(prefix + "API_KEY_FILE", "") or None,
        help="require an API key (authorization: Bearer KEY) on every call; one key, or "
        f"sha256:HEX of one, per line. More keys in {prefix}API_KEYS, comma-separated",
    )
    g.add_argument(
        "--auth-health-reflection",
        action=argparse.BooleanOptionalAction,
        default=env_flag(prefix + "AUTH_HEALTH_REFLECTION", False),
        help="require the API key for grpc.health.v1 and reflection too (default: they stay "
        "open, for load balancers and probes that hold no key)",
    )


def server_settings(
    p: argparse.ArgumentParser, args: argparse.Namespace, prefix: str
) -> ServerSettings:
    """The ServerSettings of parsed `args`; a bad combination or an unreadable file ends the
    program with a usage error that says what to change."""
    try:
        for what, path in (
            ("--tls-cert", args.tls_cert),
            ("--tls-key", args.tls_key),
            ("--tls-client-ca", args.tls_client_ca),
        ):
            if path and not os.path.isfile(path):
                raise ValueError(f"{what}: no such file {path!r}")
        return ServerSettings(
            address=args.address,
            grace_s=args.grace_s,
            max_message_bytes=args.max_message_bytes,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            api_keys=ApiKeys.load(args.api_key_file, os.environ.get(prefix + "API_KEYS")),
            auth_health_reflection=args.auth_health_reflection,
            connections=ConnectionLimits(
                **{f.name: getattr(args, f.name) for f in dataclasses.fields(ConnectionLimits)}
            ),
        )
    except ValueError as error:
        p.error(str(error))
