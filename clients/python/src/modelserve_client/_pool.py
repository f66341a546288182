"""A private protobuf descriptor pool holding the ModelServe contracts.

Our inference messages live in the protobuf package `inference` (the public KServe v2 / Triton
wire contract), exactly as tritonclient.grpc's do; two generated modules registering the same
names in protobuf's default pool cannot be imported into one process. The SDK therefore never
imports generated modules: it loads the serialized descriptors into its own pool and builds the
message classes from there, so it coexists with tritonclient.grpc (and with anything else).
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    timestamp_pb2,
)

from ._descriptors import FILE_DESCRIPTOR_SET_B64


@cache
def pool() -> descriptor_pool.DescriptorPool:
    p = descriptor_pool.DescriptorPool()
    for wkt in (duration_pb2, timestamp_pb2, field_mask_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        wkt.DESCRIPTOR.CopyToProto(fdp)
        p.Add(fdp)
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(FILE_DESCRIPTOR_SET_B64))
    for fdp in fds.file:
        p.Add(fdp)
    return p


@cache
def message(full_name: str) -> Any:
    """The message class for a fully qualified name, e.g. `inference.ModelInferRequest`."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(full_name))


@cache
def method(full_method: str) -> tuple[str, Any, Any, bool, bool]:
    """(path, request class, response class, client_streaming, server_streaming) for
    `package.Service/Method`."""
    service, _, name = full_method.rpartition("/")
    m = pool().FindServiceByName(service).methods_by_name[name]
    return (
        f"/{service}/{name}",
        message(m.input_type.full_name),
        message(m.output_type.full_name),
        m.client_streaming,
        m.server_streaming,
    )
