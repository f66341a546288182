"""``google.api.http`` path templates: parse once, match many.

Grammar (google/api/http.proto)::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;

A template compiles to one anchored regular expression over the raw (still percent-encoded) path.
``*`` matches one segment, ``**`` any number (including none). A variable of a single segment is
percent-decoded fully; a multi-segment one keeps ``%2F`` encoded, as the spec says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_LITERAL = re.compile(r"[^/{}*:=]+\Z")


class TemplateError(ValueError):
    """A malformed path template (raised at start-up, never per request)."""


@dataclass(frozen=True)
class Variable:
    """A captured field: its dotted field path and whether it may span several segments."""

    field_path: str
    multi_segment: bool
    group: str


@dataclass(frozen=True)
class PathTemplate:
    """A compiled template: ``match(raw_path)`` returns {field_path: value} or None."""

    source: str
    regex: re.Pattern[str]
    variables: tuple[Variable, ...]
    verb: str
    literal_count: int
    segment_count: int
    has_wildcard_tail: bool = field(default=False)

    def match(self, raw_path: str) -> dict[str, str] | None:
        m = self.regex.match(raw_path)
        if m is None:
            return None
        out: dict[str, str] = {}
        for var in self.variables:
            value = m.group(var.group)
            if var.multi_segment:
                out[var.field_path] = _decode_multi(value)
            else:
                out[var.field_path] = unquote(value)
        return out

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key: templates with a verb first, then more literal segments, then longer
        templates, then no ``**`` tail. A verb is never part of a variable (google.api.http):
        ``/v1/executions/e1:watch`` must reach ``/v1/executions/{execution}:watch`` before
        ``/v1/executions/{execution}`` can take ``e1:watch`` as the execution. A template with a
        verb only matches paths that end in ``:verb``, so trying those first is safe."""
        return (
            1 if self.verb else 0,
            self.literal_count,
            self.segment_count,
            0 if self.has_wildcard_tail else 1,
        )

    def openapi_path(self) -> str:
        """The template as an OpenAPI path: each variable becomes ``{field_path}``."""
        return _openapi_path(self.source)


def _decode_multi(value: str) -> str:
    # Reserved expansion: decode everything except an encoded slash.
    parts = re.split(r"(%2[Ff])", value)
    return "".join(p if p.lower() == "%2f" else unquote(p) for p in parts)


def _split_top(text: str) -> list[str]:
    """Splits on '/' outside braces."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError("unbalanced '}'")
        if ch == "/" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise TemplateError("unbalanced '{'")
    parts.append("".join(cur))
    return parts


def parse_template(source: str) -> PathTemplate:
    """Compiles ``source`` (e.g. ``/v1/{name=projects/*/models/**}:run``)."""
    if not source.startswith("/"):
        raise TemplateError(f"template {source!r} must start with '/'")
    body, verb = _split_verb(source)
    segments = _split_top(body)
    compiler = _Compiler(source)
    pattern: list[str] = []
    wildcard_tail = False
    for i, seg in enumerate(segments):
        rx, is_multi = compiler.seg_regex(seg, False)
        if i == len(segments) - 1 and (is_multi or seg.endswith("**}")):
            wildcard_tail = True
        if i > 0 and rx == ".*":
            pattern.append("(?:/.*)?")
        else:
            pattern.append(("/" if i > 0 else "") + rx)
    variables = compiler.variables
    names = [v.field_path for v in variables]
    if len(set(names)) != len(names):
        raise TemplateError(f"template {source!r}: a field is bound twice")
    verb_rx = ":" + re.escape(verb) if verb else ""
    regex = re.compile("/" + "".join(pattern) + verb_rx + r"\Z")
    return PathTemplate(
        source=source,
        regex=regex,
        variables=tuple(variables),
        verb=verb,
        literal_count=compiler.literals,
        segment_count=compiler.count,
        has_wildcard_tail=wildcard_tail,
    )


def _split_verb(source: str) -> tuple[str, str]:
    """(segments, verb) of a template: the verb is a ':' after the last '/' and outside braces."""
    body = source[1:]
    depth = 0
    last_slash = -1
    colon = -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "/" and depth == 0:
            last_slash = i
            colon = -1
        elif ch == ":" and depth == 0 and i > last_slash:
            colon = i
    if colon < 0:
        return body, ""
    verb = body[colon + 1 :]
    if not _LITERAL.match(verb):
        raise TemplateError(f"template {source!r}: bad verb {verb!r}")
    return body[:colon], verb


class _Compiler:
    """Segment and variable regexes of one template, with the counts its ordering needs."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.variables: list[Variable] = []
        self.literals = 0
        self.count = 0

    def seg_regex(self, seg: str, in_var: bool) -> tuple[str, bool]:
        self.count += 1
        if seg == "*":
            return "[^/]+", False
        if seg == "**":
            return ".*", True
        if seg.startswith("{"):
            if in_var:
                raise TemplateError(f"template {self.source!r}: nested variable")
            return self.var_regex(seg), False
        if not seg or not _LITERAL.match(seg):
            raise TemplateError(f"template {self.source!r}: bad segment {seg!r}")
        self.literals += 1
        return re.escape(seg), False

    def var_regex(self, seg: str) -> str:
        if not seg.endswith("}"):
            raise TemplateError(f"template {self.source!r}: bad variable {seg!r}")
        inner = seg[1:-1]
        name, eq, sub = inner.partition("=")
        if not _IDENT.match(name):
            raise TemplateError(f"template {self.source!r}: bad field path {name!r}")
        subsegs = _split_top(sub) if eq else ["*"]
        parts = []
        multi = False
        for s in subsegs:
            rx, is_multi = self.seg_regex(s, True)
            multi = multi or is_multi or len(subsegs) > 1
            parts.append(rx)
        group = f"v{len(self.variables)}"
        self.variables.append(Variable(name, multi, group))
        # '**' may match nothing: make the joining slash optional before it.
        joined = parts[0]
        for rx in parts[1:]:
            joined += "(?:/.*)?" if rx == ".*" else "/" + rx
        return f"(?P<{group}>{joined})"


def _openapi_path(source: str) -> str:
    out: list[str] = []
    depth = 0
    name: list[str] = []
    skipping = False
    for ch in source:
        if ch == "{":
            depth += 1
            name = []
            skipping = False
            out.append("{")
        elif ch == "}":
            depth -= 1
            out.append("".join(name) + "}")
        elif depth:
            if ch == "=":
                skipping = True
            elif not skipping:
                name.append(ch)
        else:
            out.append(ch)
    return "".join(out)
