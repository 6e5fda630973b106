"""inference.GRPCInferenceService at the gateway: the Open Inference Protocol's health,
metadata and ModelInfer, each a translation in front of the dispatcher, with the caller's
gRPC deadline.

Readiness: ServerLive is true whenever the gateway answers. ServerReady is true while at
least one routed model is ready, so a probe keeps the gateway in service while any model can
answer; ModelReady is one model's readiness as its backend reports it (TorchServe: a worker
is READY)."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping

import grpc

from gateway.config import ModelConfig
from gateway.dispatch import Dispatcher
from gateway.kserve import parameters as params
from gateway.kserve.batch import run_all
from gateway.kserve.infer import checked_call
from gateway.kserve.models import TRANSLATORS, ModelKind, Translator, kind_of_info, kind_of_task
from gateway.kserve.tensors import infer_response
from kserve_v2 import grpc_predict_v2_pb2 as pb
from kserve_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from runtime.incoming import accept
from runtime.quoting import cut, shown
from servemesh.errors import NotFound, Unavailable, Unimplemented
from servemesh.v1 import model_pb2

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "servemesh"
PROTOCOL = "kserve"  # the protocol label of the gateway's calls metric


def _version() -> str:
    try:
        return importlib.metadata.version("servemesh-mesh")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _check_version(model: str, version: str) -> None:
    # The gateway routes a name to one model; versions are its backend's business.
    if version:
        raise NotFound(
            f"model {shown(model)} has no version {shown(version)} here: the gateway serves "
            "one version of each model; leave the version empty",
            reason="MODEL_VERSION_NOT_FOUND",
            metadata={"model": cut(model), "version": cut(version)},
        )


def _platform(info: model_pb2.ModelInfo) -> str:
    if info.backend_kind == model_pb2.BACKEND_KIND_UNSPECIFIED:
        return ""
    return model_pb2.BackendKind.Name(info.backend_kind).removeprefix("BACKEND_KIND_").lower()


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """`models` is the mesh configuration's: a model's `task` option says its kind; a model
    without one (a servemesh predictor's) is asked what it does, once."""

    def __init__(self, dispatcher: Dispatcher, models: Mapping[str, ModelConfig]) -> None:
        self._dispatch = dispatcher
        self._kinds: dict[str, ModelKind] = {}
        for name, model in models.items():
            kind = kind_of_task(model.options.get("task"))
            if kind is not None:
                self._kinds[name] = kind

    async def _kind(
        self, model: str, info: model_pb2.ModelInfo | None, timeout: float | None
    ) -> ModelKind:
        if model in self._kinds:
            return self._kinds[model]
        if info is None:
            info = await self._dispatch.get_model(model, timeout)
        kind = kind_of_info(info)
        if kind is None:
            raise Unavailable(
                f"model {shown(model)}'s backend has not said what the model does yet: "
                f"{info.description or 'no description'}; retry when ModelReady is true",
                reason="MODEL_NOT_READY",
                metadata={"model": cut(model)},
            )
        self._kinds[model] = kind  # capabilities do not change while a backend runs
        return kind

    async def _translator(self, model: str, timeout: float | None) -> Translator:
        self._dispatch.router.route(model)  # NOT_FOUND, naming the models, before anything
        kind = await self._kind(model, None, timeout)
        if kind not in TRANSLATORS:
            raise Unimplemented(
                f"model {shown(model)} takes named servemesh.v1 inputs of its own, which have no "
                "tensor form here; call it through servemesh.v1.PredictionService/Predict",
                reason="UNSUPPORTED_MODEL",
                metadata={"model": cut(model)},
            )
        return TRANSLATORS[kind]

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        models = await self._dispatch.list_models(context.time_remaining())
        return pb.ServerReadyResponse(ready=any(m.ready for m in models))

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        info = await self._dispatch.get_model(request.name, context.time_remaining())
        _check_version(request.name, request.version)
        return pb.ModelReadyResponse(ready=info.ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=_version(), extensions=[])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        timeout = context.time_remaining()
        info = await self._dispatch.get_model(request.name, timeout)
        _check_version(request.name, request.version)
        translator = TRANSLATORS.get(await self._kind(request.name, info, timeout))
        response = pb.ModelMetadataResponse(name=request.name, platform=_platform(info))
        if translator is not None:
            response.inputs.append(translator.input.metadata())
            response.outputs.extend(o.metadata() for o in translator.outputs)
        return response

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        incoming = accept(context, request.id)  # one id for all of its elements
        model = request.model_name
        translator = await self._translator(model, context.time_remaining())
        _check_version(model, request.model_version)
        call = checked_call(request, translator)
        timeout = params.deadline(request.parameters, context.time_remaining())
        predictions = translator.requests(model, request.id, call.elements, call.values)
        predict = functools.partial(
            self._dispatch.predict,
            timeout=timeout,
            protocol=PROTOCOL,
            method="ModelInfer",
            incoming=incoming,
        )
        responses = await run_all([functools.partial(predict, p) for p in predictions])
        tensors = {t.name: t for t in translator.output_tensors(responses)}
        return infer_response(model, request.id, [tensors[name] for name in call.outputs])
