"""Artifact benchmark (issue 15): large uploads through the platform, and the model server's cold
fetch against its warm cache. Real processes: registry (artifact store S3 on a moto server),
gateway, model server; all on this machine.

  upload        REST upload (chunked body, 1 MiB chunks) of --size MiB through gateway -> registry
                -> S3 (moto), against boto3's upload_file of the same file to the same moto server
                (same multipart part size as the registry's store): MiB/s of both, their ratio, and
                the peak-RSS growth (VmHWM) of the gateway and the registry during the upload
  cold load     a ~200 MiB ONNX (one big initializer, made with onnx.helper) deployed: the model
                server fetches it from the registry (which reads S3), hashes it, caches it, loads it;
                seconds from the deployment to /ready
  warm load     the same bytes uploaded again as another model (one blob) and deployed: the cache
                already holds them, so only the load remains

Default --size 256 (MiB), not 1 GiB: moto keeps every object in memory (the file is stored twice,
once per upload path), which on this shared 24 GiB machine is too much while others work;
--size 1024 works on an idle machine. Prints JSON lines on stderr and a table on stdout, writes
--out (JSON).

    .venv/bin/python bench/bench_artifacts.py --size 256
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from modelserve_common.testing import ServiceProcess, free_port
from modelserve_common.testing.s3server import MotoS3Server

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-artifacts-admin"
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}
CHUNK = 1024 * 1024
BUCKET = "bench-artifacts"


def peak_rss(proc: ServiceProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def write_random(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    rng = np.random.default_rng(15)
    with path.open("wb") as out:
        for _ in range(mib):
            block = rng.bytes(CHUNK)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def write_big_onnx(path: Path, mib: int) -> str:
    """idx INT64 [1] -> y FP32 [1] = W[idx], W an initializer of ``mib`` MiB."""
    weights = np.random.default_rng(15).random(mib * CHUNK // 4, dtype=np.float32)
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Gather", ["W", "idx"], ["y"])],
        "big",
        [idx],
        [y],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            yield block


def upload(http: httpx.Client, model: str, path: Path, digest: str, backend: str) -> float:
    r = http.post("/v1/models", json={"name": model}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    t0 = time.perf_counter()
    r = http.post(
        f"/v1/models/{model}/versions:upload?backend={backend}&sha256={digest}",
        content=file_chunks(path),
        headers=ADMIN_H,
    )
    wall = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    return wall


def deploy_until_ready(http: httpx.Client, model: str, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    r = http.put(
        f"/v1/models/{model}/deployment", json={"targets": [{"version": "1", "weight": 100}]}, headers=ADMIN_H
    )
    assert r.status_code == 200, r.text
    while time.perf_counter() - t0 < timeout:
        if http.get(f"/v2/models/{model}/versions/1/ready", headers=ADMIN_H).status_code == 200:
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise TimeoutError(f"{model} not ready after {timeout} s")


def services(tmp: Path, s3: MotoS3Server) -> tuple[list[ServiceProcess], int]:
    ports = {n: free_port() for n in ("registry", "model_server", "gateway", "http")}
    reg = f"127.0.0.1:{ports['registry']}"
    specs = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp / "reg"),
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
            "REGISTRY_ARTIFACTS__KIND": "s3",
            "REGISTRY_ARTIFACTS__S3__BUCKET": BUCKET,
            "REGISTRY_ARTIFACTS__S3__ENDPOINT_URL": s3.endpoint_url,
            "REGISTRY_ARTIFACTS__S3__REGION": "us-east-1",
            "REGISTRY_ARTIFACTS__S3__ACCESS_KEY_ID": "testing",
            "REGISTRY_ARTIFACTS__S3__SECRET_ACCESS_KEY": "testing",
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": reg,
            "MODEL_SERVER_DATA_DIR": str(tmp / "ms"),
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_HTTP_PORT": str(ports["http"]),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": reg,
            "GATEWAY_MODEL_SERVER_URL": f"127.0.0.1:{ports['model_server']}",
            "GATEWAY_ADMIN_API_KEY": ADMIN,
        },
    }
    env = {"PYTHONWARNINGS": "ignore"}
    procs = [ServiceProcess(f"modelserve_{n}", {**env, **e}, ports[n], cwd=tmp) for n, e in specs.items()]
    return procs, ports["http"]


def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    results: dict[str, object] = {"size_mib": args.size, "onnx_mib": args.onnx_size}
    big = tmp / "big.bin"
    digest = write_random(big, args.size)
    with MotoS3Server() as s3:
        s3.create_bucket(BUCKET)
        s3.create_bucket("direct")
        procs, http_port = services(tmp, s3)
        try:
            for p in procs:
                p.start(timeout=120)
            registry, gateway = procs[0], procs[2]
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=600) as http:
                before = {"gateway": peak_rss(gateway), "registry": peak_rss(registry)}
                wall = upload(http, "big", big, digest, "python")
                growth = {
                    "gateway": peak_rss(gateway) - before["gateway"],
                    "registry": peak_rss(registry) - before["registry"],
                }
                from boto3.s3.transfer import TransferConfig

                t0 = time.perf_counter()
                s3.client().upload_file(
                    str(big), "direct", "big", Config=TransferConfig(multipart_chunksize=8 * CHUNK)
                )
                direct = time.perf_counter() - t0
                results["upload"] = {
                    "platform_mib_s": args.size / wall,
                    "direct_boto3_mib_s": args.size / direct,
                    "ratio": direct / wall,
                    "rss_growth_mib": {k: v / CHUNK for k, v in growth.items()},
                }
                print(json.dumps({"upload": results["upload"]}), file=sys.stderr)
                big.unlink()

                onnx_file = tmp / "big.onnx"
                onnx_digest = write_big_onnx(onnx_file, args.onnx_size)
                results["onnx_bytes"] = onnx_file.stat().st_size
                upload(http, "onnx-cold", onnx_file, onnx_digest, "onnx")
                cold = deploy_until_ready(http, "onnx-cold")
                upload(http, "onnx-warm", onnx_file, onnx_digest, "onnx")
                warm = deploy_until_ready(http, "onnx-warm")
                results["load"] = {"cold_fetch_verify_load_s": cold, "warm_cache_load_s": warm}
                print(json.dumps({"load": results["load"]}), file=sys.stderr)
        finally:
            for p in procs:
                p.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="MiB of the upload comparison (default 256)")
    ap.add_argument("--onnx-size", type=int, default=200, help="MiB of the ONNX initializer (default 200)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "artifacts.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        results = run(args, Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    up, load = results["upload"], results["load"]
    assert isinstance(up, dict) and isinstance(load, dict)
    head = "| MiB/s | ratio to boto3 | gateway RSS growth MiB | registry RSS growth MiB |"
    print(f"| upload {args.size} MiB " + head)
    print("|---|---|---|---|---|")
    rss = up["rss_growth_mib"]
    mibs, ratio = up["platform_mib_s"], up["ratio"]
    print(
        f"| gateway -> registry -> S3 | {mibs:.0f} | {ratio:.2f} "
        f"| {rss['gateway']:.0f} | {rss['registry']:.0f} |"
    )
    print(f"| boto3 upload_file, direct | {up['direct_boto3_mib_s']:.0f} | 1.00 | | |")
    print()
    print(f"| ONNX {results['onnx_bytes'] / CHUNK:.0f} MiB, deploy -> ready | s |")
    print("|---|---|")
    print(
        f"| cold: fetch (registry <- S3) + verify + cache + load | {load['cold_fetch_verify_load_s']:.2f} |"
    )
    print(f"| warm: cache hit + load | {load['warm_cache_load_s']:.2f} |")


if __name__ == "__main__":
    main()
