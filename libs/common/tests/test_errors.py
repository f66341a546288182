"""errors.from_status: every gRPC status code has its ServiceError class."""

from __future__ import annotations

import grpc
import pytest

from modelserve_common import errors


@pytest.mark.parametrize(
    "code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK], ids=lambda c: c.name
)
def test_from_status_keeps_every_error_code_and_the_message(code: grpc.StatusCode) -> None:
    err = errors.from_status(code, f"said {code.name}")
    assert isinstance(err, errors.ServiceError)
    assert err.code == code
    assert err.message == f"said {code.name}"


def test_from_status_ok_is_not_an_error_and_becomes_internal() -> None:
    err = errors.from_status(grpc.StatusCode.OK, "odd")
    assert type(err) is errors.Internal
    assert err.code == grpc.StatusCode.INTERNAL


def test_each_status_code_has_exactly_one_class() -> None:
    codes = [cls.code for cls in errors.all_error_classes()]
    assert len(codes) == len(set(codes))
    assert set(codes) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
