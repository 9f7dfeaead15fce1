"""`cvae demo`: a real server on a free localhost port, driven over HTTP and in
headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY_FC, make_model
from typer.testing import CliRunner

from cvae.data.prompts import CLASS_NAMES
from cvae.models.checkpoint import save_model
from cvae_cli.demo import MAX_IMAGES, MAX_PROMPT, Demo, make_app
from cvae_cli.main import app
from scripts.demo_screenshot import headless_chrome

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, Path | None]]:
    """Two real (untrained) Fashion-MNIST models and a metrics file."""
    import torch

    root = tmp_path_factory.mktemp("demo")
    info = {"condition": "label", "classes": list(CLASS_NAMES), "epochs": 0}
    out = {}
    for arch, kw in (("fc", TINY_FC), ("conv", {"latent_dim": 4})):
        torch.manual_seed(0)
        path = root / f"{arch}.safetensors"
        save_model(path, make_model(arch, **kw), arch, info)
        out[f"fashion-{arch}"] = (path, root / f"{arch}.json")
    (root / "fc.json").write_text(json.dumps({"mse": 12.5, "ssim": 0.75, "n": 3}))
    return out


@contextlib.contextmanager
def running(demo: Demo) -> Iterator[str]:
    """The demo served by uvicorn on a free 127.0.0.1 port; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        make_app(demo), host="127.0.0.1", port=port, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def url(models) -> Iterator[str]:
    with running(Demo(models, device="cpu", clip_checkpoint=None)) as u:
        yield u


def post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/api/generate", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ask(url: str, **req) -> tuple[int, dict]:
    return post(url, json.dumps(req).encode())


def test_a_prompt_gets_every_model_s_grid_fast(url, models) -> None:
    t0 = time.perf_counter()
    code, data = ask(url, prompt="Make a dress", seed=0, n=16)
    wall = time.perf_counter() - t0
    assert code == 200 and [r["model"] for r in data["results"]] == list(models)
    for r in data["results"]:
        assert r["ok"] and r["condition"] == "class 3 (Dress)"
        assert r["label"] == "Fashion-MNIST class"
        assert r["image"].startswith("data:image/png;base64,")
    assert wall < 1.0, f"{wall:.2f} s"


def test_the_same_images_as_cvae_generate(url, models, tmp_path) -> None:
    _, data = ask(url, prompt="two sneakers", seed=7, n=10, models=["fashion-conv"])
    page = base64.b64decode(data["results"][0]["image"].split(",", 1)[1])
    out = tmp_path / "cli.png"
    r = CliRunner().invoke(
        app,
        ["generate", "two sneakers", "-m", str(models["fashion-conv"][0])]
        + ["-n", "10", "-s", "7", "-o", str(out), "--device", "cpu"],
    )
    assert r.exit_code == 0, r.output
    assert page == out.read_bytes()


def test_models_and_their_metrics_are_listed(url) -> None:
    with urllib.request.urlopen(f"{url}/api/models", timeout=10) as r:
        cat = json.loads(r.read())
    assert [c["name"] for c in cat] == ["fashion-fc", "fashion-conv"]
    assert cat[0]["metrics"] == {"mse": 12.5, "ssim": 0.75}  # numbers it shows
    assert cat[1]["metrics"] == {}  # no metrics file
    assert "Fashion-MNIST class label" in cat[0]["conditioned_on"]


def test_the_page_loads_nothing_from_elsewhere(url) -> None:
    with urllib.request.urlopen(url, timeout=10) as r:
        html = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    for outside in ("http://", "https://", "//cdn", "fonts.g"):
        assert outside not in html


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "request body is not JSON"),
        (b"\xff\xfe{", "request body is not UTF-8 text"),
        (b"[1, 2]", "send a JSON object"),
        (b'{"prompt": "   "}', "type a prompt"),
        (json.dumps({"prompt": "a" * (MAX_PROMPT + 1)}).encode(), "prompt too long"),
        (b'{"prompt": "dress", "n": 0}', "n = 0: use 1 to"),
        (
            json.dumps({"prompt": "dress", "n": MAX_IMAGES + 1}).encode(),
            f"n = {MAX_IMAGES + 1}: use 1 to {MAX_IMAGES}",
        ),
        (b'{"prompt": "dress", "seed": -1}', "seed = -1: use 0 to"),
        (b'{"prompt": "dress", "seed": "x"}', "seed must be a whole number"),
        (b'{"prompt": "dress", "models": ["nope"]}', "unknown model 'nope': use one"),
        (b'{"prompt": "dress", "models": "fashion-fc"}', "models must be a list"),
        (b"{" + b'"prompt": "' + b"x" * 20_000 + b'"}', "request too large"),
    ],
)
def test_bad_requests_get_one_line_and_the_server_goes_on(url, body, message) -> None:
    code, data = post(url, body)
    assert code == 400 and data["error"].startswith("error: ")
    assert message in data["error"] and "\n" not in data["error"]
    code, data = ask(url, prompt="a shirt", seed=1, n=2)
    assert code == 200 and all(r["ok"] for r in data["results"])


def test_a_prompt_that_names_no_class_shows_the_cli_s_line(url, models) -> None:
    _, data = ask(url, prompt="a purple elephant", seed=0, n=4)
    r = CliRunner().invoke(
        app, ["generate", "a purple elephant", "-m", str(models["fashion-fc"][0])]
    )
    cli_line = [ln for ln in r.output.splitlines() if ln.startswith("error: ")][0]
    assert r.exit_code == 2
    assert [x["error"] for x in data["results"]] == [cli_line, cli_line]


def test_the_command_refuses_without_models(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("cvae_cli.main.project_root", lambda start=None: None)
    r = CliRunner().invoke(app, ["demo"])
    assert r.exit_code == 1 and "no trained model here" in r.output
    r = CliRunner().invoke(app, ["demo", "-m", str(tmp_path / "no.safetensors")])
    assert r.exit_code == 1 and "no.safetensors not found" in r.output


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run does)",
)
def test_in_a_real_browser(url, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chrome(tmp_path / "profile", width=1200, height=900)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#models input")))
        box = driver.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys("Make a dress")
        driver.find_element(By.ID, "go").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".card img")))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert [c.get_attribute("data-model") for c in cards] == [
            "fashion-fc",
            "fashion-conv",
        ]
        for c in cards:
            assert "Fashion-MNIST class: class 3 (Dress)" in c.text
            img = c.find_element(By.TAG_NAME, "img")
            assert driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img
            )
        assert "mse" in cards[0].text  # the metrics file's numbers
        box.clear()
        box.send_keys("a purple elephant")
        driver.find_element(By.ID, "go").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".card .error")))
        assert "error: " in driver.find_element(By.CSS_SELECTOR, ".card .error").text
    finally:
        driver.quit()
