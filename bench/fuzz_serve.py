"""Fuzz a live `graftcv serve` with hypothesis-made uploads; prints inputs tried, 2xx, 4xx, 5xx and crashes.

Run by hand (tests/test_serve.py runs the same strategies in-process with few examples):

    .venv/bin/python bench/fuzz_serve.py bench/out/ants_bees-finetune/model --examples 2000

Without a model a random-init resnet10t is saved to a temporary directory and served. A crash is a request
the server did not answer at all, or a failed /health right after it; the server is then restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

GRAFTCV = Path(sys.executable).with_name("graftcv")
CONTENT_TYPES = ["image/jpeg", "image/png", "image/webp", "application/octet-stream", "image/svg+xml", "text/plain",
                 "application/json", "application/pdf", "multipart/mixed", "video/mp4", ""]  # fmt: skip
EXPECTED = {200, 400, 413, 415, 422}
ONE_SENTENCE = re.compile(r"^[^\n]{3,400}[.]$")


def seed_images(side: int = 48) -> dict[str, bytes]:
    """Valid images in every accepted format and mode, plus a decompression bomb: what mutations start from."""
    gradient = Image.linear_gradient("L").resize((side, side))
    rgb = Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180)))
    seeds: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, fmt: str, **options: Any) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        seeds[name] = buffer.getvalue()

    save("jpeg", rgb, "JPEG", quality=80)
    save("jpeg-progressive", rgb, "JPEG", progressive=True)
    save("png-rgba", rgb.convert("RGBA"), "PNG")
    save("png-palette", rgb.convert("P"), "PNG", transparency=0)
    save("png-16bit", gradient.convert("I;16"), "PNG")
    save("gif-animated", rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.rotate(90).convert("P")])
    save("bmp", rgb, "BMP")
    save("webp", rgb, "WEBP")
    save("tiff", rgb, "TIFF")
    save("bomb", Image.new("1", (7000, 7000)), "PNG")  # 49 Mpixels in a few kilobytes
    return seeds


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    """A seed image, truncated, bit-flipped, spliced or with random bytes after its header."""
    data = bytearray(draw(st.sampled_from(sorted(seeds.values(), key=len))))
    kind = draw(st.sampled_from(["intact", "truncate", "flip", "splice", "header"]))
    if kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
    elif kind == "splice":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "header":
        data = data[: draw(st.integers(1, 64))] + draw(st.binary(max_size=512))
    return bytes(data)


def payloads(seeds: dict[str, bytes], oversize: int | None = None) -> st.SearchStrategy[bytes]:
    """Mostly images (intact or damaged), sometimes random or empty bytes, now and then one over the limit."""
    options = [mutated(seeds)] * 6 + [st.binary(max_size=2048), st.just(b"")]
    if oversize:
        options.append(st.just(seeds["jpeg"] + b"\0" * oversize))
    return st.one_of(options)


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy, odds: int = 5) -> st.SearchStrategy:
    """`usual` about `odds` times in `odds + 1`: requests stay close enough to valid to reach the decoder."""
    return st.one_of([usual] * odds + [odd])


def uploads(seeds: dict[str, bytes], classes: list[str], max_files: int, oversize: int | None = None):
    """One request: endpoint, query parameters, and multipart files (field, file name, bytes, content type)
    or, now and then, a raw body that no multipart encoder built."""
    text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
    header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
    one_file = st.tuples(
        mostly(st.none(), st.sampled_from(["file", "files", "other"])),  # None: the endpoint's own field
        mostly(st.sampled_from(["photo.jpg", "image.png", "x"]), text),  # an empty name makes a text field
        payloads(seeds, oversize),
        mostly(
            st.sampled_from(["image/jpeg", "image/png", "application/octet-stream"]),
            st.sampled_from(CONTENT_TYPES) | header_text,
        ),
    )
    params = st.fixed_dictionaries(
        {},
        optional={
            "topk": mostly(st.integers(1, 5), st.integers(-3, 2000) | st.text(max_size=5)),
            "target": mostly(st.sampled_from(classes), text),
            "method": mostly(st.just("gradcam"), st.sampled_from(["eigencam", "layercam", "scorecam", "nope"]), 2),
        },
    )
    return st.fixed_dictionaries(
        {
            "endpoint": st.sampled_from(["/predict", "/explain"]),
            "params": params,
            "files": mostly(st.lists(one_file, min_size=1, max_size=3), st.lists(one_file, max_size=max_files + 3)),
            "raw": mostly(st.none(), st.binary(max_size=512), 8),
        }
    )


def send(client: httpx.Client, request: dict) -> httpx.Response:
    if request["raw"] is not None:
        headers = {"content-type": "multipart/form-data; boundary=fuzz"}
        return client.post(request["endpoint"], params=request["params"], content=request["raw"], headers=headers)
    own = "files" if request["endpoint"] == "/predict" else "file"
    files = [(field or own, (name, data, kind or None)) for field, name, data, kind in request["files"]]
    return client.post(request["endpoint"], params=request["params"], files=files or None)


def judge(response: httpx.Response) -> str:
    """'2xx', '4xx', '5xx', or 'bad-error' for a 4xx whose body is not one sentence of JSON."""
    if response.status_code >= 500:
        return "5xx"
    if response.status_code < 300:
        return "2xx"
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return "bad-error"
    ok = response.status_code in EXPECTED and isinstance(message, str) and ONE_SENTENCE.match(message)
    return "4xx" if ok else "bad-error"


# --- the live server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, extra: list[str] | None = None, timeout: float = 120) -> subprocess.Popen:
    command = [str(GRAFTCV), "serve", str(model), "--port", str(port), *(extra or [])]
    # A file, not a pipe: a server that logs a lot would block on a full pipe. It lives as long as the server.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    # its own process group, so that stop_server reaches uvicorn's worker processes too
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    process.log = log  # closed by stop_server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read()[-2000:]
            log.close()
            raise SystemExit(f"graftcv serve exited: {tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    stop_server(process)
    raise SystemExit(f"graftcv serve did not answer /health within {timeout:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # workers a killed server left behind
        os.killpg(process.pid, signal.SIGKILL)
    if hasattr(process, "log"):
        process.log.close()


def tiny_model(directory: Path) -> Path:
    from graftcv.artifact import save_artifact
    from graftcv.backbones import create_backbone

    backbone = create_backbone("resnet10t", 3, pretrained=False, size=64)
    meta = {"backbone": "resnet10t", "classes": ["ants", "bees", "wasps"], "data_config": backbone.data_config}
    return save_artifact(directory / "model", backbone.model, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="A saved model directory (default: a tiny random one)")
    parser.add_argument("--examples", type=int, default=1000, help="Requests hypothesis generates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write the counts here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch))
        port = free_port()
        server = start_server(model, port)
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=60)
        meta = client.get("/metadata").json()
        limits = meta["limits"]
        strategy = uploads(seed_images(), meta["classes"], limits["max_files"], oversize=limits["max_file_bytes"])
        counts: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        examples: dict[str, str] = {}
        start = time.perf_counter()

        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(request=strategy)
        def fuzz(request: dict) -> None:
            nonlocal server, client
            counts["inputs"] += 1
            try:
                response = send(client, request)
                verdict = judge(response)
                statuses[response.status_code] += 1
                alive = client.get("/health").status_code == 200
            except httpx.HTTPError as error:
                verdict, alive = "crash", False
                examples.setdefault("crash", repr(error)[:200])
            counts[verdict] += 1
            if verdict in ("5xx", "bad-error"):
                examples.setdefault(verdict, f"{request['endpoint']} → {response.status_code} {response.text[:200]}")
            if not alive:
                counts["crash"] += verdict != "crash"
                stop_server(server)
                server = start_server(model, port)
                client = httpx.Client(base_url=base, timeout=60)

        try:
            fuzz()
        finally:
            stop_server(server)
    result = {
        "model": str(args.model or "tiny random resnet10t"),
        "inputs": counts["inputs"],
        "2xx": counts["2xx"],
        "4xx": counts["4xx"],
        "5xx": counts["5xx"],
        "crashes": counts["crash"],
        "bad_error_bodies": counts["bad-error"],
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(time.perf_counter() - start, 1),
        "examples": examples,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(1 if result["5xx"] or result["crashes"] or result["bad_error_bodies"] else 0)


if __name__ == "__main__":
    os.environ.setdefault("GRAFTCV_CACHE", tempfile.gettempdir())
    main()
