"""`dvc plots show` and `dvc plots diff` pages draw offline: the page template of
`cvae plots-template` holds vega, vega-lite and vega-embed inline, and headless
Chromium with every connection refused draws the repository's committed curves
and confusion matrix."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from cvae_cli.main import app
from cvae_cli.plots_page import TEMPLATE
from scripts.demo_screenshot import headless_chrome

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DVC = str(Path(sys.executable).with_name("dvc"))
# No host name resolves and every connection goes to a closed port.
NO_NETWORK = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")
ONE_MODEL = ("fashion_fc_loss", "fashion_fc_kl")  # top-level plot ids of dvc.yaml
# Before the page's own scripts: keep every console error and warning (vega's
# and vega-embed's), uncaught error and rejected promise (a failed vegaEmbed).
CATCH = """
window.__problems = [];
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => {
    window.__problems.push(level + ": " + args.map(String).join(" "));
    original.apply(console, args);
  };
}
addEventListener("error", (e) => window.__problems.push("error: " + e.message));
addEventListener("unhandledrejection", (e) =>
  window.__problems.push("rejected: " + ((e.reason && e.reason.message) || e.reason)));
"""
# Per chart vega-embed has drawn (an SVG): the marks its data drew, the
# vertices of its lines and the cells of a heatmap; -1 before it has drawn.
MARKS = """
return [...document.querySelectorAll(".vega-embed")].map((chart) => {
  const svg = chart.querySelector("svg.marks");
  if (!svg) return -1;
  let marks = svg.querySelectorAll(".mark-rect path").length;
  for (const line of svg.querySelectorAll(".mark-line path")) {
    marks += ((line.getAttribute("d") || "").match(/[ML]/g) || []).length;
  }
  return marks;
});
"""
LOADED = """
return {
  problems: window.__problems,
  fetched: performance.getEntriesByType("resource").map((r) => r.name),
};
"""


def plots(*args: str, out: Path, template: Path) -> Path:
    """Run `dvc plots ...` in the repository with ``template``; the page."""
    cmd = [DVC, "plots", *args, "-o", str(out), "--html-template", str(template)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "index.html"


def vega_charts(page: Path) -> int:
    return page.read_text(encoding="utf-8").count("vegaEmbed(")


def data_points(page: Path) -> list[int]:
    """Per chart of the page, its distinct data rows: a line chart draws a
    vertex for each, the confusion matrix a cell for each (actual, predicted)."""
    specs = re.findall(
        r"var spec = (\{.*?\});\s*vegaEmbed", page.read_text("utf-8"), re.DOTALL
    )
    rows = [json.loads(spec)["data"]["values"] for spec in specs]
    return [len({tuple(sorted(r.items())) for r in values}) for values in rows]


class ScriptSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources += [v or "" for k, v in attrs if k == "src"]


def script_sources(page: Path) -> list[str]:
    parser = ScriptSources()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.sources


def drawn(n: int):
    """A wait condition: each chart's marks once all ``n`` charts have drawn."""

    def check(driver) -> list[int] | None:
        marks = driver.execute_script(MARKS)
        return marks if len(marks) == n and min(marks) >= 0 else None

    return check


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "page.html"
    r = CliRunner().invoke(app, ["plots-template", str(path)])
    assert r.exit_code == 0, r.output
    return path


@pytest.fixture(scope="module")
def pages(template, tmp_path_factory) -> dict[str, Path]:
    """Every plot of the workspace; one model's curves, workspace vs HEAD."""
    tmp = tmp_path_factory.mktemp("pages")
    return {
        "show": plots("show", out=tmp / "show", template=template),
        "diff": plots(
            "diff", "HEAD", "--targets", *ONE_MODEL, out=tmp / "diff", template=template
        ),
    }


def test_the_project_config_names_the_template_setup_writes() -> None:
    from dvc.config import Config

    config = Config(dvc_dir=str(ROOT / ".dvc")).load_one("repo")
    assert ROOT / ".dvc" / config["plots"]["html_template"] == ROOT / TEMPLATE
    assert "\ncvae plots-template\n" in (ROOT / "scripts/setup.sh").read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(TEMPLATE)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, f"{TEMPLATE} is not git-ignored"


def test_the_pages_load_no_script_from_the_network(pages) -> None:
    for page in pages.values():
        assert script_sources(page) == []  # one inline bundle, no <script src>
        assert not re.search(r"<script[^>]*\bsrc\s*=", page.read_text("utf-8"))
        assert "cdn.jsdelivr" not in page.read_text("utf-8")


def test_plots_diff_targets_show_one_model_only(pages) -> None:
    text = pages["diff"].read_text(encoding="utf-8")
    assert vega_charts(pages["diff"]) == len(ONE_MODEL)
    assert '"rev": "HEAD"' in text and '"rev": "workspace"' in text
    assert "Fashion-MNIST fc:" in text and "Fashion-MNIST conv:" not in text


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run does)",
)
def test_every_chart_draws_offline_in_chromium(pages, tmp_path) -> None:
    from dvc_render.html import PAGE_HTML
    from selenium.webdriver.support.ui import WebDriverWait

    # The control: DVC's own page, whose libraries come from a CDN.
    cdn_template = tmp_path / "cdn.html"
    cdn_template.write_text(PAGE_HTML, encoding="utf-8")
    cdn = plots("show", *ONE_MODEL, out=tmp_path / "cdn", template=cdn_template)
    assert any(s.startswith("https://") for s in script_sources(cdn))

    driver = headless_chrome(
        tmp_path / "profile", width=1200, height=900, flags=NO_NETWORK
    )
    try:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": CATCH}
        )
        for name, page in pages.items():
            n = vega_charts(page)
            assert n > 0, name
            driver.get(page.as_uri())
            wait = WebDriverWait(driver, 30, poll_frequency=0.2)
            marks = wait.until(drawn(n), f"{name}: not every chart drew")
            loaded = driver.execute_script(LOADED)
            points = data_points(page)
            assert all(m >= p > 0 for m, p in zip(marks, points)), (name, marks, points)
            failed = [
                p
                for p in loaded["problems"]
                # vega-embed's note when the Vega-Lite library's major version
                # is not the one of the charts' $schema
                if not p.startswith("warn: ") or "input spec uses" in p
            ]
            assert failed == [], (name, failed)
            assert all(u.startswith("file:") for u in loaded["fetched"]), name

        driver.get(cdn.as_uri())  # without the network DVC's page stays empty
        assert driver.execute_script(MARKS) == []
        problems = driver.execute_script(LOADED)["problems"]
        assert any("vegaEmbed is not defined" in p for p in problems), problems
    finally:
        driver.quit()
