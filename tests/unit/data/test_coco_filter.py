"""COCO caption filter: keyword matching, manifest, counts, errors, stage."""

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, write_params
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cvae.core.errors import CVAEError
from cvae.data.coco import (
    DEFAULT_KEYWORDS,
    MANIFEST_SCHEMA,
    assign_split,
    compile_keywords,
    filter_coco,
    match_subsets,
    subset_coco,
    word_forms,
)

DATA = SHARED_DATA
SAMPLE = DATA / "coco-sample"
VAL2017 = DATA / "captions_val2017.json"
needs_sample = pytest.mark.skipif(
    not (SAMPLE / "captions.json").is_file(),
    reason=f"real COCO sample absent at {SAMPLE} (see shared/data/README.md)",
)
needs_val2017 = pytest.mark.skipif(
    not VAL2017.is_file(), reason=f"captions_val2017.json absent at {VAL2017}"
)


@pytest.mark.parametrize(
    ("keyword", "caption", "expected"),
    [
        ("cow", "Two COWS graze on a hill.", True),
        ("cow", "A cow.", True),
        ("cow", "The cow's tail", True),
        ("cow", "A cowboy rides a horse", False),
        ("cow", "a scowling man", False),
        ("sheep", "Sheep on a hillside", True),
        ("pony", "three ponies in a paddock", True),
        ("bush", "bushes by the road", True),
        ("calf", "a cow with two calves", True),
        ("goose", "geese on a pond", True),
        ("ox", "oxen pulling a cart", True),
        ("ankle boot", "black Ankle Boots", True),
        ("ankle boot", "an ankle-boot", True),
        ("ankle boot", "an ankle and a boot", False),
        ("hill", "a hillside", False),
        ("farm", "a farmer", False),
        ("tree", "a street", False),
        ("horse", "a seahorse", False),
        ("horse", "horse_riding", False),
    ],
)
def test_keyword_matching(keyword: str, caption: str, expected: bool) -> None:
    assert bool(compile_keywords([keyword]).search(caption)) is expected


@settings(max_examples=50, deadline=None)
@given(
    word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8),
    prefix=st.sampled_from(["", "A ", "two ", "(", "big, "]),
    suffix=st.sampled_from(["", ".", " graze", "!", "'s"]),
    upper=st.booleans(),
)
def test_plural_and_case_property(
    word: str, prefix: str, suffix: str, upper: bool
) -> None:
    context = set(re.findall(r"\w+", (prefix + " " + suffix).lower()))
    assume(not context & word_forms(word))
    pattern = compile_keywords([word])
    plural = word.upper() + "S" if upper else word + "s"
    assert pattern.search(f"{prefix}{plural}{suffix}")
    assert pattern.search(f"{prefix}{word.title()}{suffix}")
    assert not pattern.search(f"{prefix}x{word}{suffix}")  # not inside a word
    assert not pattern.search(f"{prefix}{word}q{suffix}")


def test_match_subsets_sorted_names() -> None:
    sets = {"nature": ["tree"], "bucolic": ["cow"], "city": ["bus"]}
    assert match_subsets(["A cow under a tree."], sets) == ["bucolic", "nature"]
    assert match_subsets(["A cowboy in a street."], sets) == []
    assert match_subsets([], sets) == []


def test_empty_keywords_rejected() -> None:
    with pytest.raises(CVAEError):
        compile_keywords([])
    with pytest.raises(CVAEError):
        compile_keywords(["cow", "  "])


def test_split_is_per_image_and_stable() -> None:
    ids = range(20_000)
    splits = [assign_split(i, val_fraction=0.1, seed=0) for i in ids]
    assert abs(splits.count("val") / len(splits) - 0.1) < 0.01
    # Same answer alone or among others, and a different seed reshuffles.
    assert assign_split(1234, val_fraction=0.1, seed=0) == splits[1234]
    assert splits != [assign_split(i, val_fraction=0.1, seed=1) for i in ids]
    assert {assign_split(i, val_fraction=0.0, seed=0) for i in range(500)} == {"train"}


