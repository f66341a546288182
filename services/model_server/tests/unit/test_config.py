"""config.pbtxt reading: Triton's own files (with fields we do not support) load; invalid configs say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve_model_server.config import read_config
from modelserve_model_server.errors import InvalidModelConfig

TRITON_STYLE = """
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 16
version_policy: { latest: { num_versions: 1 } }
input [
  { name: "image", data_type: TYPE_FP32, format: FORMAT_NCHW, dims: [ 3, -1, -1 ] }
]
output [ { name: "logits", data_type: TYPE_FP16, dims: [ 1000 ], label_filename: "labels.txt" } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { max_queue_size: 32, default_timeout_microseconds: 2000 }
}
instance_group [ { count: 2, kind: KIND_CPU }, { count: 1, kind: KIND_CPU } ]
optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }
parameters { key: "k" value: { string_value: "v" } }
"""


def write(tmp_path: Path, text: str, name: str = "resnet") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.pbtxt").write_text(text)
    return d


def test_config_triton_file_with_unsupported_fields_loads(tmp_path):
    spec = read_config(write(tmp_path, TRITON_STYLE))
    assert (spec.name, spec.backend, spec.platform, spec.max_batch_size) == (
        "resnet",
        "onnxruntime",
        "onnxruntime_onnx",
        16,
    )
    assert spec.inputs[0].dims == (3, -1, -1) and spec.outputs[0].datatype.name == "FP16"
    b = spec.batching
    assert (
        b.dynamic,
        b.preferred_batch_sizes,
        b.max_queue_delay_us,
        b.max_queue_size,
        b.default_timeout_us,
    ) == (
        True,
        (4, 8),
        100,
        32,
        2000,
    )
    assert spec.instance_count == 3 and spec.parameters == {"k": "v"}
    assert spec.config.backend == "onnxruntime"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('backend: "tensorflow"\ninput [{name: "x", data_type: TYPE_FP32, dims: [1]}]', ["not supported"]),
        (
            'backend: "python"\ninput [{name: "x", data_type: TYPE_FP32, dims: [1]}]',
            ["at least one input and one output"],
        ),
        (
            'backend: "python"\nmax_batch_size: 4\ninput [{name: "x", data_type: TYPE_FP32, dims: [0]}]\n'
            'output [{name: "y", data_type: TYPE_FP32, dims: [1]}]',
            ["dims must be -1 or positive"],
        ),
        (
            'backend: "python"\nmax_batch_size: 4\ninput [{name: "../x", data_type: TYPE_FP32, dims: [1]}]\n'
            'output [{name: "y", data_type: TYPE_FP32, dims: [1]}]',
            ["'../x' is not valid"],
        ),
        (
            'backend: "python"\nmax_batch_size: 4\ninput [{name: "x", data_type: TYPE_FP32, dims: [1]}]\n'
            'output [{name: "y", data_type: TYPE_FP32, dims: [1]}]\n'
            "dynamic_batching { preferred_batch_size: [8] }",
            ["preferred_batch_size 8"],
        ),
        (
            'backend: "python"\ninput [{name: "x", data_type: TYPE_FP32, dims: [1]}]\n'
            'output [{name: "y", data_type: TYPE_FP32, dims: [1]}]\ndynamic_batching { }',
            ["dynamic_batching needs max_batch_size > 0"],
        ),
        ('name: "other"\nbackend: "python"', ["folder is 'resnet'"]),
        ("backend: python python", ["does not parse"]),
    ],
)
def test_config_invalid_says_why(tmp_path, text, words):
    with pytest.raises(InvalidModelConfig) as exc:
        read_config(write(tmp_path, text))
    for w in words:
        assert w in exc.value.message
