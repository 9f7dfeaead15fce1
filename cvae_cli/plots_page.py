"""An offline page for `dvc plots show` and `dvc plots diff`.

DVC draws the curves and the confusion matrix with Vega-Lite, in a page that
loads vega, vega-lite and vega-embed from a CDN, so offline every chart stays
empty. `cvae plots-template` writes DVC a page template (``plots.html_template``
in ``.dvc/config``) that holds the three libraries inline, taken from the
vl-convert-python wheel, so the pages draw with no network.
"""

from __future__ import annotations

import re
from pathlib import Path

from cvae.core.errors import CVAEError, UsageError
from cvae.core.files import atomic_open

# Where the template goes, from the project root; `.dvc/config` names it
# (relative to `.dvc/`) and .gitignore ignores it.
TEMPLATE = Path(".dvc") / "plots-page.html"
# What DVC fills in (dvc_render.html). The template leaves out "{scripts}",
# where DVC would put its CDN <script> tags.
PLOT_DIVS, REFRESH = "{plot_divs}", "{refresh_tag}"
PLACEHOLDERS = (PLOT_DIVS, REFRESH, "{scripts}")

HEAD = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <script>
"""
TAIL = """
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vega_lite_major() -> int:
    """The Vega-Lite major version of DVC's chart templates (their ``$schema``)."""
    from dvc_render.vega_templates import TEMPLATES

    schemas = {t.DEFAULT_CONTENT.get("$schema", "") for t in TEMPLATES}
    majors = {int(m) for s in schemas for m in re.findall(r"vega-lite/v(\d+)", s)}
    if len(majors) != 1:
        raise CVAEError(f"DVC's chart templates declare Vega-Lite {sorted(schemas)}")
    return majors.pop()


def vega_bundle(major: int) -> tuple[str, str]:
    """(JavaScript that defines ``vega``, ``vegaLite`` and ``vegaEmbed`` on
    ``window``, with the newest Vega-Lite ``major.x`` vl-convert holds; the
    libraries and their versions)."""
    try:
        import vl_convert
    except ImportError:
        raise UsageError(
            "the plots page needs its extra: pip install -e '.[plots]' "
            "(bash scripts/setup.sh installs it)"
        ) from None
    versions = [
        v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == str(major)
    ]
    if not versions:
        raise CVAEError(
            f"vl-convert-python {vl_convert.__version__} holds no Vega-Lite "
            f"{major}.x, which DVC's charts need: bash scripts/setup.sh"
        )
    vl = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    names = (
        f"vega {vl_convert.get_vega_version()}, vega-lite {vl}, "
        f"vega-embed {vl_convert.get_vega_embed_version()}"
    )
    return vl_convert.javascript_bundle(vl_version=vl), names


def plots_page(bundle: str, names: str) -> str:
    """DVC's page template with ``bundle`` inline: run in a function of its own
    (its names stay out of the page's, where DVC declares ``var spec``), and
    no ``</script`` inside it to end the tag early."""
    found = [p for p in PLACEHOLDERS if p in bundle]
    if found:
        raise CVAEError(f"the Vega bundle holds DVC's placeholder {found[0]}")
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)
    return (
        f"{HEAD}/* {names}: inline, so the charts draw with no network */\n"
        f"(function () {{\n{bundle}\n}})();{TAIL}"
    )


def write_plots_template(path: Path) -> tuple[int, str]:
    """Write the template to ``path`` atomically; (its size in bytes, the
    libraries and their versions)."""
    bundle, names = vega_bundle(vega_lite_major())
    page = plots_page(bundle, names).encode("utf-8")
    try:
        with atomic_open(path, "wb") as f:
            f.write(page)
    except OSError as e:
        raise CVAEError(f"cannot write {path} ({e.strerror or e}): fix the path") from e
    return len(page), names