@needs_sample
def test_filter_real_sample() -> None:
    table, counts = filter_coco(
        SAMPLE / "captions.json",
        SAMPLE / "images",
        DEFAULT_KEYWORDS,
        val_fraction=0.1,
        seed=0,
    )
    assert table.schema.equals(MANIFEST_SCHEMA)
    ids = table.column("image_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert counts["images_in_file"] == 249 and counts["captions_in_file"] == 1245
    assert counts["kept"] == table.num_rows == 48
    assert counts["missing"] == 0
    assert counts["subsets"] == {"bucolic": 10, "nature": 42}
    assert counts["train"] + counts["val"] == counts["kept"]
    for row in table.to_pylist():
        assert row["subsets"] == sorted(row["subsets"]) and row["subsets"]
        assert row["subsets"] == match_subsets(row["captions"], DEFAULT_KEYWORDS)
        assert len(row["captions"]) == 5
        assert (SAMPLE / "images" / row["file_name"]).is_file()
        assert row["split"] == assign_split(row["image_id"], val_fraction=0.1, seed=0)
    assert counts["captions"] == sum(
        len(c) for c in table.column("captions").to_pylist()
    )


@needs_sample
def test_filter_counts_missing_images(tmp_path: Path) -> None:
    full, _ = filter_coco(
        SAMPLE / "captions.json", None, DEFAULT_KEYWORDS, val_fraction=0.1, seed=0
    )
    keep = full.column("image_id").to_pylist()[:5]
    # A folder holding only 5 of the matching images: the others count as missing.
    subset_coco(SAMPLE / "captions.json", SAMPLE / "images", tmp_path, keep)
    table, counts = filter_coco(
        SAMPLE / "captions.json",
        tmp_path / "images",
        DEFAULT_KEYWORDS,
        val_fraction=0.1,
        seed=0,
    )
    assert table.column("image_id").to_pylist() == keep
    assert counts["matched"] == full.num_rows
    assert counts["missing"] == full.num_rows - 5


@needs_val2017
def test_filter_val2017_counts_match_naive_tokens() -> None:
    """Regex counts at real scale equal a naive word-token reference."""
    table, counts = filter_coco(
        VAL2017, None, DEFAULT_KEYWORDS, val_fraction=0.1, seed=0
    )
    assert counts["images_in_file"] == 5000 and counts["captions_in_file"] == 25014
    assert counts["kept"] == 1084
    assert counts["subsets"] == {"bucolic": 321, "nature": 921}

    data = json.loads(VAL2017.read_text())
    by_image: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["caption"].lower())
    naive: dict[str, set[int]] = {}
    for name, keywords in DEFAULT_KEYWORDS.items():
        single = set().union(*(word_forms(k) for k in keywords if " " not in k))
        multi = [k.split() for k in keywords if " " in k]
        for image_id, caps in by_image.items():
            for cap in caps:
                tokens = re.findall(r"\w+", cap.replace("-", " "))
                pairs = {(a, b) for a, b in zip(tokens, tokens[1:], strict=False)}
                if single & set(tokens) or any(
                    (w[0], f) in pairs for w in multi for f in word_forms(w[1])
                ):
                    naive.setdefault(name, set()).add(image_id)
    assert {k: len(v) for k, v in naive.items()} == counts["subsets"]
    assert set(table.column("image_id").to_pylist()) == set().union(*naive.values())


def test_errors_name_the_fix(tmp_path: Path) -> None:
    kw = {"bucolic": ["cow"]}
    with pytest.raises(CVAEError, match="not found"):
        filter_coco(tmp_path / "nope.json", None, kw, val_fraction=0.1, seed=0)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CVAEError, match="not valid JSON"):
        filter_coco(bad, None, kw, val_fraction=0.1, seed=0)
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(CVAEError, match="no 'images'"):
        filter_coco(bad, None, kw, val_fraction=0.1, seed=0)
    instances = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [], "bbox": []}],
    }
    bad.write_text(json.dumps(instances))
    with pytest.raises(CVAEError, match="instances/keypoints annotations"):
        filter_coco(bad, None, kw, val_fraction=0.1, seed=0)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "caption": "A cow."}],
            }
        )
    )
    with pytest.raises(CVAEError, match="images folder"):
        filter_coco(good, tmp_path / "nodir", kw, val_fraction=0.1, seed=0)
    with pytest.raises(CVAEError, match="val_fraction"):
        filter_coco(good, None, kw, val_fraction=1.0, seed=0)
    table, counts = filter_coco(good, None, kw, val_fraction=0.0, seed=0)
    assert table.to_pylist() == [
        {
            "image_id": 1,
            "file_name": "a.jpg",
            "subsets": ["bucolic"],
            "captions": ["A cow."],
            "split": "train",
        }
    ]


