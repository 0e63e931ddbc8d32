from facestream.v1 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("image", "actions", "detector_backend", "request_id", "frame")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    actions: _containers.RepeatedScalarFieldContainer[str]
    detector_backend: str
    request_id: str
    frame: _records_pb2.StreamFrame
    def __init__(self, image: _Optional[bytes] = ..., actions: _Optional[_Iterable[str]] = ..., detector_backend: _Optional[str] = ..., request_id: _Optional[str] = ..., frame: _Optional[_Union[_records_pb2.StreamFrame, _Mapping]] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("request_id", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    error: _records_pb2.Error
    def __init__(self, request_id: _Optional[str] = ..., error: _Optional[_Union[_records_pb2.Error, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("request_ids",)
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchStreamRequest(_message.Message):
    __slots__ = ("stream_id", "from_sequence")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    from_sequence: int
    def __init__(self, stream_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...
