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
import statistics
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
WARMUP_MIB = 16


def peak_rss(proc: ServiceProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def write_random(path: Path, mib: int, seed: int = 15) -> str:
    digest = hashlib.sha256()
    rng = np.random.default_rng(seed)
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


def services(tmp: Path, s3: MotoS3Server, with_model_server: bool) -> tuple[list[ServiceProcess], int]:
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
    if not with_model_server:
        del specs["model_server"]
    env = {"PYTHONWARNINGS": "ignore"}
    procs = [ServiceProcess(f"modelserve_{n}", {**env, **e}, ports[n], cwd=tmp) for n, e in specs.items()]
    return procs, ports["http"]


def upload_round(http: httpx.Client, s3: MotoS3Server, tmp: Path, mib: int, n: int) -> dict[str, float]:
    """One platform upload and one direct boto3 upload of the same new random file (new bytes each
    round: the store skips bytes it already holds); odd rounds go direct first."""
    from boto3.s3.transfer import TransferConfig

    big = tmp / f"big{n}.bin"
    digest = write_random(big, mib, seed=100 + n)
    client = s3.client()

    def direct() -> float:
        t0 = time.perf_counter()
        client.upload_file(str(big), "direct", big.name, Config=TransferConfig(multipart_chunksize=8 * CHUNK))
        return time.perf_counter() - t0

    first = direct() if n % 2 else None
    wall = upload(http, f"big{n}", big, digest, "python")
    direct_s = first if first is not None else direct()
    client.delete_object(Bucket="direct", Key=big.name)  # moto holds every object in memory
    big.unlink()
    out = {"platform_mib_s": mib / wall, "direct_boto3_mib_s": mib / direct_s, "ratio": direct_s / wall}
    print(json.dumps({"round": n, **out}), file=sys.stderr)
    return out


def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    results: dict[str, object] = {"size_mib": args.size, "onnx_mib": args.onnx_size}
    with MotoS3Server() as s3:
        s3.create_bucket(BUCKET)
        s3.create_bucket("direct")
        procs, http_port = services(tmp, s3, with_model_server=not args.skip_load)
        try:
            for p in procs:
                p.start(timeout=120)
            registry, gateway = procs[0], procs[-1]
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=600) as http:
                start = {"gateway": peak_rss(gateway), "registry": peak_rss(registry)}
                warmup = tmp / "warm.bin"  # first upload: one-time costs (botocore's lazy loads, threads)
                upload(http, "warm", warmup, write_random(warmup, WARMUP_MIB, seed=16), "python")
                before = {"gateway": peak_rss(gateway), "registry": peak_rss(registry)}
                rounds = [upload_round(http, s3, tmp, args.size, r) for r in range(args.rounds)]
                growth = {
                    "gateway": peak_rss(gateway) - before["gateway"],
                    "registry": peak_rss(registry) - before["registry"],
                }
                results["upload"] = {
                    "rounds": rounds,
                    "platform_mib_s": statistics.median(r["platform_mib_s"] for r in rounds),
                    "direct_boto3_mib_s": statistics.median(r["direct_boto3_mib_s"] for r in rounds),
                    "ratio": statistics.median(r["ratio"] for r in rounds),
                    "rss_growth_mib": {k: v / CHUNK for k, v in growth.items()},
                    "rss_growth_first_upload_mib": {k: (before[k] - start[k]) / CHUNK for k in start},
                }
                print(json.dumps({"upload": results["upload"]}), file=sys.stderr)
                if args.skip_load:
                    return results

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
    ap.add_argument("--rounds", type=int, default=3, help="upload rounds (median reported; default 3)")
    ap.add_argument("--skip-load", action="store_true", help="upload comparison only (no model server)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "artifacts.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        results = run(args, Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    up = results["upload"]
    assert isinstance(up, dict)
    head = "| MiB/s | ratio to boto3 | RSS growth MiB gateway / registry | first upload's (16 MiB) |"
    print(f"| upload {args.size} MiB, median of {args.rounds} " + head)
    print("|---|---|---|---|---|")
    rss, first = up["rss_growth_mib"], up["rss_growth_first_upload_mib"]
    mibs, ratio = up["platform_mib_s"], up["ratio"]
    print(
        f"| gateway -> registry -> S3 | {mibs:.1f} | {ratio:.2f} "
        f"| {rss['gateway']:.0f} / {rss['registry']:.0f} | {first['gateway']:.0f} / {first['registry']:.0f} |"
    )
    print(f"| boto3 upload_file, direct | {up['direct_boto3_mib_s']:.1f} | 1.00 | | |")
    load = results.get("load")
    if not isinstance(load, dict):
        return
    print()
    print(f"| ONNX {int(str(results['onnx_bytes'])) / CHUNK:.0f} MiB, deploy -> ready | s |")
    print("|---|---|")
    print(
        f"| cold: fetch (registry <- S3) + verify + cache + load | {load['cold_fetch_verify_load_s']:.2f} |"
    )
    print(f"| warm: cache hit + load | {load['warm_cache_load_s']:.2f} |")


if __name__ == "__main__":
    main()
