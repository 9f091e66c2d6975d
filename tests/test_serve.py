"""The prediction service: endpoints, one-sentence 4xx for every kind of bad input, fuzzing, a real process."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
import schemathesis  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance  # noqa: E402

import graftcv  # noqa: E402
from graftcv.artifact import save_artifact  # noqa: E402
from graftcv.backbones import create_backbone  # noqa: E402
from graftcv.serve import Limits, ServeSettings, create_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fuzz_serve import GRAFTCV, free_port, judge, seed_images, send, start_server, stop_server, uploads  # noqa: E402

CLASSES = ["ants", "bees", "wasps"]
# Small limits, so that every one of them can be crossed with small, fast requests.
LIMITS = Limits(max_files=4, max_file_bytes=64 * 1024, max_pixels=1_000_000, max_body_bytes=300 * 1024)
ONE_SENTENCE = re.compile(r"^[^\n]{3,400}\.$")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init resnet10t at 32 px, saved as a graftcv model (no training needed)."""
    torch.manual_seed(0)
    backbone = create_backbone("resnet10t", len(CLASSES), pretrained=False, size=32)
    meta = {
        "backbone": "resnet10t",
        "classes": CLASSES,
        "data_config": backbone.data_config,
        "strategy": "finetune",
        "metrics": {"accuracy": 0.5, "macro_f1": 0.4},
    }
    return save_artifact(tmp_path_factory.mktemp("serve") / "model", backbone.model, meta)


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    torch.set_num_threads(2)
    app = create_app(ServeSettings(str(model_dir), runtime="torch", limits=LIMITS, threads=2))
    return TestClient(app, raise_server_exceptions=False)


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(seed: int = 0, side: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


JPEG = encode(photo())


def assert_error(response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert ONE_SENTENCE.match(message), message
    assert fragment in message, message
    return message


def assert_still_serving(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    response = client.post("/predict", files={"files": ("ok.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 200, response.text


# --- endpoints -----------------------------------------------------------------------------------------


def test_health_metadata_and_docs(client, model_dir):
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["classes"] == CLASSES and meta["backbone"] == "resnet10t" and meta["runtime"] == "torch"
    assert meta["metrics"] == {"accuracy": 0.5, "macro_f1": 0.4} and meta["input_size"] == [3, 32, 32]
    assert meta["limits"]["max_files"] == 4
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/metadata"} <= set(spec["paths"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_nothing_from_another_host(client, page):
    """Swagger UI and ReDoc work offline: every script, stylesheet and icon is served by the service itself."""
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http" not in html and "//" not in html.replace("<!--", "")  # no absolute or protocol-relative URL
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and all(a.startswith("/static/") for a in assets), assets
    assert "/openapi.json" in html
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000, asset


def test_predict_matches_the_python_api(client, model_dir, tmp_path):
    images = {f"img{i}.png": photo(i) for i in range(3)}
    files = [("files", (name, encode(image, "PNG"), "image/png")) for name, image in images.items()]
    response = client.post("/predict", files=files, params={"topk": 3})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["filename"] for p in predictions] == list(images)
    expected = graftcv.load(model_dir).predict(list(images.values()), topk=3)
    for got, want in zip(predictions, expected, strict=True):
        assert got["class"] == want["class"] and len(got["top"]) == 3
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        np.testing.assert_allclose(
            [t["probability"] for t in got["top"]], [t["probability"] for t in want["top"]], atol=1e-5
        )
        assert abs(sum(t["probability"] for t in got["top"]) - 1.0) < 1e-4


def test_topk_beyond_the_classes_returns_them_all(client):
    response = client.post("/predict", files={"files": ("a.jpg", JPEG, "image/jpeg")}, params={"topk": 50})
    assert len(response.json()["predictions"][0]["top"]) == len(CLASSES)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "1", "I;16"])
def test_predict_reads_every_image_mode(client, mode):
    image = photo().convert("RGBA" if mode == "RGBA" else "L").convert(mode)
    response = client.post("/predict", files={"files": ("a.png", encode(image, "PNG"), "image/png")})
    assert response.status_code == 200, response.text


def test_octet_stream_uploads_are_accepted(client):
    response = client.post("/predict", files={"files": ("noext", JPEG, "application/octet-stream")})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("target", [None, "bees"])
def test_explain_returns_a_png_overlay(client, target):
    params = {"target": target} if target else {}
    response = client.post("/explain", files={"file": ("a.jpg", JPEG, "image/jpeg")}, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.format == "PNG" and overlay.size == (32, 32)
    assert response.headers["x-graftcv-predicted"] in CLASSES
    assert response.headers["x-graftcv-target"] == (target or response.headers["x-graftcv-predicted"])


# --- bad input -----------------------------------------------------------------------------------------


def _bomb() -> bytes:
    """2000 × 2000 pixels (over the 1-Mpixel test limit) in a few kilobytes."""
    return encode(Image.new("1", (2000, 2000)), "PNG")


def _chunked_body(size: int):
    yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    for _ in range(size // 65536 + 1):
        yield b"\0" * 65536


BAD = {
    "text-file": (lambda c: c.post("/predict", files={"files": ("a.txt", b"hello", "text/plain")}), 415, "text/plain"),
    "json-body": (lambda c: c.post("/predict", json={"files": ["a.jpg"]}), 415, "multipart/form-data"),
    "no-body": (lambda c: c.post("/predict"), 415, "multipart/form-data"),
    "no-files": (lambda c: c.post("/predict", files={"other": ("a.jpg", JPEG, "image/jpeg")}), 422, "'files'"),
    "zero-bytes": (lambda c: c.post("/predict", files={"files": ("a.jpg", b"", "image/jpeg")}), 400, "is empty"),
    "truncated-jpeg": (
        lambda c: c.post("/predict", files={"files": ("a.jpg", encode(photo(side=256))[:3000], "image/jpeg")}),
        400,
        "truncated or corrupt",
    ),
    "truncated-png": (
        lambda c: c.post("/predict", files={"files": ("a.png", encode(photo(side=128), "PNG")[:5000], "image/png")}),
        400,
        "truncated or corrupt",
    ),
    "corrupt": (
        lambda c: c.post("/predict", files={"files": ("a.jpg", os.urandom(2000), "image/jpeg")}),
        400,
        "not an image",
    ),
    "svg": (
        lambda c: c.post(
            "/predict", files={"files": ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")}
        ),
        400,
        "not an image",
    ),
    "bomb": (lambda c: c.post("/predict", files={"files": ("bomb.png", _bomb(), "image/png")}), 413, "pixels"),
    "file-too-large": (
        lambda c: c.post("/predict", files={"files": ("big.jpg", JPEG + b"\0" * 70_000, "image/jpeg")}),
        413,
        "larger than the limit",
    ),
    "request-too-large": (
        lambda c: c.post("/predict", files=[("files", ("a.jpg", b"\0" * 60_000, "image/jpeg"))] * 6),
        413,
        "request is larger",
    ),
    "chunked-too-large": (
        lambda c: c.post(
            "/predict", content=_chunked_body(400 * 1024), headers={"content-type": "multipart/form-data; boundary=b"}
        ),
        413,
        "request is larger",
    ),
    "too-many-files": (
        lambda c: c.post("/predict", files=[("files", ("a.jpg", JPEG, "image/jpeg"))] * 5),
        413,
        "at most 4 files",
    ),
    "far-too-many-files": (
        lambda c: c.post("/predict", files=[("files", ("a.jpg", b"x", "image/jpeg"))] * 200),
        413,
        "at most 4 files",
    ),
    "malformed-multipart": (
        lambda c: c.post(
            "/predict", content=b"--b\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=b"}
        ),
        422,
        "",
    ),
    "bad-topk": (
        lambda c: c.post("/predict", files={"files": ("a.jpg", JPEG, "image/jpeg")}, params={"topk": "many"}),
        422,
        "'topk'",
    ),
    "unknown-class": (
        lambda c: c.post("/explain", files={"file": ("a.jpg", JPEG, "image/jpeg")}, params={"target": "zebra"}),
        400,
        "Unknown class 'zebra'",
    ),
    "unknown-method": (
        lambda c: c.post("/explain", files={"file": ("a.jpg", JPEG, "image/jpeg")}, params={"method": "scorecam"}),
        400,
        "Unknown CAM method",
    ),
    "explain-corrupt": (
        lambda c: c.post("/explain", files={"file": ("a.jpg", encode(photo(side=256))[:3000], "image/jpeg")}),
        400,
        "truncated or corrupt",
    ),
    "unknown-path": (lambda c: c.get("/predictions"), 404, "no such endpoint"),
    "wrong-method": (lambda c: c.get("/predict"), 405, "GET is not allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_one_sentence_4xx_and_the_next_request_is_served(case, client):
    call, status, fragment = BAD[case]
    assert_error(call(client), status, fragment)
    assert_still_serving(client)


def test_one_bad_file_among_good_ones_names_it(client):
    files = [("files", ("good.jpg", JPEG, "image/jpeg")), ("files", ("bad.jpg", JPEG[:100], "image/jpeg"))]
    assert_error(client.post("/predict", files=files), 400, "file 2 ('bad.jpg')")


# --- fuzzing -------------------------------------------------------------------------------------------

SEEDS = seed_images(side=40)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(request=uploads(SEEDS, CLASSES, LIMITS.max_files, oversize=LIMITS.max_file_bytes))
def test_fuzzed_uploads_never_get_a_5xx(client, request):
    """Hypothesis: random, truncated, bit-flipped and spliced images, odd content types and parameters."""
    response = send(client, request)
    assert judge(response) in ("2xx", "4xx"), (response.status_code, response.text[:300])
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error(client, mode):
    """Schema-based fuzzing of every operation in the OpenAPI spec, with valid and with invalid requests:
    no 5xx, and every response as the spec documents it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def check(case) -> None:
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance, status_code_conformance])

    check()


# --- a real process ------------------------------------------------------------------------------------


def test_graftcv_serve_process(model_dir):
    """`graftcv serve` on loopback: predicts, survives a corrupt upload, stops cleanly."""
    port = free_port()
    server = start_server(model_dir, port, ["--max-files", "2"])
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/metadata").json()["limits"]["max_files"] == 2
        bad = httpx.post(f"{base}/predict", files={"files": ("a.jpg", JPEG[:300], "image/jpeg")})
        assert bad.status_code == 400 and ONE_SENTENCE.match(bad.json()["error"])
        good = httpx.post(f"{base}/predict", files={"files": ("a.jpg", JPEG, "image/jpeg")})
        assert good.status_code == 200 and good.json()["predictions"][0]["class"] in CLASSES
    finally:
        stop_server(server)


def serve_fails(model: Path, *options: str) -> str:
    """Run `graftcv serve` expecting it to refuse to start: exit 2, one error line, no traceback, no
    "Serving" line. Returns the error line."""
    done = subprocess.run(
        [str(GRAFTCV), "serve", str(model), *options],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="400"),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "Serving" not in output, output
    (error,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert error.startswith("error: ") and ONE_SENTENCE.match(error), error
    return error


def test_graftcv_serve_on_a_busy_port_is_one_line_before_anything_loads(model_dir):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        error = serve_fails(model_dir, "--port", str(port))
    assert f"Port {port} on 127.0.0.1 is already in use: choose another with --port." in error


def test_the_listen_check_binds_as_uvicorn_will():
    from graftcv.errors import GraftcvError
    from graftcv.serve.listen import check_can_listen, url

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(GraftcvError, match=f"Port {port} on localhost is already in use"):
            check_can_listen("localhost", port)  # every address it resolves to, as asyncio's create_server binds
    check_can_listen("127.0.0.1", port)  # closed again: free, and not left in TIME_WAIT by the check
    check_can_listen("127.0.0.1", port)
    with pytest.raises(GraftcvError, match="not a TCP port"):
        check_can_listen("127.0.0.1", 70000)
    assert url("::1", 8000) == "http://[::1]:8000" and url("127.0.0.1", 80) == "http://127.0.0.1:80"


@pytest.mark.parametrize(
    ("case", "options", "fragment"),
    [
        ("missing-dir", [], "is not a graftcv model"),
        ("not-a-model", [], "is not a graftcv model"),
        ("missing-dir", ["--workers", "2"], "is not a graftcv model"),  # loaded in a child process first
        ("model", ["--workers", "0"], "--workers must be at least 1"),
        ("model", ["--max-file-mb", "nan"], "positive number of megabytes"),
        ("model", ["--max-request-mb", "inf"], "positive number of megabytes"),
        ("model", ["--host", "no-such-host.invalid"], "neither an IP address nor a name"),
        ("model", ["--host", "192.0.2.1"], "not an address of this machine"),  # TEST-NET-1: never a local one
    ],
)
def test_graftcv_serve_start_failures_are_one_line(case, options, fragment, model_dir, tmp_path):
    model = {"missing-dir": tmp_path / "nowhere", "not-a-model": tmp_path, "model": model_dir}[case]
    assert fragment in serve_fails(model, "--port", str(free_port()), *options)


def test_non_loopback_host_is_warned_about(model_dir, monkeypatch, caplog):
    import uvicorn

    from graftcv.serve import serve

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: json.dumps(kwargs))
    with caplog.at_level("WARNING", logger="graftcv"):
        serve(ServeSettings(str(model_dir), runtime="torch"), host="0.0.0.0", port=free_port())
    assert "no authentication" in caplog.text


def test_served_tta_matches_the_python_api(model_dir):
    import graftcv

    app = create_app(ServeSettings(str(model_dir), runtime="torch", limits=LIMITS, threads=2, tta="flip"))
    with TestClient(app) as tta_client:
        assert tta_client.get("/metadata").json()["tta"] == "flip"
        served = tta_client.post("/predict", files=[("files", ("a.jpg", JPEG, "image/jpeg"))], params={"topk": 3})
    expected = graftcv.load(model_dir, tta="flip").predict([Image.open(io.BytesIO(JPEG))], topk=3)[0]
    got = served.json()["predictions"][0]
    assert got["class"] == expected["class"] and abs(got["probability"] - expected["probability"]) < 1e-5


# --- the web page ----------------------------------------------------------------------------------------


def test_the_page_is_self_contained_and_names_the_classes(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "3 classes: ants, bees, wasps" in page and "resnet10t" in page
    assert "http" not in page and "src=" not in page.replace('id="cam"', "")  # nothing fetched from elsewhere
    assert "/predict?topk=5" in page and "/explain" in page and "at most 0.0625 MB" in page


def _chromium() -> tuple[str, str] | None:
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or shutil.which("chromium-driver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="Chromium and chromedriver are not installed")
def test_a_person_uploads_an_image_in_headless_chromium(model_dir, tmp_path):
    """Drive the real page in a real browser: pick an image, wait for the classes and the CAM, screenshot it;
    then pick a corrupt file and read the service's 4xx as a message on the page."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver = _chromium()
    port = free_port()
    server = start_server(model_dir, port)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,800"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    try:
        chrome.get(f"http://127.0.0.1:{port}/")
        good = tmp_path / "bee.jpg"
        photo(3).save(good)
        chrome.find_element(By.ID, "file").send_keys(str(good))
        WebDriverWait(chrome, 60).until(lambda c: c.find_element(By.ID, "cam").get_attribute("data-ready") == "1")
        shown = [row.get_attribute("data-label") for row in chrome.find_elements(By.CSS_SELECTOR, "#classes .row")]
        assert sorted(shown) == sorted(CLASSES)  # top-5 of three classes: all of them, best first
        assert chrome.find_element(By.ID, "status").text.startswith("Predicted: ")
        screenshot = Path(os.environ.get("GRAFTCV_SCREENSHOT", tmp_path / "page.png"))
        assert chrome.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 5000
        corrupt = tmp_path / "broken.jpg"
        corrupt.write_bytes(JPEG[:300])
        chrome.find_element(By.ID, "file").send_keys(str(corrupt))
        WebDriverWait(chrome, 30).until(lambda c: c.find_element(By.ID, "error").is_displayed())
        message = chrome.find_element(By.ID, "error").text
        assert ONE_SENTENCE.match(message) and "broken.jpg" in message, message
    finally:
        chrome.quit()
        stop_server(server)
