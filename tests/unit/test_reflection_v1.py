"""Reflection v1's descriptor, made from v1alpha's: the same messages and fields, renamed."""

from __future__ import annotations

from grpc_reflection.v1alpha import reflection_pb2

from runtime.reflection import V1, v1_file_descriptor


def test_v1_is_v1alpha_renamed_field_for_field() -> None:
    v1 = v1_file_descriptor()
    alpha = reflection_pb2.DESCRIPTOR
    assert v1.package == V1 and v1.name == "grpc/reflection/v1/reflection.proto"
    assert [m.name for m in v1.message_type] == list(alpha.message_types_by_name)
    for message in v1.message_type:
        fields = alpha.message_types_by_name[message.name].fields
        assert [(f.name, f.number, f.type) for f in message.field] == [
            (f.name, f.number, f.type) for f in fields
        ]
        for field in message.field:
            assert "v1alpha" not in field.type_name
    (service,) = v1.service
    (method,) = service.method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert method.client_streaming and method.server_streaming
