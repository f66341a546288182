"""Input rules of the registry's resources: names, text and tag bounds, tensor specs, batching,
rate limits, deployment targets, version input, etags, scopes, and the list filter/order_by
grammar. Pure functions: no store, no I/O."""

from __future__ import annotations

import re

from modelserve_common.identity import Caller
from modelserve_common.tensors import BY_NAME
from modelserve_registry import errors
from modelserve_registry.domain import (
    BACKENDS,
    Batching,
    ModelVersion,
    RateLimit,
    Target,
    TensorSpec,
)
from modelserve_registry.store_models import FilterTerm

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
LATEST = "latest"
ARTIFACT_FORMATS = ("", "tar", "zip")
"""An artifact's packaging: a single file (""), or a tar or zip archive of a folder."""
FILTER_FIELDS = {"name", "description", "tenant"}
FILTER_TERM_RE = re.compile(r'^\s*([a-z_]+(?:\.[A-Za-z0-9_.-]+)?)\s*(!=|=|:)\s*"((?:[^"\\]|\\.)*)"\s*$')


def check_name(kind: str, name: str) -> None:
    if not name:
        raise errors.InvalidField(f"{kind} name is required")
    if not NAME_RE.match(name) or ".." in name:
        raise errors.InvalidField(
            f"{kind} name must match ^[a-z0-9][a-z0-9._-]{{0,62}}$ without '..', got {name[:80]!r}"
        )


def check_alias_name(alias: str) -> None:
    if not ALIAS_RE.match(alias) or ".." in alias or alias == LATEST:
        raise errors.InvalidField(
            f"alias must match ^[a-z][a-z0-9._-]{{0,62}}$ and not be 'latest', got {alias[:80]!r}"
        )


def require(caller: Caller, scope: str) -> None:
    if caller.has(scope):
        return
    raise errors.MissingScope(
        f"this call needs the {scope!r} scope; the key has {sorted(caller.scopes) or 'none'}"
    )


def check_etag(kind: str, given: str, revision: int) -> None:
    if given and given != str(revision):
        raise errors.EtagMismatch(
            f"{kind} was changed since it was read (etag {given!r}, current {str(revision)!r}): "
            "read it again and retry"
        )


def check_update_mask(paths: list[str], allowed: tuple[str, ...]) -> None:
    for p in paths:
        if p not in allowed:
            raise errors.InvalidField(
                f"update_mask path {p!r} cannot be changed; allowed: {', '.join(allowed)}"
            )


def check_text(max_bytes: int, field: str, value: str) -> str:
    if len(value.encode()) > max_bytes:
        raise errors.InvalidField(f"{field} is {len(value.encode())} bytes; at most {max_bytes} allowed")
    return value


