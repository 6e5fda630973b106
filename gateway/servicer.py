"""servemesh.v1.PredictionService at the gateway: the contract's own front door to the
dispatcher, with the caller's gRPC deadline, request id and trace context. Predictions keep
their requests' bytes, which go on unparsed to backends that speak servemesh.v1
(gateway.relay)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from gateway.dispatch import Dispatcher
from gateway.relay import Received, received_predict, received_predict_stream, serialized
from runtime.incoming import accept, accept_stream
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PredictionService"].full_name


class GatewayServicer(pb_grpc.PredictionServiceServicer):
    """Serve it with `add_to_server`: its predictions take a `Received`, not a message."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatch = dispatcher

    async def Predict(  # type: ignore[override]  # a Received, see add_to_server
        self, request: Received, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse | bytes:
        incoming = accept(context, request.message.request_id)
        return await self._dispatch.relay_predict(request, context.time_remaining(), incoming)

    async def PredictStream(  # type: ignore[override]  # a Received, see add_to_server
        self, request: Received, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictStreamResponse | bytes]:
        incoming = await accept_stream(context, request.message.request_id)
        stream = self._dispatch.relay_predict_stream(request, context.time_remaining(), incoming)
        try:
            async for response in stream:
                yield response
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=await self._dispatch.list_models(context.time_remaining())
        )

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        info = await self._dispatch.get_model(request.name, context.time_remaining())
        return pb.GetModelResponse(model=info)


def add_to_server(servicer: GatewayServicer, server: grpc.aio.Server) -> None:
    """Serves PredictionService with `servicer`, as the generated
    add_PredictionServiceServicer_to_server does, except that Predict and PredictStream get
    their request as a `Received` (message and bytes) and answer with messages or bytes."""
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict,
            request_deserializer=received_predict,
            response_serializer=serialized,
        ),
        "PredictStream": grpc.unary_stream_rpc_method_handler(
            servicer.PredictStream,
            request_deserializer=received_predict_stream,
            response_serializer=serialized,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels,
            request_deserializer=pb.ListModelsRequest.FromString,
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
        "GetModel": grpc.unary_unary_rpc_method_handler(
            servicer.GetModel,
            request_deserializer=pb.GetModelRequest.FromString,
            response_serializer=pb.GetModelResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
