"""Soak `graftcv serve`: thousands of valid and fuzzed requests per worker count; 5xx, crashes, memory, latency.

For each --workers value the server is started on loopback, warmed up (every kind of request a few times),
then sent --requests requests from --concurrency clients: real images to /predict (one or several, a few
to /explain), GET /health and /metadata, and fuzzed requests (truncated JPEGs, random bytes named .jpg,
empty files, a huge declared Content-Length, a decompression bomb, wrong field names, non-multipart
bodies, unicode file names, too many files, a 1x1 image, a 16-bit PNG, and hypothesis-made uploads from
bench/fuzz_serve.py). Resident memory is the sum of VmRSS over the server and its worker processes.
Prints a Markdown table; exits 1 on any 5xx, crash (server or worker process gone), failed connection
or unexpected status. The full run, on a quiet machine (at most 10 minutes in all):

    .venv/bin/python bench/soak_serve.py bench/out/ants_bees-finetune/model --workers 1,2 --requests 10000 \\
        --images ../shared/datasets/ants_bees --max-seconds 600 --json bench/out/soak_serve.json

Without a model a random-init resnet10t is saved to a temporary directory and served.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_serve import free_port, judge, seed_images, send, start_server, stop_server, tiny_model, uploads  # noqa: E402
from load_test import DEMO_IMAGES, pick_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "ants_bees"
Call = Callable[[httpx.Client], httpx.Response | int]


@dataclass(frozen=True)
class Kind:
    """One kind of request: how often it is sent, how, and which statuses are right for it (None: any 2xx
    or one-sentence 4xx, as fuzz_serve.judge has it)."""

    name: str
    weight: int
    call: Call
    expect: frozenset[int] | None
    valid: bool = False


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _declared_huge(client: httpx.Client) -> int:
    """A multipart POST that declares 10 GB and sends a few bytes: the 413 must come without reading it."""
    url = client.base_url
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: soak\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000000\r\nConnection: close\r\n\r\n--b\r\n"
        )
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise httpx.RemoteProtocolError("closed without a status line")
            head += chunk
    return int(head.split(b" ", 2)[1])


def request_kinds(images: list[tuple[str, bytes]], meta: dict, pool: list[dict]) -> list[Kind]:
    seeds = seed_images()
    max_files = meta["limits"]["max_files"]
    tiny = _jpeg(Image.new("RGB", (1, 1), (200, 30, 30)))
    counter = itertools.count()

    def image() -> tuple[str, bytes]:
        return images[next(counter) % len(images)]

    def predict(*files: tuple[str, bytes, str], field_name: str = "files") -> Call:
        return lambda c: c.post("/predict", files=[(field_name, f) for f in files])

    def real(c: httpx.Client, n: int = 1) -> httpx.Response:
        return c.post("/predict", files=[("files", (*image(), "image/jpeg")) for _ in range(n)])

    def truncated(c: httpx.Client) -> httpx.Response:
        name, data = image()
        return c.post("/predict", files={"files": (name, data[: len(data) // 2], "image/jpeg")})

    def fuzzed(c: httpx.Client) -> httpx.Response:
        return send(c, pool[next(counter) % len(pool)])

    ok, bad = frozenset({200}), frozenset({400})
    return [
        Kind("predict", 40, real, ok, valid=True),
        Kind("predict-batch", 5, lambda c: real(c, min(3, max_files)), ok, valid=True),
        Kind("explain", 2, lambda c: c.post("/explain", files={"file": (*image(), "image/jpeg")}), ok, valid=True),
        Kind("health", 8, lambda c: c.get("/health"), ok, valid=True),
        Kind("metadata", 4, lambda c: c.get("/metadata"), ok, valid=True),
        Kind("truncated-jpeg", 4, truncated, bad),
        Kind("random-bytes.jpg", 4, lambda c: predict(("x.jpg", os.urandom(3000), "image/jpeg"))(c), bad),
        Kind("empty-file", 3, predict(("empty.jpg", b"", "image/jpeg")), bad),
        Kind("declared-10GB", 2, _declared_huge, frozenset({413})),
        Kind("bomb-49Mpx", 2, predict(("bomb.png", seeds["bomb"], "image/png")), frozenset({413})),
        Kind("wrong-field", 3, predict(("a.jpg", seeds["jpeg"], "image/jpeg"), field_name="image"), frozenset({422})),
        Kind("json-body", 2, lambda c: c.post("/predict", json={"files": ["a.jpg"]}), frozenset({415})),
        Kind("form-body", 2, lambda c: c.post("/predict", data={"files": "a.jpg"}), frozenset({415})),
        Kind("unicode-name", 3, predict(("蜂 ñandú 🐝 Ω.jpg", seeds["jpeg"], "image/jpeg")), ok),
        Kind(
            "too-many-files", 2, predict(*[("a.jpg", seeds["jpeg"], "image/jpeg")] * (max_files + 1)), frozenset({413})
        ),
        Kind("1x1", 3, predict(("one.jpg", tiny, "image/jpeg")), ok),
        Kind("png-16bit", 3, predict(("deep.png", seeds["png-16bit"], "image/png")), ok),
        Kind("hypothesis", 8, fuzzed, None),
    ]


def hypothesis_requests(meta: dict, count: int, seed_value: int) -> list[dict]:
    """`count` requests from fuzz_serve's strategy, drawn up front so that the clients only send them."""
    limits, pool = meta["limits"], []
    strategy = uploads(seed_images(), meta["classes"], limits["max_files"], oversize=limits["max_file_bytes"])

    @seed(seed_value)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=strategy)
    def collect(request: dict) -> None:
        pool.append(request)

    collect()
    return pool


