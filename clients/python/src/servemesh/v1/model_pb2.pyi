from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BackendKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_KIND_UNSPECIFIED: _ClassVar[BackendKind]
    BACKEND_KIND_LLAMA_CPP: _ClassVar[BackendKind]
    BACKEND_KIND_TORCHSERVE: _ClassVar[BackendKind]

class InputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_KIND_UNSPECIFIED: _ClassVar[InputKind]
    INPUT_KIND_PROMPT: _ClassVar[InputKind]
    INPUT_KIND_CHAT: _ClassVar[InputKind]
    INPUT_KIND_NAMED_VALUES: _ClassVar[InputKind]

class OutputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_KIND_UNSPECIFIED: _ClassVar[OutputKind]
    OUTPUT_KIND_TEXT: _ClassVar[OutputKind]
    OUTPUT_KIND_NAMED_VALUES: _ClassVar[OutputKind]
BACKEND_KIND_UNSPECIFIED: BackendKind
BACKEND_KIND_LLAMA_CPP: BackendKind
BACKEND_KIND_TORCHSERVE: BackendKind
INPUT_KIND_UNSPECIFIED: InputKind
INPUT_KIND_PROMPT: InputKind
INPUT_KIND_CHAT: InputKind
INPUT_KIND_NAMED_VALUES: InputKind
OUTPUT_KIND_UNSPECIFIED: OutputKind
OUTPUT_KIND_TEXT: OutputKind
OUTPUT_KIND_NAMED_VALUES: OutputKind

class ModelCapabilities(_message.Message):
    __slots__ = ("streaming", "input_kinds", "output_kinds")
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    INPUT_KINDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KINDS_FIELD_NUMBER: _ClassVar[int]
    streaming: bool
    input_kinds: _containers.RepeatedScalarFieldContainer[InputKind]
    output_kinds: _containers.RepeatedScalarFieldContainer[OutputKind]
    def __init__(self, streaming: _Optional[bool] = ..., input_kinds: _Optional[_Iterable[_Union[InputKind, str]]] = ..., output_kinds: _Optional[_Iterable[_Union[OutputKind, str]]] = ...) -> None: ...

class ModelLimits(_message.Message):
    __slots__ = ("context_length", "max_tokens", "max_queued_requests")
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    context_length: int
    max_tokens: int
    max_queued_requests: int
    def __init__(self, context_length: _Optional[int] = ..., max_tokens: _Optional[int] = ..., max_queued_requests: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "backend_kind", "backend", "ready", "capabilities", "limits", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_KIND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend_kind: BackendKind
    backend: str
    ready: bool
    capabilities: ModelCapabilities
    limits: ModelLimits
    description: str
    def __init__(self, name: _Optional[str] = ..., backend_kind: _Optional[_Union[BackendKind, str]] = ..., backend: _Optional[str] = ..., ready: _Optional[bool] = ..., capabilities: _Optional[_Union[ModelCapabilities, _Mapping]] = ..., limits: _Optional[_Union[ModelLimits, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...
