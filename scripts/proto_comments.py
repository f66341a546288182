"""Writes the comments of the .proto files as JSON, keyed by full name, for the gateway's OpenAPI
document (services, RPCs, messages, fields, enums and enum values).

The generated Python code drops the SourceCodeInfo that holds the comments, so scripts/gen_proto.sh
runs ``protoc --include_source_info --descriptor_set_out`` and this script reads that set:

    python scripts/proto_comments.py DESCRIPTOR_SET OUT_JSON

A comment is the element's leading comment (its trailing one when there is none), with the one
space after ``//`` removed and the lines kept. Output is sorted and indented, so a comment change
shows as a one-line diff.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2

# Field numbers of the SourceCodeInfo paths (descriptor.proto).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Path_ = tuple[int, ...]


def _clean(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


def _enum_names(
    enum: descriptor_pb2.EnumDescriptorProto, prefix: str, path: Path_
) -> Iterator[tuple[Path_, str]]:
    name = f"{prefix}.{enum.name}"
    yield path, name
    for i, value in enumerate(enum.value):
        # keyed under their enum (pkg.Enum.VALUE), though protobuf scopes values beside the enum
        yield (*path, _ENUM_VALUE, i), f"{name}.{value.name}"


def _message_names(
    message: descriptor_pb2.DescriptorProto, prefix: str, path: Path_
) -> Iterator[tuple[Path_, str]]:
    name = f"{prefix}.{message.name}"
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, _MESSAGE_FIELD, i), f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _message_names(nested, name, (*path, _MESSAGE_NESTED, i))
    for i, enum in enumerate(message.enum_type):
        yield from _enum_names(enum, name, (*path, _MESSAGE_ENUM, i))


def _file_names(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[Path_, str]]:
    package = proto.package
    for i, message in enumerate(proto.message_type):
        yield from _message_names(message, package, (_FILE_MESSAGE, i))
    for i, enum in enumerate(proto.enum_type):
        yield from _enum_names(enum, package, (_FILE_ENUM, i))
    for i, service in enumerate(proto.service):
        name = f"{package}.{service.name}"
        yield (_FILE_SERVICE, i), name
        for j, method in enumerate(service.method):
            yield (_FILE_SERVICE, i, _SERVICE_METHOD, j), f"{name}.{method.name}"


def comments(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    out: dict[str, str] = {}
    for proto in descriptor_set.file:
        by_path = {tuple(loc.path): loc for loc in proto.source_code_info.location}
        for path, name in _file_names(proto):
            loc = by_path.get(path)
            if loc is None:
                continue
            text = _clean(loc.leading_comments or loc.trailing_comments)
            if text:
                out[name] = text
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(Path(argv[0]).read_bytes())
    found = comments(descriptor_set)
    if not found:
        print(f"{argv[0]}: no comments (was protoc run with --include_source_info?)", file=sys.stderr)
        return 1
    Path(argv[1]).write_text(json.dumps(found, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