# --- the server's processes ---------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(parents.get(current, []))
    return tree


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def resident_mb(pid: int) -> float:
    return sum(_status_kb(p, "VmRSS") for p in process_tree(pid)) / 1024


def _cpu_seconds(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, timeout: float = 180, quiet: float = 0.05) -> None:
    """Until the server's processes use under `quiet` CPU-seconds in a second: every worker has loaded."""
    deadline = time.monotonic() + timeout
    before = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _cpu_seconds(pid)
        if now - before < quiet:
            return
        before = now


def stop(server: subprocess.Popen) -> None:
    """fuzz_serve.stop_server, then SIGKILL for any worker it left behind (a supervisor killed after its
    grace period leaves them orphaned)."""
    tree = process_tree(server.pid)
    stop_server(server)
    time.sleep(1)
    for pid in tree[1:]:
        with contextlib.suppress(OSError):  # gone already
            if "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)


# --- one soak -------------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    predict_latencies: list[float] = field(default_factory=list)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: Kind, result: httpx.Response | int | Exception, seconds: float) -> None:
        with self.lock:
            if isinstance(result, Exception):
                self.transport_errors += 1
                self.examples.setdefault(f"{kind.name}: transport", repr(result)[:200])
                return
            status = result if isinstance(result, int) else result.status_code
            self.statuses[status] += 1
            self.latencies.append(seconds)
            if kind.name.startswith("predict") and status == 200:
                self.predict_latencies.append(seconds)
            verdict = None if isinstance(result, int) else judge(result)
            right = (verdict in ("2xx", "4xx")) if kind.expect is None else status in kind.expect
            if not right or verdict == "bad-error":
                self.unexpected[kind.name] += 1
                body = "" if isinstance(result, int) else result.text[:160]
                self.examples.setdefault(kind.name, f"{status} {body}")


def drive(base: str, schedule: list[Kind], concurrency: int, deadline: float, server, tally: Tally) -> int:
    """Send `schedule` from `concurrency` clients until done, past `deadline` or the server is gone."""
    todo = iter(schedule)
    lock = threading.Lock()
    sent = 0

    def client_loop() -> None:
        nonlocal sent
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.monotonic() < deadline and server.poll() is None:
                with lock:
                    kind = next(todo, None)
                    sent += kind is not None
                if kind is None:
                    return
                start = time.perf_counter()
                try:
                    result = kind.call(client)
                except (httpx.HTTPError, OSError) as error:
                    result = error
                tally.record(kind, result, time.perf_counter() - start)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client_loop) for _ in range(concurrency)]:
            future.result()
    return sent


