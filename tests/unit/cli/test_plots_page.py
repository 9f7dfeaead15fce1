"""`cvae plots-template`: DVC's plots page with the Vega libraries inline (the
page drawn in Chromium: tests/repo/test_plots_offline.py)."""

from __future__ import annotations

import re
import sys

import pytest
from dvc_render.html import HTML
from dvc_render.vega_templates import LinearTemplate
from typer.testing import CliRunner

from cvae.core.errors import CVAEError
from cvae_cli import plots_page
from cvae_cli.main import app
from cvae_cli.plots_page import plots_page as make_page
from cvae_cli.plots_page import vega_lite_major

FAKE = 'window.vegaEmbed = () => "</script><p>"; // </SCRIPT>'


def test_dvc_fills_the_page_and_adds_no_cdn_script() -> None:
    page = make_page(FAKE, "vega-embed 0")
    assert page.count("{plot_divs}") == page.count("{refresh_tag}") == 1
    assert "{scripts}" not in page  # where DVC would put its CDN <script> tags
    html = HTML(page).with_scripts('<script src="https://cdn/vega"></script>')
    filled = html.with_element("<div id=a>chart</div>").embed()
    assert "<div id=a>chart</div>" in filled and "https://" not in filled


def test_the_bundle_cannot_end_its_script_tag_early() -> None:
    page = make_page(FAKE, "vega-embed 0")
    assert re.findall(r"</script", page, re.IGNORECASE) == ["</script"]  # its own
    assert '"<\\/script><p>"' in page and "<\\/SCRIPT>" in page
    assert "(function () {\n" + FAKE.replace("</", "<\\/") + "\n})();" in page


def test_a_bundle_holding_a_dvc_placeholder_is_refused() -> None:
    with pytest.raises(CVAEError, match="placeholder {plot_divs}"):
        make_page("var s = '{plot_divs}';", "vega-embed 0")


def test_vega_lite_is_the_major_version_of_dvc_s_charts() -> None:
    schema = LinearTemplate.DEFAULT_CONTENT["$schema"]
    assert schema.endswith(f"/vega-lite/v{vega_lite_major()}.json")


def test_the_command_writes_the_template(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(plots_page, "vega_bundle", lambda major: (FAKE, f"vl {major}"))
    out = tmp_path / "new" / "page.html"
    r = CliRunner().invoke(app, ["plots-template", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text("utf-8") == make_page(FAKE, "vl 5")
    assert f"{out}: dvc plots page template, vl 5 inline" in r.output
    assert [p.name for p in out.parent.iterdir()] == ["page.html"]  # no temp file


def test_without_the_extra_the_command_names_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)  # import fails
    r = CliRunner().invoke(app, ["plots-template", str(tmp_path / "p.html")])
    assert r.exit_code == 2
    assert "pip install -e '.[plots]'" in r.output and "setup.sh" in r.output
    assert not (tmp_path / "p.html").exists()


def test_an_unwritable_path_is_one_error_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(plots_page, "vega_bundle", lambda major: (FAKE, "vl"))
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(app, ["plots-template", str(tmp_path / "file" / "p.html")])
    assert r.exit_code == 1
    assert r.output.startswith("error: cannot write") and "fix the path" in r.output
