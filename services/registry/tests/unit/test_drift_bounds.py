"""A wide 2-D input costs what its first max_features columns cost: a [1, 2_000_000] BOOL sample
took 3.8 s and 587 MB (a float64 copy, a view and a name per column) before the columns were cut
to the feature budget. Measured in bytes allocated (tracemalloc), not time."""

from __future__ import annotations

import tracemalloc

from modelserve_registry.drift import LoggedTensor, build_reference

WIDTH = 2_000_000


def test_wide_sample_is_cut_to_the_feature_budget_before_conversion() -> None:
    wide = LoggedTensor("b", "BOOL", (1, WIDTH), b"\x01" * WIDTH)
    tracemalloc.start()
    try:
        reference = build_reference([[wide]], max_features=256, bins=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(reference) == sorted(f"b[{j}]" for j in range(256))
    assert peak < 32 * 1024**2, peak  # the 2 MB input plus a little; was ~587 MB


def test_a_column_already_known_keeps_its_values_when_the_budget_is_spent() -> None:
    narrow = LoggedTensor("a", "FP64", (2, 2), b"\x00" * 32)
    wide = LoggedTensor("b", "INT8", (2, 5), bytes(range(10)))
    reference = build_reference([[narrow, wide], [narrow, wide]], max_features=3, bins=4)
    assert list(reference) == ["a[0]", "a[1]", "b[0]"]
    assert reference["b[0]"].count == 4 and reference["a[1]"].count == 4
