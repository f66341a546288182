"""The largest upload must fit in S3's 10,000 multipart parts of the configured part size."""

from __future__ import annotations

import pytest

from modelserve_registry.settings import RegistrySettings

MiB = 1024 * 1024


def test_an_s3_store_refuses_a_largest_upload_beyond_its_parts() -> None:
    s3 = {"kind": "s3", "s3": {"bucket": "b", "part_size_bytes": 8 * MiB}}
    with pytest.raises(ValueError, match="max_artifact_bytes"):
        RegistrySettings(artifacts=s3, max_artifact_bytes=8 * MiB * 10_000 + 1)
    assert RegistrySettings(artifacts=s3, max_artifact_bytes=8 * MiB * 10_000).max_artifact_bytes > 0
    # the local store has no parts
    assert RegistrySettings(max_artifact_bytes=10**12).max_artifact_bytes == 10**12
