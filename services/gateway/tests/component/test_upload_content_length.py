"""An upload whose Content-Length does not fit a 64-bit size answers 413 in the JSON error shape
(it was a 500: the size went into an int64 protobuf field); one beyond what the HTTP parser reads
(above 2^64 - 1) is its 400."""

from __future__ import annotations

import asyncio
import json

import pytest


async def _post_head(port: int, content_length: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/models/m/versions:upload?backend=onnx HTTP/1.1\r\nhost: x\r\n"
            + f"content-length: {content_length}\r\n\r\n".encode()
            + b"abc"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            body = await reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), headers, body
    finally:
        writer.close()


@pytest.mark.parametrize("declared", [str(2**63), str(2**64 - 1), "000" + str(2**63)])
async def test_content_length_beyond_int64_is_413_json(gateway, declared: str) -> None:
    status, headers, body = await _post_head(gateway.http_port, declared)
    assert status == 413, body
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert "does not fit a 64-bit size" in doc["message"], doc


async def test_content_length_beyond_what_http_parses_is_400_json(gateway) -> None:
    status, headers, body = await _post_head(gateway.http_port, "9" * 5000)
    assert status == 400 and headers["content-type"] == "application/json", body
    assert "Content-Length" in json.loads(body)["message"]
