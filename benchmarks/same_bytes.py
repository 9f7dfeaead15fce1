"""Does this CPU give the reference CPU's bytes? A short run of every kind of
float work the pipeline does, compared with the values committed for the
reference CPU.

    python -m benchmarks.same_bytes                  # compare, exit 1 on a difference
    python -m benchmarks.same_bytes --json run.json  # also keep this run's record
    python -m benchmarks.same_bytes --record         # make this CPU the reference
    python -m benchmarks.same_bytes --small --against other.json  # two machines

What runs, with the pipeline's code, its pinned numerics and ``params.yaml``
(``cpu_threads`` included): the Fashion-MNIST data step on a fixed subset
(2,048 training and 512 test images); one epoch of each Fashion-MNIST
architecture (``fc``, ``conv``, ``gmm`` with its fitted mixture prior: MKL's
LAPACK, and ``vaegan`` against its critic from the first step, ending with
its weight average) and of the classifier; the pipeline's randomly initialised CLIP
(``embed.model``, ``embed.seed``) on 16 captions and 8 images of the COCO sample;
FID's algebra (covariances, eigenvalues) and t-SNE on the models' test latents.
Each output is compared by the md5 of its bytes and by its headline number
(validation loss, test accuracy, embedding norm), so a difference shows how far
it moved. About a minute on 2 cores.

The params must be the reference's (the committed ``params.yaml``): the check
fingerprints the settings it uses and says so when they differ.

``--small`` (256 training and 128 test images, 2 captions, 1 image) is for slow
machines and CPU emulators (QEMU's ``-cpu EPYC-Milan-v1`` answers CPUID as that
CPU, which is what MKL, oneDNN and OpenBLAS dispatch on, about 300 times slower):
run it on two machines and compare the records with ``--against``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from cvae.core import numerics

numerics.pin()  # as the stages do, before torch or NumPy is imported

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).with_name("same_bytes.json")
SIZES = {  # (training images, test images, captions, images)
    "default": (2048, 512, 16, 8),
    "small": (256, 128, 2, 1),
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _file_md5(path: Path) -> str:
    return _md5(path.read_bytes())


def _settings(p: Any, train: int, test: int) -> dict[str, Any]:
    """The params the check runs with: ``params.yaml`` with one epoch everywhere."""
    f = p.fashion
    one = {"epochs": 1}
    fashion = f.model_copy(
        update={
            "data": f.data.model_copy(
                update={"train_limit": train, "test_limit": test}
            ),
            "train": f.train.model_copy(update=one | {"device": "cpu"}),
            "classifier": f.classifier.model_copy(update=one | {"device": "cpu"}),
            "model": f.model.model_copy(
                update={
                    "gmm": f.model.gmm.model_copy(update=one),
                    # the critic from step 1, and the weight average
                    "vaegan": f.model.vaegan.model_copy(
                        update=one
                        | {
                            "adversarial": f.model.vaegan.adversarial.model_copy(
                                update={"start_epoch": 0}
                            ),
                            "ema": 0.7,
                        }
                    ),
                }
            ),
        }
    )
    return {"fashion": fashion, "embed": p.embed, "coco_data": p.coco_data}


def fingerprint(settings: dict[str, Any], threads: int, sizes: tuple) -> str:
    """sha256 (12 hex) of the settings, so a run on other params is named as such."""
    blob = json.dumps(
        {k: v.model_dump(mode="json") for k, v in settings.items()}
        | {"t": threads, "sizes": list(sizes)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _latent_algebra(d: Path, data: Path, tsne: Any) -> dict[str, dict[str, Any]]:
    """NumPy/SciPy/scikit-learn on the test latents of the conv and gmm models:
    the Frechet distance of their Gaussians (FID's algebra: covariances and
    eigenvalues, OpenBLAS) and the conv latents' t-SNE (the pipeline's
    settings)."""
    import numpy as np
    import torch

    from cvae.data.fashion import load_dataset
    from cvae.evaluation.fid import frechet_distance
    from cvae.evaluation.tsne import latent_means, tsne_2d
    from cvae.models.checkpoint import load_model

    test = load_dataset(data)
    images = torch.from_numpy(test["test_images"]).unsqueeze(1)
    labels = torch.from_numpy(test["test_labels"])
    z = {}
    for arch in ("conv", "gmm"):
        model, _ = load_model(d / f"{arch}.safetensors")
        z[arch] = latent_means(model, images, labels).astype(np.float64)
    stats = [(v.mean(axis=0), np.cov(v, rowvar=False)) for v in z.values()]
    fd = frechet_distance(*stats[0], *stats[1])
    points = tsne_2d(z["conv"], tsne.seed, perplexity=tsne.perplexity)
    return {
        "Frechet distance": {"md5": _md5(np.float64(fd).tobytes()), "value": fd},
        "t-SNE": {
            "md5": _md5(np.ascontiguousarray(points).tobytes()),
            "spread": float(points.std()),
        },
    }


def run(params_path: Path, size: str = "default") -> dict[str, Any]:
    """Run every step at ``size`` (a key of SIZES); returns the record
    (machine, settings, outputs)."""
    import numpy as np
    import torch
    from PIL import Image

    from cvae.clip.weights import load_clip
    from cvae.data.fashion import build_dataset
    from cvae.evaluation.classifier import train_fashion_classifier
    from cvae.models import FASHION_ARCHS
    from cvae.params.loading import load_params
    from cvae.training.fashion import train_fashion

    p = load_params(params_path)
    torch.set_flush_denormal(True)  # as the stages load their params
    numerics.set_threads(p.cpu_threads)
    n_train, n_test, n_captions, n_images = SIZES[size]
    s = _settings(p, n_train, n_test)
    f, embed = s["fashion"], s["embed"]
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="same-bytes-") as tmp:
        d = Path(tmp)
        data = d / "dataset.npz"
        build_dataset(
            f.data.root,
            data,
            train_limit=f.data.train_limit,
            test_limit=f.data.test_limit,
            seed=f.data.seed,
        )
        out["fashion data"] = {"md5": _file_md5(data)}
        for arch in FASHION_ARCHS:
            model = d / f"{arch}.safetensors"
            hist = train_fashion(
                arch, f, data, model, d / f"{arch}.json", d / f"{arch}.pt"
            )
            out[f"{arch} 1 epoch"] = {
                "md5": _file_md5(model),
                "val_loss": hist[-1]["val_loss"],
            }
        out |= _latent_algebra(d, data, f.tsne)
        clf = d / "classifier.safetensors"
        m = train_fashion_classifier(f.classifier, data, clf)
        out["classifier 1 epoch"] = {
            "md5": _file_md5(clf),
            "test_accuracy": m["test_accuracy"],
        }
    enc = load_clip(embed.model, embed.pretrained, "cpu", seed=embed.seed)
    coco = s["coco_data"]
    captions_path = (ROOT / coco.captions).resolve()
    annotations = json.loads(captions_path.read_text())["annotations"]
    annotations = sorted(annotations, key=lambda a: a["id"])[:n_captions]
    texts = enc.embed_texts([a["caption"] for a in annotations], batch_size=8)
    files = sorted((ROOT / coco.images).resolve().glob("*.jpg"))[:n_images]
    images = enc.embed_images(
        [Image.open(x).convert("RGB") for x in files], batch_size=8
    )
    for name, arr in (("CLIP captions", texts), ("CLIP images", images)):
        arr = np.ascontiguousarray(arr, dtype="<f4")
        out[name] = {
            "md5": _md5(arr.tobytes()),
            "mean_norm": float(np.linalg.norm(arr, axis=1).mean()),
        }
    return {
        "date": datetime.date.today().isoformat(),
        "machine": numerics.machine_record(),
        "size": size,
        "settings": fingerprint(s, p.cpu_threads, SIZES[size]),
        "random_clip": enc.random_init,
        "outputs": out,
    }


def compare(ref: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines of the comparison; the last says how many outputs match."""
    lines = [
        f"this CPU:      {new['machine']['cpu']} ({new['machine']['cpu_vendor']}), "
        f"{new['machine']['threads']} threads, torch {new['machine']['torch']}",
        f"reference CPU: {ref['machine']['cpu']} ({ref['machine']['cpu_vendor']}), "
        f"{ref['machine']['threads']} threads, torch {ref['machine']['torch']}, "
        f"recorded {ref['date']}",
        "numerics: "
        + ", ".join(f"{k}={v}" for k, v in new["machine"]["numerics"].items()),
    ]
    if new.get("size") != ref.get("size"):
        lines.append(
            f"! this run is of the {new.get('size')} sizes, the record of the "
            f"{ref.get('size')} ones: compare runs of one size (--against)"
        )
    elif new["settings"] != ref["settings"]:
        lines.append(
            f"! the settings differ from the reference's ({new['settings']} vs "
            f"{ref['settings']}): run with the committed params.yaml"
        )
    if new["machine"]["torch"] != ref["machine"]["torch"]:
        lines.append("! another torch version: bytes are not promised across versions")
    same = 0
    width = max(map(len, new["outputs"]))
    for name, o in new["outputs"].items():
        r = ref["outputs"].get(name, {})
        number = next((k for k in o if k != "md5"), None)
        if o["md5"] == r.get("md5"):
            same += 1
            verdict = "same bytes"
        else:
            verdict = "DIFFERENT BYTES"
        detail = ""
        if number is not None:
            detail = f"  {number} {o[number]:.6f}"
            if verdict != "same bytes" and number in r:
                detail += f" (reference {r[number]:.6f})"
        lines.append(f"  {name:<{width}}  {verdict}{detail}")
    lines.append(f"{same} of {len(new['outputs'])} outputs are the reference's bytes")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--json", type=Path, help="also write this run's record here")
    ap.add_argument(
        "--label",
        help="name this CPU in the output (default: the OS's model name; under "
        "an emulator, which reports the host's, name the emulated CPU)",
    )
    ap.add_argument(
        "--record", action="store_true", help=f"write the reference ({REFERENCE.name})"
    )
    ap.add_argument("--small", action="store_true", help="the small sizes (emulators)")
    ap.add_argument(
        "--against",
        type=Path,
        help="compare with this record (another machine's --json) instead of the "
        "committed reference",
    )
    args = ap.parse_args(argv)
    if args.record and args.small:
        print("error: the reference is of the default sizes: drop --small")
        return 2
    ref_path = args.against or REFERENCE
    if not args.record and not ref_path.is_file():
        print(f"error: no record {ref_path}: make one with --json (or --record)")
        return 2
    new = run(args.params, "small" if args.small else "default")
    if args.label:
        new["machine"]["cpu"] = args.label
    text = json.dumps(new, indent=2) + "\n"
    if args.json:
        args.json.write_text(text)
    if args.record:
        REFERENCE.write_text(text)
        print(f"reference recorded for {new['machine']['cpu']} -> {REFERENCE}")
        return 0
    lines = compare(json.loads(ref_path.read_text()), new)
    print("\n".join(lines))
    outputs = new["outputs"]
    return 0 if lines[-1].startswith(f"{len(outputs)} of {len(outputs)}") else 1


if __name__ == "__main__":
    sys.exit(main())
