from facestream.v1 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("image", "actions", "detector_backend", "request_id", "frame", "identify")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    actions: _containers.RepeatedScalarFieldContainer[str]
    detector_backend: str
    request_id: str
    frame: _records_pb2.StreamFrame
    identify: _records_pb2.Identify
    def __init__(self, image: _Optional[bytes] = ..., actions: _Optional[_Iterable[str]] = ..., detector_backend: _Optional[str] = ..., request_id: _Optional[str] = ..., frame: _Optional[_Union[_records_pb2.StreamFrame, _Mapping]] = ..., identify: _Optional[_Union[_records_pb2.Identify, _Mapping]] = ...) -> None: ...

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

class EnrollRequest(_message.Message):
    __slots__ = ("gallery", "subject", "images", "request_id", "detector_backend")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    request_id: str
    detector_backend: str
    def __init__(self, gallery: _Optional[str] = ..., subject: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ..., request_id: _Optional[str] = ..., detector_backend: _Optional[str] = ...) -> None: ...

class EnrolledImage(_message.Message):
    __slots__ = ("index", "face_id", "already", "region", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    face_id: int
    already: bool
    region: _records_pb2.Region
    error: _records_pb2.Error
    def __init__(self, index: _Optional[int] = ..., face_id: _Optional[int] = ..., already: _Optional[bool] = ..., region: _Optional[_Union[_records_pb2.Region, _Mapping]] = ..., error: _Optional[_Union[_records_pb2.Error, _Mapping]] = ...) -> None: ...

class EnrollReply(_message.Message):
    __slots__ = ("request_id", "gallery", "subject", "images")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    gallery: str
    subject: str
    images: _containers.RepeatedCompositeFieldContainer[EnrolledImage]
    def __init__(self, request_id: _Optional[str] = ..., gallery: _Optional[str] = ..., subject: _Optional[str] = ..., images: _Optional[_Iterable[_Union[EnrolledImage, _Mapping]]] = ...) -> None: ...

class SubjectRef(_message.Message):
    __slots__ = ("gallery", "subject")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject: str
    def __init__(self, gallery: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("image", "other_image", "subject", "threshold", "detector_backend")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OTHER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_BACKEND_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    other_image: bytes
    subject: SubjectRef
    threshold: float
    detector_backend: str
    def __init__(self, image: _Optional[bytes] = ..., other_image: _Optional[bytes] = ..., subject: _Optional[_Union[SubjectRef, _Mapping]] = ..., threshold: _Optional[float] = ..., detector_backend: _Optional[str] = ...) -> None: ...

class VerifyReply(_message.Message):
    __slots__ = ("verified", "distance", "threshold", "region", "other_region", "face_id")
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    OTHER_REGION_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    verified: bool
    distance: float
    threshold: float
    region: _records_pb2.Region
    other_region: _records_pb2.Region
    face_id: int
    def __init__(self, verified: _Optional[bool] = ..., distance: _Optional[float] = ..., threshold: _Optional[float] = ..., region: _Optional[_Union[_records_pb2.Region, _Mapping]] = ..., other_region: _Optional[_Union[_records_pb2.Region, _Mapping]] = ..., face_id: _Optional[int] = ...) -> None: ...

class ListGalleriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GalleryInfo(_message.Message):
    __slots__ = ("gallery", "subjects", "faces")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subjects: int
    faces: int
    def __init__(self, gallery: _Optional[str] = ..., subjects: _Optional[int] = ..., faces: _Optional[int] = ...) -> None: ...

class ListGalleriesReply(_message.Message):
    __slots__ = ("galleries",)
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedCompositeFieldContainer[GalleryInfo]
    def __init__(self, galleries: _Optional[_Iterable[_Union[GalleryInfo, _Mapping]]] = ...) -> None: ...

class ListSubjectsRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class SubjectInfo(_message.Message):
    __slots__ = ("subject", "faces")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    subject: str
    faces: int
    def __init__(self, subject: _Optional[str] = ..., faces: _Optional[int] = ...) -> None: ...

class ListSubjectsReply(_message.Message):
    __slots__ = ("subjects",)
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[SubjectInfo]
    def __init__(self, subjects: _Optional[_Iterable[_Union[SubjectInfo, _Mapping]]] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("gallery", "subject", "face_id")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject: str
    face_id: int
    def __init__(self, gallery: _Optional[str] = ..., subject: _Optional[str] = ..., face_id: _Optional[int] = ...) -> None: ...

class ForgetReply(_message.Message):
    __slots__ = ("faces_erased",)
    FACES_ERASED_FIELD_NUMBER: _ClassVar[int]
    faces_erased: int
    def __init__(self, faces_erased: _Optional[int] = ...) -> None: ...
