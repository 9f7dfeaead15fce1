"""COCO captions: keyword subsets (bucolic, nature, ...) and the image manifest.

The manifest is one row per kept image, sorted by ``image_id``:

    image_id   int64        COCO image id
    file_name  string       file name inside the images folder
    subsets    list<string> names of the keyword sets its captions match (sorted)
    captions   list<string> all captions of the image (annotation id order)
    split      string       "train" or "val", from a hash of (seed, image_id)

Keyword matching is whole-word, case-insensitive and plural-aware: ``cow``
matches "Cows" and "cow's" but not "cowboy"; ``pony`` matches "ponies";
``ankle boot`` matches "ankle boots". An image belongs to a subset when any of
its captions contains any keyword of that subset.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools.coco import COCO

from cvae.core.errors import CVAEError
from cvae.core.files import atomic_path, read_parquet, write_json

# Suggested keyword sets (params.yaml ``filter.keywords``), checked against
# captions_val2017.json. Left out on purpose because in COCO they mostly describe
# something else: "field" (baseball/soccer field; the countryside sense is kept
# through "grassy field" etc.), "herd"/"grazing" (elephants, zebras, giraffes),
# "flock" (birds), "chicken"/"hay" (food, zoo feeding), "bull" ("pit bull"),
# "shepherd" ("German shepherd"), "stable" (the adjective).
DEFAULT_KEYWORDS: dict[str, list[str]] = {
    "bucolic": [
        "barn", "calf", "cattle", "countryside", "cow", "donkey", "farm",
        "farmer", "farmhouse", "farmland", "foal", "goat", "goose", "haystack",
        "hen", "horse", "lamb", "livestock", "mule", "orchard", "ox", "paddock",
        "pasture", "pig", "piglet", "pony", "ranch", "rooster", "rural", "sheep",
        "tractor",
    ],
    "nature": [
        "creek", "forest", "grass", "grass field", "grassland", "grassy",
        "grassy field", "green field", "hill", "hillside", "lake", "meadow",
        "mountain", "open field", "pond", "prairie", "river", "shrub", "stream",
        "tree", "valley", "waterfall", "wilderness", "wildflower", "woods",
    ],
}  # fmt: skip

SPLITS = ("train", "val")

# Plurals that do not follow the -s / -es / -ies / -ves rules.
_IRREGULAR_PLURALS = {
    "child": "children",
    "foot": "feet",
    "goose": "geese",
    "man": "men",
    "mouse": "mice",
    "ox": "oxen",
    "person": "people",
    "tooth": "teeth",
    "woman": "women",
}


def word_forms(word: str) -> set[str]:
    """Return the singular and the plausible plural forms of one lower-case word.

    ``cow -> {cow, cows}``, ``pony -> {pony, ponies}``, ``bush -> {bush, bushes}``,
    ``calf -> {calf, calfs, calves}``, ``goose -> {goose, gooses, geese}``. Over-
    generating ("sheeps") is harmless: the form simply never occurs.
    """
    w = word.lower()
    forms = {w, w + "s"}
    if w in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[w])
    if re.search(r"[^aeiou]y$", w):
        forms.add(w[:-1] + "ies")
    if re.search(r"(s|x|z|ch|sh|o)$", w):
        forms.add(w + "es")
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    elif w.endswith("f"):
        forms.add(w[:-1] + "ves")
    return forms


def _keyword_pattern(keyword: str) -> str:
    """Regex (no anchors) for one keyword; only its last word is pluralised."""
    words = keyword.lower().split()
    if not words:
        raise CVAEError("empty keyword in filter.keywords: remove it from params.yaml")
    head = [re.escape(w) for w in words[:-1]]
    # Longest form first so "cows" is tried before "cow" (cosmetic: the trailing
    # word-boundary check makes the order irrelevant for correctness).
    tail = sorted(word_forms(words[-1]), key=lambda f: (-len(f), f))
    last = "(?:" + "|".join(re.escape(f) for f in tail) + ")"
    return r"[\s-]+".join([*head, last])


@functools.lru_cache(maxsize=64)
def _compile_cached(keywords: tuple[str, ...]) -> re.Pattern[str]:
    if not keywords:
        raise CVAEError("a keyword set is empty: give it at least one keyword")
    alternatives = "|".join(_keyword_pattern(k) for k in keywords)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def compile_keywords(keywords: Iterable[str]) -> re.Pattern[str]:
    """Compile a keyword list into one whole-word, case-insensitive regex."""
    return _compile_cached(tuple(str(k) for k in keywords))


def match_subsets(
    captions: list[str], keyword_sets: Mapping[str, Iterable[str]]
) -> list[str]:
    """Return the sorted names of the keyword sets that any caption matches."""
    matched = []
    for name, keywords in keyword_sets.items():
        pattern = compile_keywords(keywords)
        if any(pattern.search(c) for c in captions):
            matched.append(name)
    return sorted(matched)


def assign_split(image_id: int, *, val_fraction: float, seed: int) -> str:
    """Return "val" or "train" from a hash of ``(seed, image_id)`` alone.

    Adding or removing other images never moves this one to the other split.
    """
    digest = hashlib.sha256(f"{seed}:{int(image_id)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)
    return "val" if u < val_fraction else "train"


def load_coco_captions(captions_json: str | os.PathLike) -> COCO:
    """Read and validate a COCO captions file; return a pycocotools ``COCO``."""
    path = Path(captions_json)
    if not path.is_file():
        raise CVAEError(
            f"captions file {path} not found: pass a COCO captions_*.json "
            "(e.g. annotations/captions_train2017.json)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CVAEError(
            f"{path} is not valid JSON ({e}): re-download the COCO captions file"
        ) from None
    _check_captions_format(data, path)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _check_captions_format(data: Any, path: Path) -> None:
    fix = "pass a COCO captions_*.json (images[] and annotations[] with 'caption')"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CVAEError(f"{path} is not a COCO file (no 'images' list): {fix}")
    if not isinstance(data.get("annotations"), list):
        raise CVAEError(f"{path} is not a COCO file (no 'annotations' list): {fix}")
    seen: dict[Any, str] = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise CVAEError(f"{path}: an image lacks 'id' or 'file_name': {fix}")
        if img["id"] in seen:  # pycocotools would silently keep the last one
            raise CVAEError(
                f"{path}: image id {img['id']} is listed twice ({seen[img['id']]!r} "
                f"and {img['file_name']!r}): give each image its own id"
            )
        seen[img["id"]] = img["file_name"]
    of_image: dict[Any, Any] = {}  # annotation id -> its image id
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str):
            kind = "instances/keypoints" if "segmentation" in ann else "unknown"
            raise CVAEError(
                f"{path} holds {kind} annotations, not captions "
                f"(an annotation has no 'caption'): {fix}"
            )
        if "image_id" not in ann or "id" not in ann:
            raise CVAEError(f"{path}: an annotation lacks 'image_id' or 'id': {fix}")
        if ann["id"] in of_image:  # pycocotools would count it once, use it twice
            raise CVAEError(
                f"{path}: annotation id {ann['id']} is listed twice (captions of "
                f"image {of_image[ann['id']]} and {ann['image_id']}): give each "
                "annotation its own id"
            )
        of_image[ann["id"]] = ann["image_id"]


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("subsets", pa.list_(pa.string()), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)


def filter_coco(
    captions_json: str | os.PathLike,
    images_dir: str | os.PathLike | None,
    keyword_sets: Mapping[str, Iterable[str]],
    *,
    val_fraction: float,
    seed: int,
) -> tuple[pa.Table, dict[str, Any]]:
    """Keep the COCO images whose captions match any keyword set.

    Args:
        captions_json: COCO captions file (``images[]``, ``annotations[]``).
        images_dir: folder holding the image files; images whose file is absent
            are dropped and counted as ``missing``. ``None`` skips the check
            (counting on a captions file without its images).
        keyword_sets: subset name -> keywords (see ``match_subsets``).
        val_fraction: share of images sent to the "val" split, in [0, 1).
        seed: salt of the split hash.

    Returns:
        ``(manifest, counts)``: the manifest table (``MANIFEST_SCHEMA``, N rows
        sorted by image_id) and counts ``{"images_in_file", "captions_in_file",
        "matched", "missing", "kept", "captions", "train", "val", "subsets":
        {name: n}}`` where everything after ``missing`` counts kept images only.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CVAEError(f"val_fraction={val_fraction} must be in [0, 1): fix params")
    keyword_sets = {name: list(words) for name, words in keyword_sets.items()}
    if not keyword_sets:
        raise CVAEError("no keyword sets given: list at least one subset in params")
    for words in keyword_sets.values():
        compile_keywords(words)  # fail early on empty sets/keywords

    coco = load_coco_captions(captions_json)
    present: set[str] | None = None
    if images_dir is not None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise CVAEError(
                f"images folder {images_dir} not found: set coco_data.images "
                "(--images) to the folder holding the COCO images (e.g. "
                "train2017/), or leave --images out to count"
            )
        present = set(os.listdir(images_dir))

    rows: dict[str, list[Any]] = {f.name: [] for f in MANIFEST_SCHEMA}
    matched = missing = 0
    for image_id in sorted(coco.imgs):
        anns = sorted(coco.imgToAnns.get(image_id, []), key=lambda a: a["id"])
        captions = [a["caption"].strip() for a in anns]
        subsets = match_subsets(captions, keyword_sets)
        if not subsets:
            continue
        matched += 1
        file_name = coco.imgs[image_id]["file_name"]
        if present is not None and file_name not in present:
            missing += 1
            continue
        rows["image_id"].append(int(image_id))
        rows["file_name"].append(file_name)
        rows["subsets"].append(subsets)
        rows["captions"].append(captions)
        rows["split"].append(
            assign_split(image_id, val_fraction=val_fraction, seed=seed)
        )

    table = pa.table(rows, schema=MANIFEST_SCHEMA)
    counts: dict[str, Any] = {
        "images_in_file": len(coco.imgs),
        "captions_in_file": len(coco.anns),
        "matched": matched,
        "missing": missing,
        "kept": table.num_rows,
        "captions": sum(len(c) for c in rows["captions"]),
        "train": rows["split"].count("train"),
        "val": rows["split"].count("val"),
        "subsets": {
            name: sum(name in s for s in rows["subsets"]) for name in keyword_sets
        },
    }
    return table, counts


