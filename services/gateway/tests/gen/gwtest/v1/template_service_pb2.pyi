import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Colour(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOUR_UNSPECIFIED: _ClassVar[Colour]
    COLOUR_RED: _ClassVar[Colour]
    COLOUR_BLUE: _ClassVar[Colour]

COLOUR_UNSPECIFIED: Colour
COLOUR_RED: Colour
COLOUR_BLUE: Colour

class Payload(_message.Message):
    __slots__ = ("title", "big", "tags")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BIG_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    title: str
    big: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self, title: _Optional[str] = ..., big: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...
    ) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = (
        "name",
        "shelf",
        "payload",
        "ids",
        "colour",
        "big_number",
        "flag",
        "when",
        "ratio",
        "page_size",
    )
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHELF_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    BIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shelf: str
    payload: Payload
    ids: _containers.RepeatedScalarFieldContainer[int]
    colour: Colour
    big_number: int
    flag: bool
    when: _timestamp_pb2.Timestamp
    ratio: float
    page_size: int
    def __init__(
        self,
        name: _Optional[str] = ...,
        shelf: _Optional[str] = ...,
        payload: _Optional[_Union[Payload, _Mapping]] = ...,
        ids: _Optional[_Iterable[int]] = ...,
        colour: _Optional[_Union[Colour, str]] = ...,
        big_number: _Optional[int] = ...,
        flag: bool = ...,
        when: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...,
        ratio: _Optional[float] = ...,
        page_size: _Optional[int] = ...,
    ) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("echoed", "metadata")
    ECHOED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    echoed: EchoRequest
    metadata: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        echoed: _Optional[_Union[EchoRequest, _Mapping]] = ...,
        metadata: _Optional[_Iterable[str]] = ...,
    ) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("n", "fail_after", "delay_ms")
    N_FIELD_NUMBER: _ClassVar[int]
    FAIL_AFTER_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    n: int
    fail_after: int
    delay_ms: int
    def __init__(
        self, n: _Optional[int] = ..., fail_after: _Optional[int] = ..., delay_ms: _Optional[int] = ...
    ) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("i",)
    I_FIELD_NUMBER: _ClassVar[int]
    i: int
    def __init__(self, i: _Optional[int] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("code", "delay_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    delay_ms: int
    def __init__(self, code: _Optional[int] = ..., delay_ms: _Optional[int] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = ("ok",)
    OK_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    def __init__(self, ok: bool = ...) -> None: ...
