"""PSI drift (drift.py) on seeded samples: no drift for a fresh draw of the same distribution,
rising with the size of a location or spread shift; features from 1-D and 2-D numeric inputs only;
constant features and non-finite values handled."""

from __future__ import annotations

import numpy as np

from modelserve_registry.drift import FeatureValues, LoggedTensor, psi, reference_of, score


def _tensor(array: np.ndarray, name: str = "x", datatype: str = "FP64") -> LoggedTensor:
    return LoggedTensor(name, datatype, tuple(array.shape), np.ascontiguousarray(array).tobytes())


def test_psi_stays_low_for_the_same_distribution_and_rises_with_the_shift() -> None:
    rng = np.random.default_rng(11)
    ref = reference_of(rng.normal(0, 1, 5000), bins=10)
    assert len(ref.edges) == 11 and abs(sum(ref.shares) - 1.0) < 1e-9
    assert ref.shares[0] == ref.shares[-1] == 0.0  # below the minimum, above the maximum
    assert psi(ref, rng.normal(0, 1, 2000)) < 0.05
    scores = [psi(ref, rng.normal(shift, 1, 2000)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert scores == sorted(scores) and scores[0] > 0.02 and scores[-1] > 1.0
    assert psi(ref, rng.normal(0, 3, 2000)) > 0.25  # a wider spread moves mass to the outer bins
    assert psi(ref, np.array([])) == 0.0


def test_features_from_1d_and_2d_numeric_inputs_only() -> None:
    values = FeatureValues(max_features=10)
    values.add(
        [
            _tensor(np.arange(6, dtype=np.float64).reshape(3, 2), "m"),
            _tensor(np.array([1.0, np.nan, 3.0]), "v"),
            LoggedTensor("s", "BYTES", (1,), b"\x01\x00\x00\x00a"),
            _tensor(np.zeros((1, 1, 2)), "cube"),
            LoggedTensor("capped", "FP32", (4,)),  # over the size cap: no bytes
            LoggedTensor("broken", "FP32", (4,), b"\x00"),  # bytes do not match the shape
        ]
    )
    arrays = values.arrays()
    assert sorted(arrays) == ["m[0]", "m[1]", "v"]
    assert arrays["m[1]"].tolist() == [1.0, 3.0, 5.0] and arrays["v"].tolist() == [1.0, 3.0]
    bounded = FeatureValues(max_features=1)
    bounded.add([_tensor(np.zeros((2, 5)), "wide")])
    assert list(bounded.arrays()) == ["wide[0]"]


def test_constant_feature_and_missing_window() -> None:
    ref = {"c": reference_of(np.full(100, 7.0), bins=10)}
    assert ref["c"].edges == [7.0, float(np.nextafter(7.0, np.inf))]
    same = score(ref, {"c": np.full(50, 7.0)})[0]
    assert same.score < 1e-6 and same.count == 50 and same.mean == 7.0
    assert score(ref, {"c": np.full(50, 9.0)})[0].score > 1.0  # above the reference's range
    assert score(ref, {"c": np.full(50, 1.0)})[0].score > 1.0  # below it
    empty = score(ref, {})[0]
    assert (empty.score, empty.count, empty.reference_mean) == (0.0, 0, 7.0)
