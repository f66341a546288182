"""Routes compiled at start-up from the ``google.api.http`` options of every fronted method."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from modelserve_gateway.transcoding.template import PathTemplate, parse_template


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one gRPC method."""

    method: str  # "/modelserve.registry.v1.RegistryService/GetModel"
    verb: str  # "GET"
    template: PathTemplate
    body: str  # "", "*" or a field path
    response_body: str
    request_type: type[Message]
    response_type: type[Message]
    server_streaming: bool
    client_streaming: bool
    upstream: str  # name of the upstream ("registry", "model_server", "orchestrator", ...)
    descriptor: MethodDescriptor
    binding_index: int  # 0 for the primary binding, 1.. for additional_bindings

    @property
    def service_name(self) -> str:
        return self.descriptor.containing_service.full_name

    @property
    def method_name(self) -> str:
        return self.descriptor.name


def message_class(desc: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str, str]]:
    """(verb, path, body, response_body) of a rule and of its additional bindings."""
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        yield rule.custom.kind.upper(), rule.custom.path, rule.body, rule.response_body
    elif kind:
        yield kind.upper(), getattr(rule, kind), rule.body, rule.response_body
    for extra in rule.additional_bindings:
        if extra.additional_bindings:
            raise ValueError("additional_bindings may not nest")
        yield from _bindings(extra)


def _check_field_path(desc: Descriptor, path: str, what: str, method: str) -> None:
    cur: Descriptor | None = desc
    for part in path.split("."):
        if cur is None:
            raise ValueError(f"{method}: {what} {path!r} goes through a non-message field")
        f = cur.fields_by_name.get(part)
        if f is None:
            raise ValueError(f"{method}: {what} {path!r} names no field of {cur.full_name}")
        cur = f.message_type


def compile_routes(services: Sequence[tuple[ServiceDescriptor, str]]) -> list[Route]:
    """Every binding of every method of ``services`` ((descriptor, upstream name) pairs)."""
    routes: list[Route] = []
    for service, upstream in services:
        for md in service.methods:
            opts = md.GetOptions()
            if not opts.HasExtension(annotations_pb2.http):
                continue
            rule = opts.Extensions[annotations_pb2.http]
            full = f"/{service.full_name}/{md.name}"
            for i, (verb, path, body, response_body) in enumerate(_bindings(rule)):
                template = parse_template(path)
                for var in template.variables:
                    _check_field_path(md.input_type, var.field_path, "path variable", full)
                if body and body != "*":
                    _check_field_path(md.input_type, body, "body", full)
                if response_body:
                    _check_field_path(md.output_type, response_body, "response_body", full)
                routes.append(
                    Route(
                        method=full,
                        verb=verb,
                        template=template,
                        body=body,
                        response_body=response_body,
                        request_type=message_class(md.input_type),
                        response_type=message_class(md.output_type),
                        server_streaming=md.server_streaming,
                        client_streaming=md.client_streaming,
                        upstream=upstream,
                        descriptor=md,
                        binding_index=i,
                    )
                )
    return routes


class Router:
    """Finds the route of (HTTP method, raw path). Candidates are indexed by verb and by their
    first literal segment, and tried most specific first."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._by_verb: dict[str, list[Route]] = {}
        for r in sorted(routes, key=lambda r: r.template.specificity, reverse=True):
            self._by_verb.setdefault(r.verb, []).append(r)

    def match(self, verb: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        for r in self._by_verb.get(verb, ()):
            found = r.template.match(raw_path)
            if found is not None:
                return r, found
        return None

    def allowed_verbs(self, raw_path: str) -> list[str]:
        """Verbs that have a route for ``raw_path`` (for 405 answers and CORS preflight)."""
        return sorted(
            verb
            for verb, routes in self._by_verb.items()
            if any(r.template.match(raw_path) is not None for r in routes)
        )
