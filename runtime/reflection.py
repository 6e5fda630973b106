"""Server reflection in both protocol versions, `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection serves only v1alpha, and clients such as `buf curl` ask v1 first (with
`--reflect-protocol grpc-v1`, v1 alone). v1 is v1alpha under a new package name, the same
messages and field numbers, so one servicer answers both: its v1alpha messages are the v1
messages' bytes. v1's descriptor is made from grpcio-reflection's own v1alpha descriptor,
renamed, so the two cannot drift, and added to the pool so that v1 can be described too.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA = "grpc.reflection.v1alpha"
V1 = "grpc.reflection.v1"
V1_SERVICE = f"{V1}.ServerReflection"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: v1alpha's file with every name moved to v1."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = V1
    proto.ClearField("options")  # v1alpha's Java and Objective-C package options
    old, new = f".{V1ALPHA}.", f".{V1}."
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # message and enum fields; scalars have none
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return proto


def _register_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(V1_SERVICE)
    except KeyError:
        pool.Add(v1_file_descriptor())


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serves reflection v1 and v1alpha for `service_names` (and for reflection itself)."""
    _register_v1_descriptor()
    servicer = ReflectionServicer([*service_names, reflection.SERVICE_NAME, V1_SERVICE])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),)
    )
