"""The registry's glibc mmap-threshold setting (REGISTRY_MALLOC_MMAP_THRESHOLD_BYTES)."""

from __future__ import annotations

import platform

import pytest

from modelserve_registry.malloc import fix_mmap_threshold, limit_arenas
from modelserve_registry.settings import RegistrySettings


def test_zero_keeps_the_default() -> None:
    assert fix_mmap_threshold(0) is False
    assert limit_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_default_threshold() -> None:
    assert fix_mmap_threshold(RegistrySettings().malloc_mmap_threshold_bytes) is True
    assert limit_arenas(RegistrySettings().malloc_arena_max) is True


def test_the_setting_is_bounded() -> None:
    with pytest.raises(ValueError, match="malloc_mmap_threshold_bytes"):
        RegistrySettings(malloc_mmap_threshold_bytes=64 * 1024**2)
