"""Opaque page tokens: base64 JSON of the next offset and a fingerprint of the query (filter,
order_by or the listed collection), so a token cannot be replayed against another query."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from modelserve_registry import errors

DEFAULT_PAGE_SIZE = 50


@dataclass
class Page:
    offset: int
    size: int
    fingerprint: str


def open_page(token: str, size: int, fingerprint: str, max_page_size: int) -> Page:
    """The page a request asks for: ``size`` 0 means 50, anything above ``max_page_size`` is
    capped; a token must come from this registry and the same query."""
    if size < 0:
        raise errors.InvalidField(f"page_size must be >= 0, got {size}")
    size = min(size or DEFAULT_PAGE_SIZE, max_page_size)
    if not token:
        return Page(0, size, fingerprint)
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, fp = int(data["o"]), str(data["f"])
    except Exception:
        raise errors.InvalidField("page_token is not a token this registry issued") from None
    if fp != fingerprint:
        raise errors.InvalidField("page_token was issued for a different filter or order_by")
    return Page(offset, size, fingerprint)


def next_token(page: Page, got: int) -> str:
    """The token of the page after ``page`` when it came back full, else "" (the last page)."""
    if got < page.size:
        return ""
    raw = json.dumps({"o": page.offset + got, "f": page.fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()
