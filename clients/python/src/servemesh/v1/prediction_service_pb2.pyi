from servemesh.v1 import generation_pb2 as _generation_pb2
from servemesh.v1 import inference_pb2 as _inference_pb2
from servemesh.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("model", "request_id", "text_generation", "inference")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    text_generation: _generation_pb2.TextGenerationInput
    inference: _inference_pb2.InferenceInput
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., text_generation: _Optional[_Union[_generation_pb2.TextGenerationInput, _Mapping]] = ..., inference: _Optional[_Union[_inference_pb2.InferenceInput, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "model", "text_generation", "inference")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    text_generation: _generation_pb2.TextGenerationOutput
    inference: _inference_pb2.InferenceOutput
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., text_generation: _Optional[_Union[_generation_pb2.TextGenerationOutput, _Mapping]] = ..., inference: _Optional[_Union[_inference_pb2.InferenceOutput, _Mapping]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("model", "request_id", "text_generation", "inference")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    text_generation: _generation_pb2.TextGenerationInput
    inference: _inference_pb2.InferenceInput
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., text_generation: _Optional[_Union[_generation_pb2.TextGenerationInput, _Mapping]] = ..., inference: _Optional[_Union[_inference_pb2.InferenceInput, _Mapping]] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("request_id", "model", "text_delta", "inference", "finish_reason", "usage")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    text_delta: _generation_pb2.TextDelta
    inference: _inference_pb2.InferenceOutput
    finish_reason: _generation_pb2.FinishReason
    usage: _generation_pb2.Usage
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., text_delta: _Optional[_Union[_generation_pb2.TextDelta, _Mapping]] = ..., inference: _Optional[_Union[_inference_pb2.InferenceOutput, _Mapping]] = ..., finish_reason: _Optional[_Union[_generation_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_generation_pb2.Usage, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.ModelInfo
    def __init__(self, model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...