def soak(model: Path, workers: int, args: argparse.Namespace, images: list, budget: float) -> dict:
    deadline = time.monotonic() + budget
    port = free_port()
    try:
        server = start_server(model, port, ["--workers", str(workers)], timeout=min(180, budget))
    except SystemExit as failure:
        return {"workers": workers, "requests": 0, "crashes": 1, "failure": str(failure)[-300:]}
    base = f"http://127.0.0.1:{port}"
    try:
        meta = httpx.get(f"{base}/metadata", timeout=60).json()
        kinds = request_kinds(images, meta, hypothesis_requests(meta, args.hypothesis, args.seed))
        wait_until_idle(server.pid)
        warm = Tally()
        drive(base, [k for k in kinds for _ in range(3 * workers)], args.concurrency, deadline, server, warm)
        wait_until_idle(server.pid)
        children_before = set(process_tree(server.pid))
        rss_before = resident_mb(server.pid)
        rng = np.random.default_rng(args.seed)
        weights = np.array([k.weight for k in kinds], dtype=float)
        schedule = [kinds[i] for i in rng.choice(len(kinds), size=args.requests, p=weights / weights.sum())]
        tally = Tally()
        start = time.perf_counter()
        sent = drive(base, schedule, args.concurrency, deadline, server, tally)
        wall = time.perf_counter() - start
        exited = server.poll() is not None
        if not exited:
            wait_until_idle(server.pid, timeout=10)
        rss_after = resident_mb(server.pid) if not exited else float("nan")
        gone = len(children_before - set(process_tree(server.pid))) if not exited else 0  # dead, even if respawned
    finally:
        stop(server)
    done = sum(tally.statuses.values())
    return {
        "workers": workers,
        "requests": done,
        "scheduled": args.requests,
        "cut_short": sent < args.requests,
        "statuses": dict(sorted(tally.statuses.items())),
        "5xx": sum(n for status, n in tally.statuses.items() if status >= 500),
        "transport_errors": tally.transport_errors,
        "unexpected": dict(tally.unexpected),
        "crashes": int(exited) + gone,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "growth_mb": round(rss_after - rss_before, 1),
        "predict_p50_ms": _ms(tally.predict_latencies, 50),
        "predict_p99_ms": _ms(tally.predict_latencies, 99),
        "all_p50_ms": _ms(tally.latencies, 50),
        "all_p99_ms": _ms(tally.latencies, 99),
        "requests_per_second": round(done / wall, 1) if wall else None,
        "seconds": round(wall, 1),
        "examples": tally.examples,
    }


FIGURES = ("rss_before_mb", "rss_after_mb", "growth_mb", "predict_p50_ms", "predict_p99_ms", "all_p50_ms",
           "all_p99_ms", "requests_per_second")  # fmt: skip


def _ms(seconds: list[float], percentile: float) -> float | None:
    return round(float(np.percentile(np.array(seconds) * 1000, percentile)), 1) if seconds else None


def markdown(runs: list[dict]) -> str:
    codes = sorted({int(code) for run in runs for code in run.get("statuses", {})})
    columns = ["workers", "requests", *map(str, codes), "5xx", "conn. errors", "unexpected", "crashes",
               "RSS before MB", "RSS after MB", "growth MB", "predict p50 ms", "predict p99 ms",
               "all p50 ms", "all p99 ms", "req/s"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for run in runs:
        statuses = run.get("statuses", {})
        cells = [run["workers"], run["requests"], *(statuses.get(code, 0) for code in codes)]
        cells += [run.get(key, "—") for key in ("5xx", "transport_errors")]
        cells += [sum(run.get("unexpected", {}).values()), run["crashes"]]
        cells += [run.get(key, "—") for key in FIGURES]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="A saved model directory (default: a tiny random one)")
    parser.add_argument("--workers", default="1,2", help="Comma-separated worker counts; one soak each")
    parser.add_argument("--requests", type=int, default=10_000, help="Requests per soak, after the warm-up")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="Real images for the valid requests")
    parser.add_argument("--concurrency", type=int, default=4, help="Concurrent clients")
    parser.add_argument("--max-seconds", type=float, default=600, help="All soaks together, start-ups included")
    parser.add_argument("--hypothesis", type=int, default=300, help="Distinct hypothesis-made requests to cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write the figures here")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    deadline = time.monotonic() + args.max_seconds

    images = pick_images(args.images if args.images.is_dir() else None)
    source = args.images if args.images.is_dir() else DEMO_IMAGES
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch))
        for index, workers in enumerate(worker_counts):
            budget = (deadline - time.monotonic()) / (len(worker_counts) - index)
            runs.append(soak(model, workers, args, images, budget))
    print(f"model: {args.model or 'tiny random resnet10t'}; images: {len(images)} from {source}; "
          f"concurrency {args.concurrency}\n")  # fmt: skip
    print(markdown(runs))
    for run in runs:
        for what, example in run.get("examples", {}).items():
            print(f"\nworkers={run['workers']} {what}: {example}")
        if run.get("failure") or run.get("cut_short"):
            print(f"\nworkers={run['workers']}: {run.get('failure') or 'stopped at --max-seconds or a crash'}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model or "tiny"), "runs": runs}, indent=2))
    failed = any(r.get("5xx") or r["crashes"] or r.get("transport_errors") or r.get("unexpected") for r in runs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("GRAFTCV_CACHE", tempfile.gettempdir())
    main()
