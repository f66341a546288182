"""Path templates: every grammar form, percent-decoding rules, verbs, specificity, bad templates."""

from __future__ import annotations

import pytest

from modelserve_gateway.transcoding.template import TemplateError, parse_template


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/models/{model}", "/v1/models/m1", {"model": "m1"}),
        ("/v1/models/{model}", "/v1/models/a%20b", {"model": "a b"}),
        ("/v1/models/{model}", "/v1/models/a%2Fb", {"model": "a/b"}),
        (
            "/v1/{name=projects/*/items/**}:deep",
            "/v1/projects/p/items/x/y:deep",
            {"name": "projects/p/items/x/y"},
        ),
        ("/v1/{name=projects/*/items/**}:deep", "/v1/projects/p/items:deep", {"name": "projects/p/items"}),
        ("/v1/{name=projects/*}", "/v1/projects/a%2Fb", {"name": "projects/a%2Fb"}),
        ("/v1/wild/*/{name}/**", "/v1/wild/x/n", {"name": "n"}),
        ("/v1/wild/*/{name}/**", "/v1/wild/x/n/1/2/3", {"name": "n"}),
        ("/v1/pipelines/{pipeline}:run", "/v1/pipelines/p:run", {"pipeline": "p"}),
        ("/v1/{a.b.c}", "/v1/z", {"a.b.c": "z"}),
        ("/v1/{x=**}", "/v1/a/b/c", {"x": "a/b/c"}),
    ],
)
def test_template_matches_and_binds(template: str, path: str, expected: dict[str, str]) -> None:
    assert parse_template(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/models/{model}", "/v1/models"),
        ("/v1/models/{model}", "/v1/models/a/b"),
        ("/v1/pipelines/{pipeline}:run", "/v1/pipelines/p"),
        ("/v1/pipelines/{pipeline}:run", "/v1/pipelines/p:stop"),
        ("/v1/{name=projects/*}", "/v1/folders/x"),
        ("/v1/wild/*/{name}/**", "/v1/wild/x"),
    ],
)
def test_template_rejects_other_paths(template: str, path: str) -> None:
    assert parse_template(template).match(path) is None


@pytest.mark.parametrize(
    "bad",
    ["v1/x", "/v1/{a", "/v1/a}", "/v1/{a}/{a}", "/v1/{1a}", "/v1/{a={b}}", "/v1//x", "/v1/x:"],
)
def test_template_malformed_raises(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(bad)


def test_template_specificity_prefers_literals() -> None:
    general = parse_template("/v1/{name=**}")
    specific = parse_template("/v1/models/{model}")
    assert specific.specificity > general.specificity
    assert parse_template("/v1/{name=projects/*/items/**}:deep").openapi_path() == "/v1/{name}:deep"