def check_tags(max_tags: int, max_bytes: int, field: str, tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > max_tags:
        raise errors.InvalidField(f"{field} has {len(tags)} entries; at most {max_tags} allowed")
    for k, v in tags.items():
        if not k or len(k) > 128:
            raise errors.InvalidField(f"{field} keys must be 1 to 128 characters, got {k[:140]!r}")
        check_text(max_bytes, f"{field}[{k!r}]", v)
    return dict(tags)


def check_max_models(value: int) -> None:
    if value < 0:
        raise errors.InvalidField(f"max_models must be >= 0, got {value}")


def check_tensor_spec(field: str, spec: TensorSpec) -> None:
    if not spec.name:
        raise errors.InvalidField(f"{field}: every tensor needs a name")
    if spec.datatype not in BY_NAME:
        raise errors.InvalidField(
            f"{field} tensor {spec.name!r}: datatype must be one of {sorted(BY_NAME)}, got {spec.datatype!r}"
        )
    if any(d < -1 for d in spec.shape):
        raise errors.InvalidField(f"{field} tensor {spec.name!r}: dimensions must be >= -1, got {spec.shape}")


def check_tensor_specs(field: str, specs: list[TensorSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        check_tensor_spec(field, spec)
        if spec.name in seen:
            raise errors.InvalidField(f"{field} has tensor {spec.name!r} twice")
        seen.add(spec.name)


def check_batching(field: str, b: Batching) -> None:
    for name in ("max_batch_size", "max_queue_delay_us", "max_queue_size"):
        if getattr(b, name) < 0:
            raise errors.InvalidField(f"{field}.{name} must be >= 0, got {getattr(b, name)}")
    if any(s <= 0 for s in b.preferred_batch_sizes):
        raise errors.InvalidField(
            f"{field}.preferred_batch_sizes must be positive, got {b.preferred_batch_sizes}"
        )
    if b.max_batch_size and any(s > b.max_batch_size for s in b.preferred_batch_sizes):
        raise errors.InvalidField(
            f"{field}.preferred_batch_sizes must not exceed max_batch_size {b.max_batch_size}"
        )


def check_rate_limit(field: str, r: RateLimit) -> None:
    if r.requests_per_second < 0 or r.burst < 0 or r.requests_per_second != r.requests_per_second:
        raise errors.InvalidField(f"{field}: requests_per_second and burst must be >= 0")


def check_targets(targets: list[Target]) -> None:
    seen: set[int] = set()
    for i, t in enumerate(targets):
        if t.version in seen:
            raise errors.InvalidField(f"targets[{i}]: version {t.version} is listed twice")
        seen.add(t.version)
        if not 0 <= t.weight <= 100:
            raise errors.InvalidField(f"targets[{i}]: weight must be 0..100, got {t.weight}")
        if t.mirror and t.weight != 0:
            raise errors.InvalidField(f"targets[{i}]: a mirror target must have weight 0, got {t.weight}")
    serving = [t for t in targets if not t.mirror]
    if targets and not serving:
        raise errors.InvalidField("a deployment with targets needs at least one non-mirror target")
    total = sum(t.weight for t in serving)
    if serving and total != 100:
        raise errors.InvalidField(f"weights of non-mirror targets must sum to 100, got {total}")


def check_version_input(v: ModelVersion, max_tags: int, max_bytes: int) -> None:
    """A new version's fields (not its artifact_uri, which needs the file system). A status of
    UNSPECIFIED becomes PENDING."""
    if not SHA256_RE.match(v.artifact_sha256):
        raise errors.InvalidField(
            f"artifact_sha256 must be 64 lowercase hex digits, got {v.artifact_sha256[:80]!r}"
        )
    if v.backend not in BACKENDS:
        raise errors.InvalidField(f"backend must be one of {list(BACKENDS)}, got {v.backend!r}")
    if v.artifact_format not in ARTIFACT_FORMATS:
        raise errors.InvalidField(
            f"artifact_format must be one of {list(ARTIFACT_FORMATS)}, got {v.artifact_format[:80]!r}"
        )
    check_tensor_specs("inputs", v.inputs)
    check_tensor_specs("outputs", v.outputs)
    check_batching("batching", v.batching)
    if v.status == "UNSPECIFIED":
        v.status = "PENDING"
    if v.status not in ("PENDING", "READY"):
        raise errors.InvalidField(f"a new version's status must be PENDING or READY, got {v.status!r}")
    check_text(max_bytes, "description", v.description)
    check_text(max_bytes, "status_message", v.status_message)
    check_tags(max_tags, max_bytes, "tags", v.tags)
    check_tags(max_tags, max_bytes, "metadata", v.metadata)
    check_text(max_bytes, "lineage.source_run", v.source_run)
    check_text(max_bytes, "lineage.source_uri", v.source_uri)


def parse_filter(text: str) -> list[FilterTerm]:
    """``field op "value"`` terms joined by AND (fields name, description, tenant, tags.<key>)."""
    if not text.strip():
        return []
    terms: list[FilterTerm] = []
    for raw in re.split(r"\s+AND\s+", text.strip()):
        m = FILTER_TERM_RE.match(raw)
        if not m:
            raise errors.InvalidField(
                f'filter term {raw[:100]!r} is not `field = "value"`, `field != "value"` or `field : "value"`'
            )
        field, op, value = m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))
        if field not in FILTER_FIELDS and not field.startswith("tags."):
            raise errors.InvalidField(
                f"cannot filter on {field!r}; fields: name, description, tenant, tags.<key>"
            )
        terms.append((field, op, value))
    return terms


def parse_order_by(text: str) -> list[tuple[str, bool]]:
    """``field [desc], …`` with fields name, create_time, update_time."""
    order: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        words = part.split()
        if (
            words[0] not in ("name", "create_time", "update_time")
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise errors.InvalidField(
                f"order_by {part!r}: expected name, create_time or update_time, then asc or desc"
            )
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order or [("name", False)]
