"""servemesh.v1.PredictionService for one llama.cpp model: check, convert, delegate; and
trace and log each call under the request id and trace context its caller sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

import grpc

from predictors.llama.chat import tokenize_segments
from predictors.llama.engine import Delta, Event, Finished, FinishReason, Generation, LlamaEngine
from predictors.llama.grammar import json_grammar
from predictors.llama.request_trace import RequestTrace, record_stages
from runtime import logs, tracing
from runtime.errors import status_name
from runtime.incoming import Incoming, accept, accept_stream
from runtime.textgen import GenerationLimits, fit_max_tokens, parse_generation
from servemesh.errors import InvalidArgument, NotFound
from servemesh.v1 import generation_pb2, model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

FINISH_REASONS = {
    FinishReason.EOS_TOKEN: generation_pb2.FINISH_REASON_EOS_TOKEN,
    FinishReason.LENGTH: generation_pb2.FINISH_REASON_LENGTH,
    FinishReason.STOP_SEQUENCE: generation_pb2.FINISH_REASON_STOP_SEQUENCE,
}
Request = pb.PredictRequest | pb.PredictStreamRequest
log = logging.getLogger(__name__)


def _usage(finished: Finished) -> generation_pb2.Usage:
    return generation_pb2.Usage(
        prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens
    )


class LlamaServicer(pb_grpc.PredictionServiceServicer):
    """Serves the engine's one model under its configured name."""

    def __init__(self, engine: LlamaEngine) -> None:
        self._engine = engine
        self._settings = s = engine.settings
        self._limits = GenerationLimits(
            context_length=s.n_ctx,
            max_tokens=s.max_tokens_limit,
            default_max_tokens=s.default_max_tokens,
            max_stop_sequences=s.max_stop_sequences,
            max_schema_bytes=s.max_schema_bytes,
        )

    def model_info(self) -> model_pb2.ModelInfo:
        s = self._settings
        return model_pb2.ModelInfo(
            name=s.model_name,
            backend_kind=model_pb2.BACKEND_KIND_LLAMA_CPP,
            ready=self._engine.ready,
            capabilities=model_pb2.ModelCapabilities(
                streaming=True,
                input_kinds=[model_pb2.INPUT_KIND_PROMPT, model_pb2.INPUT_KIND_CHAT],
                output_kinds=[model_pb2.OUTPUT_KIND_TEXT],
            ),
            limits=model_pb2.ModelLimits(
                context_length=s.n_ctx,
                max_tokens=s.max_tokens_limit,
                max_queued_requests=s.max_queued_requests,
            ),
            description=f"GGUF model on llama.cpp ({s.model_path.rsplit('/', 1)[-1]})",
        )

    def _check_model(self, name: str) -> None:
        if name != self._settings.model_name:
            raise NotFound(
                f"model {name!r} is not served here; this predictor serves "
                f"{self._settings.model_name!r}",
                reason="MODEL_NOT_FOUND",
                metadata={"model": name},
            )

    @contextlib.contextmanager
    def _observed(self, method: str, incoming: Incoming) -> Iterator[RequestTrace]:
        """One generation call: its span with the stages under it, its ids on its log lines
        (the batching thread's too, through the RequestTrace), a line when it ends."""
        request_id, model = incoming.request_id, self._settings.model_name
        hop = tracing.begin(f"llama {method}", incoming)
        logs.bind(request_id, hop.trace_id)
        trace, code = RequestTrace(logs.call_ids(request_id, hop.trace_id)), "OK"
        try:
            yield trace
        except BaseException as error:  # the caller going away too (GeneratorExit)
            code = status_name(error)
            raise
        finally:
            if hop.span is not None:
                record_stages(hop, trace, time.time_ns())
                attributes = {
                    "servemesh.model": model,
                    "rpc.method": method,
                    "servemesh.request_id": request_id,
                    "gen_ai.usage.input_tokens": trace.prompt_tokens,
                    "gen_ai.usage.output_tokens": trace.generated_tokens,
                }
                hop.end(code, attributes)
            log.debug(
                "%s %s: %s, %d prompt tokens, %d generated",
                method,
                model,
                code,
                trace.prompt_tokens,
                trace.generated_tokens,
            )

    async def _events(self, request: Request, trace: RequestTrace) -> AsyncIterator[Event]:
        self._check_model(request.model)
        given = request.WhichOneof("input")
        if given is None:
            raise InvalidArgument(
                f"the request gives no input; model {request.model!r} generates text: set "
                "text_generation (a prompt or chat messages)",
                reason="INPUT_REQUIRED",
            )
        if given != "text_generation":
            raise InvalidArgument(
                f"model {request.model!r} generates text: give text_generation (a prompt or "
                "chat messages), not named inference inputs",
                reason="UNSUPPORTED_INPUT",
            )
        spec = parse_generation(request.text_generation, self._limits)
        chat = self._engine.chat
        if spec.messages is not None and chat is not None:
            segments = chat.segments(spec.messages)
        else:
            # A raw prompt is the caller's own full text, control tokens included: raw by
            # explicit choice, where chat messages can never hold a control token.
            segments = [(spec.prompt or "", False)]
        tokens = await asyncio.to_thread(tokenize_segments, segments, self._engine.tokenize)
        max_tokens = fit_max_tokens(len(tokens), spec, self._limits)
        grammar = None
        if spec.response_format is not None:
            # A big schema takes milliseconds to convert: not on the event loop.
            grammar = await asyncio.to_thread(
                json_grammar, spec.response_format, self._settings.max_grammar_bytes
            )
        s = self._settings
        draft_tokens = s.default_draft_tokens if spec.draft_tokens is None else spec.draft_tokens
        generation = Generation(
            tokens,
            max_tokens,
            spec.sampling,
            spec.stop,
            grammar,
            min(draft_tokens, s.draft_tokens_limit),
        )
        trace.prompt_tokens = len(tokens)
        async for event in self._engine.generate(generation, trace):
            if isinstance(event, Delta):
                trace.generated_tokens += event.token_count
            yield event

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        incoming = accept(context, request.request_id)
        request_id = request.request_id or incoming.request_id
        pieces: list[str] = []
        with self._observed("Predict", incoming) as trace:
            async for event in self._events(request, trace):
                if isinstance(event, Delta):
                    pieces.append(event.text)
                else:
                    output = generation_pb2.TextGenerationOutput(
                        text="".join(pieces),
                        finish_reason=FINISH_REASONS[event.reason],
                        usage=_usage(event),
                    )
        return pb.PredictResponse(
            request_id=request_id, model=request.model, text_generation=output
        )

    async def PredictStream(
        self, request: pb.PredictStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        incoming = await accept_stream(context, request.request_id)
        request_id = request.request_id or incoming.request_id
        with self._observed("PredictStream", incoming) as trace:
            async for event in self._events(request, trace):
                message = pb.PredictStreamResponse(request_id=request_id, model=request.model)
                if isinstance(event, Delta):
                    message.text_delta.text = event.text
                    message.text_delta.token_count = event.token_count
                else:
                    message.finish_reason = FINISH_REASONS[event.reason]
                    message.usage.CopyFrom(_usage(event))
                yield message

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[self.model_info()])

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        self._check_model(request.name)
        return pb.GetModelResponse(model=self.model_info())
