"""``cvae demo``: a local page to type a prompt and see every trained model's
samples side by side.

Offline by construction: the page, its script and its style are one response
of this server (no CDN, no web fonts, no telemetry). The models are loaded once,
when the server starts, and kept in memory; CLIP (for COCO models) is built once
per weights. Each answer is made by the code behind ``cvae generate`` (same
prompt matching, same noise, same grid writer), so a seed gives the same PNG
bytes as ``cvae generate -n N -s SEED --nrow 8`` for that model.

Safe by default: it binds to 127.0.0.1; a request is capped in size, prompt
length and images; a bad request gets a 400 with one line, never a crash.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvae.core.device import resolve_device
from cvae.core.errors import CVAEError
from cvae.evaluation.sampling import generate, save_grid
from cvae.models.checkpoint import load_model
from cvae.params.schema import SEED_MAX
from cvae_cli.demo_page import PAGE
from cvae_cli.generate import conditioned_on, prompt_condition

MAX_IMAGES = 64  # per model and request
MAX_PROMPT = 300  # characters
MAX_BODY = 16_384  # bytes of a request
NROW = 8  # images per grid row, as `cvae generate`'s default
# The numbers of a model's metrics file shown beside its samples, in this order.
METRIC_KEYS = (
    "mse",
    "ssim",
    "ssim_valid",
    "cond_accuracy",
    "fid_generate",
    "fid_recon",
    "clip_score_prompts",
)


class BadRequest(ValueError):
    """A request the server refuses, with the one line that says why."""


@dataclass
class Served:
    """One model in memory, with what the page shows about it."""

    name: str
    path: Path
    model: Any
    meta: dict[str, Any]
    metrics: dict[str, float]

    @property
    def label(self) -> str:
        """What a prompt is matched to, in a few words."""
        info = self.meta["info"]
        if info.get("condition") == "label":
            return "Fashion-MNIST class"
        clip = info.get("clip", {})
        weights = "random weights" if clip.get("random_init") else "real weights"
        return f"CLIP text embedding, {weights}"


def read_metrics(path: Path | None) -> dict[str, float]:
    """The shown numbers of a metrics JSON (missing or unreadable: none)."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        k: float(data[k])
        for k in METRIC_KEYS
        if isinstance(data.get(k), int | float) and not isinstance(data[k], bool)
    }


class Demo:
    """The models of one server and the answers to its requests."""

    def __init__(
        self,
        models: dict[str, tuple[Path, Path | None]],
        *,
        device: str,
        clip_checkpoint: str | None,
    ) -> None:
        """``models``: name -> (model file, its metrics file or None)."""
        if not models:
            raise CVAEError("no model to serve: train one (dvc repro) or pass --model")
        self.device = resolve_device(device)  # a bad device: one line, no work
        from cvae.clip.weights import load_clip

        self.clip_checkpoint = clip_checkpoint
        self.clip = functools.lru_cache(maxsize=4)(load_clip)
        self.lock = threading.Lock()  # one generation at a time: torch uses all cores
        self.served: dict[str, Served] = {}
        for name, (path, metrics) in models.items():
            model, meta = load_model(path, self.device)
            self.served[name] = Served(name, path, model, meta, read_metrics(metrics))
            if meta["info"].get("condition") == "clip":  # build CLIP now, not on
                with contextlib.suppress(CVAEError):  # the first request
                    self._condition(self.served[name], "A photo.")

    def _condition(self, s: Served, prompt: str):
        return prompt_condition(
            s.meta,
            prompt,
            device=self.device,
            clip_checkpoint=self.clip_checkpoint,
            clip_loader=self.clip,
        )

    def catalogue(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "label": s.label,
                "conditioned_on": conditioned_on(s.meta),
                "metrics": s.metrics,
            }
            for s in self.served.values()
        ]

    def parse(self, body: bytes) -> tuple[str, int, int, list[str]]:
        """(prompt, seed, n, model names) of a request body, or BadRequest."""
        if len(body) > MAX_BODY:
            raise BadRequest(
                f"request too large ({len(body)} bytes, at most {MAX_BODY})"
            )
        try:
            req = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest("request body is not UTF-8 text: send JSON") from None
        except ValueError:
            raise BadRequest("request body is not JSON") from None
        if not isinstance(req, dict):
            raise BadRequest("send a JSON object: {prompt, seed, n, models}")
        prompt = req.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadRequest("type a prompt, e.g. 'Make a dress'")
        if len(prompt) > MAX_PROMPT:
            raise BadRequest(
                f"prompt too long ({len(prompt)} characters, at most {MAX_PROMPT})"
            )
        seed, n = req.get("seed", 0), req.get("n", 16)
        for what, value, top in (("seed", seed, SEED_MAX), ("n", n, MAX_IMAGES)):
            low = 0 if what == "seed" else 1
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest(f"{what} must be a whole number")
            if not low <= value <= top:
                raise BadRequest(f"{what} = {value}: use {low} to {top}")
        names = req.get("models") or list(self.served)
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise BadRequest("models must be a list of model names")
        unknown = [x for x in names if x not in self.served]
        if unknown:
            raise BadRequest(
                f"unknown model {unknown[0]!r}: use one of {list(self.served)}"
            )
        return prompt, seed, n, list(dict.fromkeys(names))

    def answer(self, prompt: str, seed: int, n: int, names: list[str]) -> list[dict]:
        """One result per model: its grid (PNG, base64) and what the prompt was
        matched to, or the one-line error `cvae generate` would print."""
        out = []
        with self.lock, tempfile.TemporaryDirectory(prefix="cvae-demo-") as tmp:
            for name in names:
                s = self.served[name]
                result: dict[str, Any] = {"model": name, "label": s.label}
                try:
                    cond, desc, warnings = self._condition(s, prompt)
                    grid = Path(tmp) / f"{len(out)}.png"
                    save_grid(generate(s.model, cond, n, seed=seed), grid, nrow=NROW)
                    png = base64.b64encode(grid.read_bytes()).decode("ascii")
                    result |= {
                        "ok": True,
                        "condition": desc,
                        "warnings": warnings,
                        "image": f"data:image/png;base64,{png}",
                    }
                except CVAEError as e:
                    result |= {"ok": False, "error": f"error: {e}"}
                out.append(result)
        return out


def make_app(demo: Demo):
    """The ASGI app: the page, the model list, the generation endpoint."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    headers = {  # the page may load nothing from elsewhere
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        "Cache-Control": "no-store",
    }

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE, headers=headers)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(demo.catalogue())

    async def generate_(request: Request) -> JSONResponse:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                break
        try:
            prompt, seed, n, names = demo.parse(body)
        except BadRequest as e:
            return JSONResponse({"error": f"error: {e}"}, status_code=400)
        results = await run_in_threadpool(demo.answer, prompt, seed, n, names)
        return JSONResponse({"prompt": prompt, "seed": seed, "results": results})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/models", models),
            Route("/api/generate", generate_, methods=["POST"]),
        ]
    )


def serve(demo: Demo, *, host: str, port: int) -> None:
    """Serve until interrupted (uvicorn, access log off)."""
    import uvicorn

    uvicorn.run(make_app(demo), host=host, port=port, log_level="warning")
