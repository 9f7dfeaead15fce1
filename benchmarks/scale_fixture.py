"""A COCO-format set of N images at real scale, built from real data, offline.

    python -m benchmarks.scale_fixture --n 1000 5000 25600   # data/scale/n<N>/
    python -m benchmarks.scale_fixture --captions-only 118287  # filter: train2017 size

Captions: the real ``captions_val2017.json`` (5,000 images, 25,014 captions).
Only images whose captions the default keyword filter keeps are used (about
22%), cycled with new ids, so every fixture image passes ``coco_filter`` and the
later stages see all N. Images: the 249 real sample photos, cycled, each made
distinct (a random crop of 85-100% of each side, a horizontal flip half the
time, JPEG quality 88-95), so no two files are byte-identical and every one is
decoded and resized as a real COCO photo would be. Deterministic (seeded).

``--captions-only K`` writes a captions file of K images with ~5 captions each
(ids remapped, val2017 cycled, no images): the filter stage at the size of
train2017 (118,287 images, 591,753 captions).

Built on demand into ``data/scale/`` (git-ignored), never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VAL2017 = SHARED / "captions_val2017.json"
SAMPLE = SHARED / "coco-sample"
OUT = ROOT / "data" / "scale"


def check_data() -> None:
    if not VAL2017.is_file() or not (SAMPLE / "images").is_dir():
        raise SystemExit(f"error: {SHARED} lacks the COCO data: see its README.md")


def _captions_by_image(path: Path) -> tuple[list[dict], dict[int, list[str]]]:
    data = json.loads(path.read_text())
    caps: dict[int, list[str]] = {}
    for a in data["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"])
    images = sorted(data["images"], key=lambda im: im["id"])
    return images, caps


def kept_caption_sets() -> list[list[str]]:
    """Caption sets of the val2017 images the default filter keeps."""
    from cvae.data.coco import filter_coco
    from cvae.params.loading import load_params

    p = load_params(ROOT / "params.yaml").filter
    keep = {k: p.keywords[k] for k in p.subsets}
    manifest, _ = filter_coco(VAL2017, None, keep, val_fraction=0.0, seed=0)
    return [list(c) for c in manifest.column("captions").to_pylist()]


def _variant(job: tuple[str, str, int]) -> None:
    """Write a distinct JPEG of ``src``: crop, maybe flip, re-encode (seeded)."""
    src, dst, seed = job
    rng = random.Random(seed)
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.85, 1.0)), int(h * rng.uniform(0.85, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(dst, "JPEG", quality=rng.randint(88, 95))


def build(n: int, out: Path, workers: int) -> Path:
    """``out/n<N>/{images/, captions.json}``; returns that folder."""
    check_data()
    folder = out / f"n{n}"
    done = folder / "captions.json"
    if done.is_file():
        return folder  # built before (the captions file is written last)
    sets = kept_caption_sets()
    sources = sorted((SAMPLE / "images").iterdir())
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, jobs = [], [], []
    for i in range(n):
        image_id = i + 1
        name = f"{image_id:012d}.jpg"
        src = sources[i % len(sources)]
        with Image.open(src) as im:
            w, h = im.size  # header only; the crop changes it, recorded below
        jobs.append((str(src), str(images_dir / name), image_id))
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for caption in sets[i % len(sets)]:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "caption": caption}
            )
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_variant, jobs, chunksize=64))
    for im in images:  # the real sizes after cropping
        with Image.open(images_dir / im["file_name"]) as f:
            im["width"], im["height"] = f.size
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations}))
    os.replace(tmp, done)
    return folder


def captions_only(k: int, out: Path) -> Path:
    """A captions file of ``k`` images (val2017 cycled, ids remapped), no images."""
    check_data()
    path = out / f"captions_{k}.json"
    if path.is_file():
        return path
    source, caps = _captions_by_image(VAL2017)
    images, annotations = [], []
    for i in range(k):
        src = source[i % len(source)]
        image_id = i + 1
        images.append(
            {
                "id": image_id,
                "file_name": f"{image_id:012d}.jpg",
                "width": src["width"],
                "height": src["height"],
            }
        )
        for caption in caps.get(src["id"], []):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "caption": caption}
            )
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations}))
    os.replace(tmp, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.scale_fixture",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--n", type=int, nargs="*", default=[], help="image counts")
    ap.add_argument("--captions-only", type=int, nargs="*", default=[])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    for n in args.n:
        print(build(n, args.out, args.workers))
    for k in args.captions_only:
        print(captions_only(k, args.out))


if __name__ == "__main__":
    main()
