"""The params schema: every wrong value, key or file is refused with one line
that names the key, the value and the fix (``load_params``, ``validate``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DROP, dump_yaml, mutate, repo_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvae.params.loading import load_params, validate
from cvae.params.schema import ParamsError


@dataclass(frozen=True)
class Renamed:
    """A case value: the key renamed to ``to`` (its value kept)."""

    to: str

    def __repr__(self) -> str:
        return f"renamed to {self.to}"


# -- params: (key, value, what the one line says) ------------------------------------
PARAM_CASES = [
    # unknown keys, each with the closest known one
    ("shard.image_fromat", "png", "unknown key shard.image_fromat: did you mean "),
    ("conditionning", "add", "unknown key conditionning: did you mean conditioning?"),
    ("filter.subset", ["bucolic"], "unknown key filter.subset: did you mean "),
    ("fashion.model.fc.latent", 8, "did you mean fashion.model.fc.latent_dim?"),
    ("coco.train.lr_decay", 0.5, "unknown key coco.train.lr_decay"),
    ("fashion.train. lr", 0.1, "unknown key fashion.train.' lr': did you mean"),
    # a renamed or misspelt key: the unknown key and what it resembles, not the
    # key it leaves missing (the line ends there: no "(and 1 more)")
    (
        "shard.image_format",
        Renamed("image_fromat"),
        "unknown key shard.image_fromat: did you mean shard.image_format?",
    ),
    ("coco_data", Renamed("coco_dat"), "unknown key coco_dat: did you mean coco_data?"),
    (
        "fashion.train.epochs",
        Renamed("epoch"),
        "unknown key fashion.train.epoch: did you mean fashion.train.epochs?",
    ),
    # wrong types: strict, YAML 1.2 (no string for a number or a bool)
    ("embed.normalize", "false", "embed.normalize = 'false': true or false is"),
    ("fashion.train.lr", "1e-3", "fashion.train.lr = '1e-3': a number is required"),
    ("fashion.train.epochs", 1.5, "fashion.train.epochs = 1.5: an integer is"),
    ("size", 64.0, "size = 64.0: an integer is required"),
    ("coco.train.batch_size", True, "coco.train.batch_size = True: an integer"),
    ("coco.train.batch_size", "32", "coco.train.batch_size = '32': an integer"),
    ("fashion.train.epochs", None, "fashion.train.epochs = None: an integer"),
    ("size", [64], "size = [64]: an integer is required"),
    ("shard", 3, "shard = 3: a section (mapping) is required, not int"),
    ("filter.keywords", ["cow"], "filter.keywords = ['cow']: a mapping is required"),
    ("coco.evaluate.prompts", "A cow.", "coco.evaluate.prompts = 'A cow.': a list"),
    # out of range and choices
    ("size", 100, "size = 100: use one of 64, 128, 256"),
    ("conditioning", "foo", "conditioning = 'foo': input should be 'concat' or 'add'"),
    ("condition_on", "audio", "condition_on = 'audio': input should be 'text' or"),
    ("fashion.model.fc.hidden_dims", [-5], "fashion.model.fc.hidden_dims[0] = -5"),
    ("fashion.model.fc.hidden_dims", [], "hidden_dims = []: list should have at"),
    ("fashion.model.conv.channels", [8, 16], "channels = [8, 16]: list should have"),
    ("fashion.data.train_limit", -5, "fashion.data.train_limit = -5: input should"),
    ("fashion.data.train_limit", 0, "fashion.data.train_limit = 0: input should"),
    ("filter.val_fraction", 0.0, "filter.val_fraction = 0.0: input should be greater"),
    ("filter.val_fraction", 1, "filter.val_fraction = 1: input should be less"),
    ("coco.train.seed", 2**63, "coco.train.seed = 9223372036854775808: input"),
    ("embed.seed", -1, "embed.seed = -1: input should be greater than or equal to 0"),
    ("embed.device", "gpu", "embed.device = 'gpu': use auto, cpu, cuda or cuda:N"),
    ("fashion.train.recon", "l1", "fashion.train.recon = 'l1': input should be"),
    ("coco.train.loader", "disk", "coco.train.loader = 'disk': input should be"),
    ("shard.image_format", "gif", "shard.image_format = 'gif': input should be"),
    ("coco.evaluate.prompts", [], "coco.evaluate.prompts = []: list should have"),
    ("coco.evaluate.prompts", ["  "], "prompts[0] = '  ': use a non-empty string"),
    ("fashion.train.lr", 0, "fashion.train.lr = 0: input should be greater than 0"),
    (
        "coco.train.beta",
        float("inf"),
        "coco.train.beta = inf: input should be a finite",
    ),
    (
        "filter.keywords",
        {"  ": ["cow"]},
        "filter.keywords.'  ' key = '  ': use a non-empty",
    ),
    # cross-field rules
    ("filter.subsets", ["bucolik"], "filter: subsets names 'bucolik', not a set"),
    ("fashion.tsne.perplexity", 5000.0, "fashion.tsne: perplexity 5000.0 must be"),
    ("fashion.fid.samples", 5000, "fashion: fid.samples 5000 is below the protocol"),
    ("fashion.fid.samples", 1, "fashion.fid: samples 1: use 0 (off) or >= 2"),
    (
        "fashion.model.vaegan.adversarial.start_epoch",
        3,
        "fashion.model.vaegan: adversarial.start_epoch 3 >= epochs 3",
    ),
    (
        "fashion.model.vaegan.adversarial.weight",
        -0.5,
        "fashion.model.vaegan.adversarial.weight = -0.5: input should be greater",
    ),
    (
        "fashion.model.vaegan.ema",
        1.0,
        "fashion.model.vaegan.ema = 1.0: input should be less than 1",
    ),
    (
        "fashion.model.vaegan.adversarial.mismatch",
        True,
        "adversarial.mismatch = True: input should be 'none', 'uniform' or 'hard'",
    ),
    # the models the pipeline trains: known names, each once, at least one
    ("fashion.archs", ["fc", "gan"], "fashion.archs[1] = 'gan': input should be "),
    ("fashion.archs", ["fc", "conv", "fc"], "'fc' is listed twice: name each model"),
    ("fashion.archs", [], "fashion.archs = []: list one or more of fc, conv, gmm"),
    ("fashion.archs", "vaegan", "fashion.archs = 'vaegan': a list is required"),
    # a model section's own fields
    ("fashion.model.fc.conditioning", "mul", "fc.conditioning = 'mul'"),
    ("fashion.model.conv.latent_dim", 0, "conv.latent_dim = 0"),
    ("fashion.model.fc.hidden", 3, "did you mean fashion.model.fc.hidden_dims?"),
    ("fashion.train.device", "tpu", "device = 'tpu': use auto, cpu, cuda"),
    # devices torch knows but resolve_device refuses
    ("embed.device", "mps", "embed.device = 'mps': use auto, cpu, cuda or cuda:N"),
    ("coco.train.device", "xpu", "coco.train.device = 'xpu': use auto, cpu, cuda"),
    ("fashion.fid.device", "meta", "fashion.fid.device = 'meta': use auto, cpu"),
    ("coco.evaluate.device", "cuda:01", "device = 'cuda:01': use auto, cpu, cuda"),
    # a union (auto or an integer): what each member allows, in words
    (
        "coco.train.num_workers",
        -1,
        "coco.train.num_workers = -1: use auto or an integer >= 0",
    ),
    (
        "coco.train.num_workers",
        "all",
        "coco.train.num_workers = 'all': use auto or an integer >= 0",
    ),
    (
        "coco.train.num_workers",
        None,
        "coco.train.num_workers = None: use auto or an integer >= 0",
    ),
    ("fashion.train.epochs", -1, "fashion.train.epochs = -1: input should be"),
    ("fashion.train.batch_size", 0, "fashion.train.batch_size = 0"),
    ("fashion.train.epochz", 1, "unknown key fashion.train.epochz: did you mean"),
    ("coco.train.epochs", -3, "coco.train.epochs = -3: input should be"),
    ("conditioning", "multiply", "conditioning = 'multiply': input"),
    # missing keys and sections
    ("fashion.train.lr", DROP, "fashion.train.lr is missing: add it"),
    ("coco", DROP, "coco is missing: add it"),
]

TEXT_CASES = [  # params files that are not YAML mappings at all
    (b"fashion: {model: [1\n", "is not valid YAML at line 2"),
    (b"- fashion\n", "is not a mapping of sections"),
    (b"", "is not a mapping of sections"),
    (b"size: 64\nsize: 128\n", "is not valid YAML at line 2"),
    (b"size: \xff\xfe\n", "is not UTF-8 text"),
    (b"size: 64\n", "cpu_threads is missing: add it (the repository's params.yaml"),
]


@pytest.mark.parametrize(
    "key, value, message", PARAM_CASES, ids=[f"{c[0]}={c[1]!r}" for c in PARAM_CASES]
)
def test_bad_param(tmp_path, key, value, message) -> None:
    bad = tmp_path / "params.yaml"
    params = repo_params()
    if isinstance(value, Renamed):
        *section, old = key.split(".")
        node = params
        for part in section:
            node = node[part]
        node[value.to] = node.pop(old)
    else:
        mutate(params, key, value)
    bad.write_text(dump_yaml(params))
    with pytest.raises(ParamsError) as e:
        load_params(bad)
    text = str(e.value)
    assert text.startswith(f"{bad}: ") and "\n" not in text
    assert message in text
    assert "literal[" not in text and "constrained-" not in text  # no union tags
    if isinstance(value, Renamed):
        assert text.endswith(message)  # once, and no "is missing" behind it


@pytest.mark.parametrize("text, message", TEXT_CASES)
def test_broken_params_file(tmp_path, text, message) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_bytes(text)
    with pytest.raises(
        ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load_params(bad)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(
        ParamsError, match="no.yaml not found: run from the project root"
    ):
        load_params(tmp_path / "no.yaml")


def test_the_repository_params_are_valid() -> None:
    p = validate(repo_params())
    assert p.size in (64, 128, 256)


# -- property: random mutations of params.yaml ----------------------------------------
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested params mapping (sections and leaves)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    return out


BASE = repo_params()
PATHS = _paths(BASE)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    # no subnormals: an in-process stage may have set flush-to-zero (FTZ)
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.text(max_size=12),
    st.lists(st.integers(-3, 600), max_size=4),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(PATHS),
            st.sampled_from(["set", "delete", "unknown"]),
            VALUES,
            st.text(min_size=1, max_size=10),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_params_give_a_config_or_one_line(edits) -> None:
    params = copy.deepcopy(BASE)
    for path, action, value, name in edits:
        node = params
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if not isinstance(node, dict):
                continue
            if action == "set":
                node[path[-1]] = value
            elif action == "delete":
                node.pop(path[-1], None)
            else:
                node[name] = value
    try:
        p = validate(params)
    except ParamsError as e:
        text = str(e)
        assert text.startswith("params.yaml: ") and "\n" not in text
        assert "Traceback" not in text
    else:
        assert p.size in (64, 128, 256) and p.fashion.train.epochs >= 1