def _write_params(path: Path, **filter_params: object) -> Path:
    section = {
        "keywords": DEFAULT_KEYWORDS,
        "subsets": ["bucolic", "nature"],
        "val_fraction": 0.25,
        "seed": 0,
        **filter_params,
    }
    return write_params(path, {"filter": section})


@needs_sample
def test_filter_stage_main(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stages.coco_filter import main

    full, _ = filter_coco(
        SAMPLE / "captions.json", None, DEFAULT_KEYWORDS, val_fraction=0.1, seed=0
    )
    ids = full.column("image_id").to_pylist()[:6] + [139, 790]  # + 2 non-matching
    captions = subset_coco(SAMPLE / "captions.json", SAMPLE / "images", tmp_path, ids)
    params = _write_params(tmp_path / "params.yaml")
    out, metrics = tmp_path / "out" / "manifest.parquet", tmp_path / "filter.json"
    main(
        captions=captions,
        images=tmp_path / "images",
        out=out,
        metrics=metrics,
        params=params,
    )
    assert "filter: kept 6/8 images" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column("image_id").to_pylist() == sorted(ids[:6])
    m = json.loads(metrics.read_text())
    assert m["kept"] == 6 and m["missing"] == 0 and m["captions"] == 30
    assert set(m["subsets"]) == {"bucolic", "nature"}

    # Only the listed subsets are kept; an unknown name exits 2 with one line.
    main(
        captions=captions,
        out=out,
        metrics=metrics,
        params=_write_params(tmp_path / "p2.yaml", subsets=["bucolic"]),
    )
    assert set(json.loads(metrics.read_text())["subsets"]) == {"bucolic"}
    with pytest.raises(SystemExit) as exit_info:
        main(
            captions=captions,
            out=out,
            metrics=metrics,
            params=_write_params(tmp_path / "p3.yaml", subsets=["urban"]),
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "p3.yaml: filter: subsets names 'urban', not a set of filter.keywords" in err


@needs_sample
def test_filter_stage_refuses_bad_captions_and_folders_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An image id or an annotation id listed twice, an images folder that is not
    there: one line naming the fix, exit 1, no manifest."""
    from conftest import fails, one_line

    from stages.coco_filter import main

    data = json.loads((SAMPLE / "captions.json").read_text())
    first_img, first_ann = data["images"][0], data["annotations"][0]
    image_twice = dict(data, images=[*data["images"], dict(first_img, file_name="x")])
    ann_twice = dict(
        data, annotations=[*data["annotations"], dict(first_ann, caption="A cow.")]
    )
    params = _write_params(tmp_path / "params.yaml")
    out = tmp_path / "out" / "manifest.parquet"
    cases = [
        (
            image_twice,
            SAMPLE / "images",
            f"image id {first_img['id']} is listed twice "
            f"({first_img['file_name']!r} and 'x'): give each image its own id",
        ),
        (
            ann_twice,
            SAMPLE / "images",
            f"annotation id {first_ann['id']} is listed twice (captions of image "
            f"{first_ann['image_id']} and {first_ann['image_id']}): give each "
            "annotation its own id",
        ),
        (
            data,
            tmp_path / "no-images",
            f"images folder {tmp_path / 'no-images'} not found: set "
            "coco_data.images (--images) to the folder holding the COCO images",
        ),
    ]
    for k, (captions, images, message) in enumerate(cases):
        path = tmp_path / f"captions{k}.json"
        path.write_text(json.dumps(captions))
        err = one_line(
            fails(
                capsys,
                main,
                captions=path,
                images=images,
                out=out,
                metrics=tmp_path / "f.json",
                params=params,
            )
        )
        assert message in err, err
        assert not out.exists() and not (tmp_path / "f.json").exists()
