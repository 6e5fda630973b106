"""What a TorchServe backend table and its models' tables may say, typed and checked."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

from gateway.backends.base import BackendOptions, parse_backend_table, parse_model_table
from gateway.config import NON_NEGATIVE, POSITIVE, BackendConfig, ConfigError, ModelConfig
from runtime.textgen import GenerationLimits
from servemesh.v1 import model_pb2

KIND = "torchserve"
DEFAULT_MAX_TOKENS = 256  # a request's, when it names none and the model allows as many


@dataclass(frozen=True, kw_only=True)
class TorchServeOptions(BackendOptions):
    """The options of a `kind = "torchserve"` backend table."""

    # TorchServe's gRPC management API: one address beside a single target, or, with
    # replicas, the port of each replica's own management API at its inference host.
    management_target: str = ""
    management_port: int = field(default=0, metadata=NON_NEGATIVE)
    key_file: str = ""  # the tokens TorchServe writes at start-up; "" sends none
    resolve_interval_s: float = field(default=10.0, metadata=POSITIVE)  # dns:/// re-resolution

    def management_address(self, inference_address: str) -> str:
        """The management API of the replica at `inference_address`."""
        if self.management_target:
            return self.management_target
        host = inference_address.rpartition(":")[0]
        return f"{host}:{self.management_port}"


class Task(enum.Enum):
    """What a TorchServe model does, which decides how its inputs and outputs are mapped."""

    IMAGE_CLASSIFICATION = "image_classification"
    EMBEDDING = "embedding"
    TEXT_GENERATION = "text_generation"
    GENERIC = "generic"


# Model options that only a text-generation model reads.
TEXT_GENERATION_KEYS = ("context_length", "max_tokens")


@dataclass(frozen=True, kw_only=True)
class TorchServeModel:
    """A TorchServe model's options from its [models.NAME] table."""

    task: Task = Task.GENERIC
    # Only for handlers that send intermediate responses: TorchServe's worker dies when
    # StreamPredictions reaches a handler that does not stream.
    streaming: bool = False
    context_length: int = field(default=2048, metadata=POSITIVE)
    max_tokens: int = field(default=512, metadata=POSITIVE)

    @cached_property
    def limits(self) -> GenerationLimits:
        return GenerationLimits(
            context_length=self.context_length,
            max_tokens=self.max_tokens,
            default_max_tokens=min(DEFAULT_MAX_TOKENS, self.max_tokens),
        )

    def capabilities(self) -> model_pb2.ModelCapabilities:
        if self.task is Task.TEXT_GENERATION:
            inputs = [model_pb2.INPUT_KIND_PROMPT, model_pb2.INPUT_KIND_CHAT]
            outputs = [model_pb2.OUTPUT_KIND_TEXT]
        else:
            inputs = [model_pb2.INPUT_KIND_NAMED_VALUES]
            outputs = [model_pb2.OUTPUT_KIND_NAMED_VALUES]
        return model_pb2.ModelCapabilities(
            streaming=self.streaming, input_kinds=inputs, output_kinds=outputs
        )

    def model_limits(self) -> model_pb2.ModelLimits:
        if self.task is not Task.TEXT_GENERATION:
            return model_pb2.ModelLimits()
        return model_pb2.ModelLimits(
            context_length=self.limits.context_length, max_tokens=self.limits.max_tokens
        )


def parse_torchserve_options(config: BackendConfig) -> TorchServeOptions:
    """A TorchServe backend's options. One TorchServe names its management API by address;
    replicas (several targets, or a dns:/// name) by port, and send no key: each TorchServe
    writes keys of its own at start-up, which one key file cannot hold."""
    options = parse_backend_table(TorchServeOptions, config)
    where = f"backends.{config.name}"
    if bool(options.management_target) == bool(options.management_port):
        raise ConfigError(
            f'{where} needs either management_target = "HOST:PORT" (one TorchServe) or '
            "management_port = PORT (replicas: each one's management API on its own host)"
        )
    replicas = len(config.targets) > 1 or config.target.startswith("dns:")
    if replicas and options.management_target:
        raise ConfigError(
            f"{where} has replicas {list(config.targets)}: give management_port = PORT, the "
            "port of each replica's management API, instead of one management_target"
        )
    if replicas and options.key_file:
        raise ConfigError(
            f"{where} has replicas, and each TorchServe writes keys of its own: run them with "
            "token authorization off (launch.py --no-token-auth) on a network only the gateway "
            "reaches, and drop key_file"
        )
    return options


def parse_torchserve_model(model: ModelConfig) -> TorchServeModel:
    """A TorchServe model's options; token limits only where the model generates text."""
    parsed = parse_model_table(TorchServeModel, model, KIND)
    if parsed.task is not Task.TEXT_GENERATION:
        for key in TEXT_GENERATION_KEYS:
            if key in model.options:
                raise ConfigError(
                    f"models.{model.name}.{key} is for text_generation models; this model's "
                    f"task is {parsed.task.value}"
                )
    return parsed
