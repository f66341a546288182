"""resolve_artifact_uri / open_artifact_file against hostile URIs on a real file system: real
files, a real FIFO, a real socket, real symlinks out of the root."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from modelserve_common.artifact_uri import (
    check_artifact_path,
    open_artifact_file,
    resolve_artifact_uri,
)
from modelserve_common.errors import InvalidArgument


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "model.onnx").write_bytes(b"weights")
    (root / "v1").mkdir()
    (root / "v1" / "model.py").write_text("x = 1\n")
    secret = outside / "secret.bin"
    secret.write_bytes(b"s" * 1234)
    os.mkfifo(root / "fifo")
    (root / "link-out").symlink_to(secret)
    (root / "dir-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "model.onnx")
    return {"root": root, "outside": outside, "secret": secret}


def _refused(uri: str, roots: list[Path], rule: str) -> str:
    with pytest.raises(InvalidArgument) as err:
        resolve_artifact_uri(uri, roots)
    assert rule in err.value.message, err.value.message
    return err.value.message


def test_accepts_file_and_directory_inside_root(tree: dict[str, Path]) -> None:
    root = tree["root"]
    assert resolve_artifact_uri(f"file://{root}/model.onnx", [root]) == (root / "model.onnx").resolve()
    assert resolve_artifact_uri(f"file://localhost{root}/v1", [root]) == (root / "v1").resolve()
    # a symlink that stays inside the root is fine; the real path comes back
    assert resolve_artifact_uri(f"file://{root}/link-in", [root]) == (root / "model.onnx").resolve()
    # percent-encoded ordinary characters decode
    (root / "a b.onnx").write_bytes(b"x")
    assert resolve_artifact_uri(f"file://{root}/a%20b.onnx", [root]).name == "a b.onnx"


@pytest.mark.parametrize(
    ("suffix", "rule"),
    [
        ("/../outside/secret.bin", "'..'"),
        ("/v1/../../outside/secret.bin", "'..'"),
        ("/%2e%2e/outside/secret.bin", "percent-encoded"),
        ("/%2E%2E/outside/secret.bin", "percent-encoded"),
        ("/.%2e/outside/secret.bin", "percent-encoded"),
        ("/%252e%252e/outside/secret.bin", "percent-encoded"),
        ("/..%2foutside%2fsecret.bin", "percent-encoded"),
        ("/./model.onnx", "'..' or '.'"),
        ("/model.onnx?x=1", "query or fragment"),
        ("/model.onnx?", "query or fragment"),
        ("/model.onnx#frag", "query or fragment"),
        ("/model.onnx%00.txt", "NUL"),
        ("/link-out", "resolves (through a symbolic link) outside"),
        ("/dir-out/secret.bin", "resolves (through a symbolic link) outside"),
        ("/fifo", "regular file or directory"),
        ("/missing.onnx", "regular file or directory"),
    ],
)
def test_hostile_paths_inside_the_uri(tree: dict[str, Path], suffix: str, rule: str) -> None:
    root = tree["root"]
    msg = _refused(f"file://{root}{suffix}", [root], rule)
    assert "1234" not in msg and "secret" not in msg.split("refused")[1]


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("http://example.com/model.onnx", "only file:///"),
        ("s3://bucket/model.onnx", "only file:///"),
        ("file://evil.example.com/etc/passwd", "host"),
        ("file://127.0.0.1/etc/passwd", "host"),
        ("file:relative/model.onnx", "absolute"),
        ("file:///etc/passwd", "not under an allowed artifact root"),
        ("file:///proc/self/environ", "not under an allowed artifact root"),
        ("file:///tmp\x00/x", "NUL"),
        ("file:///" + "a" * 5000, "too long"),
    ],
)
def test_hostile_uris(tree: dict[str, Path], uri: str, rule: str) -> None:
    _refused(uri, [tree["root"]], rule)


def test_same_message_for_existing_and_missing_files_outside_the_roots(tree: dict[str, Path]) -> None:
    root, outside = tree["root"], tree["outside"]
    existing = _refused(f"file://{outside}/secret.bin", [root], "not under an allowed")
    missing = _refused(f"file://{outside}/secreX.bin", [root], "not under an allowed")
    assert existing.replace("secret", "secreX") == missing
    assert "1234" not in existing and "sha256" not in existing


def test_socket_and_device_are_refused(tree: dict[str, Path]) -> None:
    root = tree["root"]
    sock_path = root / "s.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(sock_path))
        _refused(f"file://{sock_path}", [root], "regular file or directory")
    finally:
        s.close()
    # a device or /proc file, even when a careless root lets it in lexically
    _refused("file:///dev/null", [Path("/dev")], "pseudo file system")
    _refused("file:///proc/self/environ", [Path("/")], "pseudo file system")
    _refused("file:///sys/kernel", [Path("/")], "pseudo file system")


def test_no_roots_refuses_everything(tree: dict[str, Path]) -> None:
    _refused(f"file://{tree['root']}/model.onnx", [], "not under an allowed")


def test_symlinked_root_is_followed(tree: dict[str, Path], tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree["root"])
    assert resolve_artifact_uri(f"file://{alias}/model.onnx", [alias]).name == "model.onnx"


def test_custom_length_limit(tree: dict[str, Path]) -> None:
    uri = f"file://{tree['root']}/model.onnx"
    with pytest.raises(InvalidArgument, match="too long"):
        resolve_artifact_uri(uri, [tree["root"]], max_length=10)


def test_open_reads_regular_file(tree: dict[str, Path]) -> None:
    root = tree["root"]
    with open_artifact_file(root / "model.onnx", [root]) as f:
        assert f.read() == b"weights"
    with open_artifact_file(root / "link-in", [root]) as f:  # in-root symlink: real path opened
        assert f.read() == b"weights"


def test_open_refuses_fifo_without_blocking(tree: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument, match="regular file"):
        open_artifact_file(tree["root"] / "fifo", [tree["root"]])


def test_open_refuses_symlink_swapped_in_after_the_check(tree: dict[str, Path]) -> None:
    root = tree["root"]
    target = root / "model.onnx"
    assert resolve_artifact_uri(f"file://{target}", [root]) == target.resolve()
    target.unlink()
    target.symlink_to(tree["secret"])  # swapped between the check and the read
    with pytest.raises(InvalidArgument, match="outside") as err:
        open_artifact_file(target, [root])
    assert "1234" not in err.value.message


def test_open_refuses_directory_and_outside(tree: dict[str, Path]) -> None:
    root = tree["root"]
    with pytest.raises(InvalidArgument, match="regular file"):
        open_artifact_file(root / "v1", [root])
    with pytest.raises(InvalidArgument, match="outside"):
        open_artifact_file(tree["secret"], [root])
    with pytest.raises(InvalidArgument, match="outside"):
        check_artifact_path(root / "dir-out" / "secret.bin", [root])


def test_check_path_names_the_rule(tree: dict[str, Path]) -> None:
    root = tree["root"]
    assert check_artifact_path(root / "v1" / "model.py", [root]) == (root / "v1" / "model.py").resolve()
    with pytest.raises(InvalidArgument, match="artifact path .* not under an allowed artifact root"):
        check_artifact_path(tree["secret"], [root])
    with pytest.raises(InvalidArgument, match="artifact path .* not under an allowed artifact root"):
        check_artifact_path(root / ".." / "outside" / "secret.bin", [root])
    with pytest.raises(InvalidArgument, match="symbolic link"):
        check_artifact_path(root / "link-out", [root])
