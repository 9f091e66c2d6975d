"""Bounded load test of `graftcv serve` on loopback: requests/s and p50/p99 latency of single-image requests.

Starts the server itself, sends at most --requests requests from --concurrency clients and stops after
--seconds whichever comes first (startup not counted). Run by hand on a quiet machine:

    .venv/bin/python bench/load_test.py bench/out/ants_bees-finetune/model --concurrency 4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_serve import free_port, start_server, stop_server  # noqa: E402

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "src" / "graftcv" / "demo_data"


def pick_images(source: Path | None, limit: int = 64) -> list[tuple[str, bytes]]:
    from graftcv.data.discovery import list_images

    paths, _ = list_images([str(source or DEMO_IMAGES)])
    paths = [paths[i * len(paths) // min(limit, len(paths))] for i in range(min(limit, len(paths)))]
    return [(p.name, p.read_bytes()) for p in paths]


async def run_load(base: str, images: list, concurrency: int, requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, errors
        while sent < requests and time.perf_counter() < deadline:
            name, data = images[sent % len(images)]
            sent += 1
            start = time.perf_counter()
            try:
                response = await client.post("/predict", files={"files": (name, data, "application/octet-stream")})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                latencies.append(time.perf_counter() - start)
            except httpx.HTTPError:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await client.post("/predict", files={"files": images[0]})  # one warm-up request, not counted
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "seconds": round(wall, 2),
        "requests_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "mean_ms": round(float(ms.mean()), 1) if len(ms) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="A saved model directory")
    parser.add_argument("--images", type=Path, help="Images to send (default: the bundled ants/bees demo images)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="Concurrent clients; one run each")
    parser.add_argument("--requests", type=int, default=2000, help="At most this many requests per run")
    parser.add_argument("--seconds", type=float, default=15.0, help="At most this long per run (capped at 60)")
    parser.add_argument("--runtime", default="auto", help="auto | torch | onnx, passed to graftcv serve")
    parser.add_argument("--workers", type=int, default=1, help="graftcv serve --workers")
    parser.add_argument("--json", type=Path, help="Also write the figures here")
    args = parser.parse_args()

    images = pick_images(args.images)
    port = free_port()
    server = start_server(args.model, port, ["--runtime", args.runtime, "--workers", str(args.workers)])
    try:
        base = f"http://127.0.0.1:{port}"
        runtime = httpx.get(f"{base}/metadata").json()["runtime"]
        runs = [
            asyncio.run(run_load(base, images, concurrency, args.requests, min(args.seconds, 60.0)))
            for concurrency in args.concurrency
        ]
    finally:
        stop_server(server)
    result = {
        "model": str(args.model),
        "runtime": runtime,
        "workers": args.workers,
        "images": len(images),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