def read_manifest(path: str | os.PathLike) -> pa.Table:
    """Read a manifest parquet written by the filter stage, checking its columns."""
    table = read_parquet(path, what="manifest", stage="filter")
    missing = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
    if missing:
        raise CVAEError(
            f"{path} lacks columns {missing}: re-run the filter stage to rebuild it"
        )
    return table


def write_manifest(path: str | os.PathLike, table: pa.Table) -> None:
    """Write the manifest table as parquet, atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def subset_coco(
    captions_json: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_ids: Iterable[int],
) -> Path:
    """Copy some images and their captions into a small COCO-format folder.

    Writes ``out_dir/images/<file_name>`` and ``out_dir/captions.json`` (same
    top-level keys, only the chosen images and their annotations). Handy for
    tests, CI and quick local runs. Returns the new captions file.
    """
    wanted = {int(i) for i in image_ids}
    with open(captions_json, encoding="utf-8") as f:
        data = json.load(f)
    _check_captions_format(data, Path(captions_json))
    images = [img for img in data["images"] if int(img["id"]) in wanted]
    absent = wanted - {int(img["id"]) for img in images}
    if absent:
        raise CVAEError(f"image ids {sorted(absent)} not in {captions_json}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for img in images:
        shutil.copyfile(
            Path(images_dir) / img["file_name"], out_dir / "images" / img["file_name"]
        )
    subset = {
        **data,
        "images": images,
        "annotations": [a for a in data["annotations"] if a["image_id"] in wanted],
    }
    write_json(out_dir / "captions.json", subset)
    return out_dir / "captions.json"
