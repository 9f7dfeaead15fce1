"""The conditioning-accuracy classifier on tiny real Fashion-MNIST."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import drop_config_keys, make_model, typed_params, write_params

from cvae.core.errors import CVAEError
from cvae.core.progress import number
from cvae.data import fashion
from cvae.evaluation.classifier import (
    ARCH,
    Classifier,
    ClassifierConfig,
    accuracy,
    augment,
    load_classifier,
    per_class_accuracy,
    save_classifier,
    train_classifier,
)
from cvae.evaluation.conditioning import (
    conditioning_accuracy,
    conditioning_metrics,
    to_uint8_images,
)
from cvae.models.checkpoint import OLDER_FILES, save_model
from cvae.params.schema import ClassifierParams, ParamsError
from stages import fashion_classifier


def _split(path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = fashion.load_dataset(path)
    images = torch.from_numpy(d[f"{split}_images"]).unsqueeze(1)  # (N, 1, 28, 28)
    return images, torch.from_numpy(d[f"{split}_labels"])


@pytest.fixture(scope="module")
def trained(tiny_fashion):
    """A classifier after 3 epochs on 512 real images, and the 256 test images."""
    images, labels = _split(tiny_fashion, "train")
    cfg = clf_config(epochs=3, batch_size=32, device="cpu")
    model, history = train_classifier(images, labels, cfg, log=lambda _: None)
    return model, history, _split(tiny_fashion, "test")


def test_learns_above_chance(trained) -> None:
    model, history, (images, labels) = trained
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[2]["loss"] < history[1]["loss"] < history[0]["loss"]
    assert not model.training
    # 10 classes: chance is 0.1; 3 epochs on 512 images reach about 0.73.
    assert accuracy(model, images, labels) > 0.5


def test_accuracy_matches_a_naive_loop(trained) -> None:
    model, _, (images, labels) = trained
    images, labels = images[:50], labels[:50]
    hits = 0
    with torch.no_grad():
        for x, y in zip(images, labels, strict=True):
            logits = model(x.unsqueeze(0).float() / 255.0)  # (1, 10)
            hits += int(logits.argmax(1).item() == y.item())
    assert accuracy(model, images, labels, batch_size=7) == pytest.approx(hits / 50)
    # uint8 and the same images as float in [0, 1] are one and the same input.
    assert accuracy(model, images.float() / 255, labels) == pytest.approx(hits / 50)
    per_class = per_class_accuracy(model, images, labels, batch_size=7)
    assert len(per_class) == 10
    for k, acc in enumerate(per_class):
        n = int((labels == k).sum())
        assert (acc is None) == (n == 0)


def test_training_is_seeded(tiny_fashion) -> None:
    images, labels = _split(tiny_fashion, "train")
    images, labels = images[:128], labels[:128]
    cfg = clf_config(epochs=1, batch_size=32, device="cpu", seed=3)
    a, _ = train_classifier(images, labels, cfg, log=lambda _: None)
    b, _ = train_classifier(images, labels, cfg, log=lambda _: None)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_conditioning_accuracy_shape_and_range(trained) -> None:
    model, _, _ = trained
    torch.manual_seed(0)
    cvae = make_model("conv", channels=[8, 16, 32], latent_dim=8).eval()
    r = conditioning_accuracy(cvae, model, n_per_class=3, seed=5)
    assert set(r) == {"accuracy", "per_class", "n_per_class"}
    assert r["n_per_class"] == 3 and len(r["per_class"]) == 10
    assert all(a in (0, 1 / 3, 2 / 3, 1) for a in r["per_class"])
    assert 0 <= r["accuracy"] <= 1
    assert r["accuracy"] == pytest.approx(sum(r["per_class"]) / 10)
    assert conditioning_accuracy(cvae, model, n_per_class=3, seed=5) == r
    with pytest.raises(CVAEError, match="n_per_class"):
        conditioning_accuracy(cvae, model, n_per_class=0, seed=0)
    wrong = make_model("conv", channels=[8, 16, 32], num_classes=1)
    with pytest.raises(CVAEError, match="1 classes"):
        conditioning_accuracy(wrong, model, n_per_class=1, seed=0)


def test_to_uint8_images() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1])
    assert to_uint8_images(x).tolist() == [0, 128, 255, 255, 0]


def test_save_load_round_trip(tmp_path, trained) -> None:
    model, _, (images, _) = trained
    path = tmp_path / "clf.safetensors"
    save_classifier(path, model, {"epochs": 2})
    loaded, meta = load_classifier(path)
    assert meta["arch"] == "fashion-classifier" and meta["info"] == {"epochs": 2}
    with torch.no_grad():
        x = images[:16].float() / 255
        assert torch.equal(model(x), loaded(x))
    cvae_path = tmp_path / "cvae.safetensors"
    save_model(cvae_path, make_model("conv", channels=[8, 16, 32]), "conv")
    with pytest.raises(CVAEError, match="not a classifier"):
        load_classifier(cvae_path)


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ParamsError, match="unknown key fashion.classifier.lr_decay"):
        typed_params({"fashion": {"classifier": {"epochs": 1, "lr_decay": 0.1}}})
    with pytest.raises(ParamsError, match="classifier.lr = 0: input should be greater"):
        typed_params({"fashion": {"classifier": {"lr": 0}}})


def clf_config(**updates) -> ClassifierParams:
    """``fashion.classifier`` of params.yaml with ``updates``."""
    return typed_params().fashion.classifier.model_copy(update=updates)


def test_stage_end_to_end(tmp_path, tiny_fashion) -> None:
    section = {"epochs": 1, "batch_size": 64, "lr": 0.001, "seed": 0, "device": "cpu"}
    params = write_params(tmp_path / "p.yaml", {"fashion": {"classifier": section}})
    model_out = tmp_path / "data" / "classifier.safetensors"
    metrics = tmp_path / "metrics" / "clf.json"
    fashion_classifier.main(
        data=tiny_fashion, model_out=model_out, metrics=metrics, params=params
    )
    m = json.loads(metrics.read_text())
    assert m["n_train"] == 512 and m["n_test"] == 256 and m["epochs"] == 1
    assert 0 <= m["test_accuracy"] <= 1 and len(m["test_per_class"]) == 10
    model, meta = load_classifier(model_out)
    assert meta["info"]["test_accuracy"] == m["test_accuracy"]
    images, labels = _split(tiny_fashion, "test")
    assert accuracy(model, images, labels) == m["test_accuracy"]

    # What fashion_evaluate calls: flat keys, the CVAE scored by the file.
    torch.manual_seed(0)
    cvae = make_model("conv", channels=[8, 16, 32], latent_dim=8).eval()
    test_images, test_labels = _split(tiny_fashion, "test")
    cm = conditioning_metrics(
        cvae, model_out, test_images, test_labels, n_per_class=2, seed=0
    )
    gen = conditioning_accuracy(cvae, model, n_per_class=2, seed=0)
    real = per_class_accuracy(model, test_images, test_labels)
    assert cm == {
        "cond_accuracy": gen["accuracy"],
        "cond_accuracy_per_class": gen["per_class"],
        "real_accuracy_per_class": real,
        "cond_classes_below_real": sum(
            g < t for g, t in zip(gen["per_class"], real, strict=True)
        ),
        "cond_n_per_class": 2,
        "classifier_test_accuracy": m["test_accuracy"],
    }
    # The metrics file's per-class test accuracies are the same numbers.
    assert list(m["test_per_class"].values()) == real


def test_stage_error_is_one_line(tmp_path, tiny_fashion, capsys) -> None:
    bad = {"fashion": {"classifier": {"epoch": 1}}}
    params = write_params(tmp_path / "params.yaml", bad)
    with pytest.raises(SystemExit) as e:
        fashion_classifier.main(
            data=tiny_fashion,
            model_out=tmp_path / "c.safetensors",
            metrics=tmp_path / "m.json",
            params=params,
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "epoch" in err
    assert not (tmp_path / "c.safetensors").exists()


def test_each_epoch_is_one_line_for_people(tiny_fashion) -> None:
    images, labels = _split(tiny_fashion, "train")
    lines: list[str] = []
    cfg = clf_config(epochs=1, batch_size=64, device="cpu")
    _, history = train_classifier(images[:128], labels[:128], cfg, log=lines.append)
    [row] = history
    [line] = lines
    assert line.startswith(
        f"classifier epoch 1/1  loss {number(row['loss'])}  train accuracy "
    )
    assert re.fullmatch(r".*train accuracy [\d.]+  \| \d+\.\d s", line)


def test_augment_flips_and_shifts_like_a_naive_loop() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 1, 5, 7)
    out = augment(x, True, 2, torch.Generator().manual_seed(4))
    # The same draws, image by image.
    gen = torch.Generator().manual_seed(4)
    mirror = torch.rand(6, generator=gen) < 0.5
    dy, dx = torch.randint(0, 5, (2, 6), generator=gen)
    for i in range(6):
        img = x[i, 0].flip(1) if mirror[i] else x[i, 0]
        want = torch.zeros(5, 7)
        for r in range(5):
            for c in range(7):
                rr, cc = r + int(dy[i]) - 2, c + int(dx[i]) - 2
                if 0 <= rr < 5 and 0 <= cc < 7:
                    want[r, c] = img[rr, cc]
        assert torch.equal(out[i, 0], want), i
    assert torch.equal(augment(x, False, 0, torch.Generator()), x)


def test_network_follows_its_config() -> None:
    for channels, side in (([8], 14), ([8, 16], 7), ([8, 16, 32], 3)):
        for convs, hidden in ((1, 0), (2, 24)):
            cfg = ClassifierConfig(channels, convs, hidden, 0.1, 10)
            net = Classifier(cfg).eval()
            convs_found = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
            assert len(convs_found) == convs * len(channels)
            assert net.features(torch.zeros(2, 1, 28, 28)).shape == (
                2,
                channels[-1] * side * side,
            )
            assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
            linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
            assert len(linears) == (2 if hidden else 1)


def test_a_file_from_before_the_block_and_hidden_keys_still_loads(tmp_path) -> None:
    assert ARCH in OLDER_FILES  # the classifier's file name for the table
    torch.manual_seed(0)
    old = Classifier(ClassifierConfig([8, 16], 1, 0, 0.25, 10)).eval()
    path = tmp_path / "old.safetensors"
    save_classifier(path, old)
    drop_config_keys(path, {"convs_per_block", "hidden"})
    loaded, _ = load_classifier(path)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), old(x))
    drop_config_keys(path, {"channels"})
    with pytest.raises(CVAEError, match="retrain it"):
        load_classifier(path)
