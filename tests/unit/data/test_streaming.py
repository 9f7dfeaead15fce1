"""Bounded memory by design: the held-out split streams from the shards, the
Trainer takes any batch source, and evaluation accumulates scores batch by batch
with the same numbers as the whole-set (in-memory) reference."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from cvae.clip.weights import load_clip
from cvae.core.distributed import DistInfo
from cvae.data.batches import MemoryBatches, MemorySplit
from cvae.data.pairs import load_longtext, shard_split
from cvae.evaluation.coco import HeldOutScores, score_held_out
from cvae.evaluation.fid import FID, RunningStats, frechet_distance
from cvae.evaluation.scores import reconstruction_metrics
from cvae.models.base import to_float_images
from cvae.models.checkpoint import load_model


def _val(coco):
    return shard_split(
        coco.root / "shards64", coco.text, coco.image, condition_on="text", split="val"
    )


def _in_memory(coco, split: str = "val"):
    """The split as ``load_longtext`` holds it: the reference."""
    return load_longtext(
        coco.root / "shards64", coco.text, coco.image, condition_on="text", split=split
    )


@pytest.fixture(scope="module")
def one_fid(fid_weights) -> FID:
    """One FID (Inception batch 1) for the module: building it costs seconds."""
    return FID(fid_weights[0], batch_size=1)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_shard_split_streams_what_load_longtext_holds(coco, batch_size) -> None:
    val, conds = _val(coco)
    ref = _in_memory(coco)
    xs, cs = zip(*val.ordered(batch_size), strict=True)
    assert all(len(x) <= batch_size for x in xs)
    assert len(val) == len(ref.ids) == sum(len(x) for x in xs)
    assert torch.equal(torch.cat(xs), ref.images)
    assert torch.equal(torch.cat(cs), ref.eval_conds)
    assert conds.captions == ref.captions
    assert val.image_shape() == tuple(ref.images.shape[1:])


def test_memory_batches_share_each_epoch_between_ranks() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    conds = torch.arange(10) * 10
    seen = []
    for rank in (0, 1):
        src = MemoryBatches(
            images, conds, batch_size=3, seed=7, info=DistInfo(rank, 2, rank)
        )
        assert (src.steps, src.items) == (2, 10)  # 5 items per rank, batches 3 + 2
        batches = list(src.epoch(4))
        assert [len(x) for x, _ in batches] == [3, 2]
        assert all(torch.equal(x.flatten().long() * 10, c) for x, c in batches)
        again = list(src.epoch(4))
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
        seen += [int(v) for x, _ in batches for v in x.flatten()]
    assert sorted(seen) == list(range(10))  # one epoch = every item once


def test_running_stats_equal_the_whole_set_fid(one_fid, coco) -> None:
    val, _ = _val(coco)
    x = torch.cat([x for x, _ in val.ordered(8)])  # (N, 3, 64, 64) uint8
    y = torch.flip(x, dims=[3])  # another set: the mirror images
    whole = one_fid
    whole.reset()
    whole.update(x, real=True)
    whole.update(y, real=False)
    a, b = RunningStats(), RunningStats()
    for i in range(len(x)):  # one image at a time, as a stream would
        a.add(whole.features(x[i : i + 1]))
        b.add(whole.features(y[i : i + 1]))
    for got, want in zip(a.stats(), whole.stats(real=True)):
        np.testing.assert_array_equal(got, want)
    assert frechet_distance(*a.stats(), *b.stats()) == whole.compute()


def test_streamed_scores_equal_the_in_memory_reference(one_fid, coco) -> None:
    model, meta = load_model(coco.model, torch.device("cpu"), expect_arch="image")
    clip = meta["info"]["clip"]
    enc = load_clip(clip["model"], "none", "cpu", seed=int(clip["seed"] or 0))
    val, conds = _val(coco)
    ref = _in_memory(coco)
    fid = one_fid
    fid.reset()
    scores = HeldOutScores(enc, fid, normalize=False, batch_size=1)
    metrics, originals, recons = score_held_out(
        model, val, scores, n_score=len(val), keep=1, batch_size=1, seed=3
    )
    want, want_recons = reconstruction_metrics(
        model, ref.images, ref.eval_conds, batch_size=1, keep=len(val)
    )
    assert metrics == want
    assert torch.equal(originals, to_float_images(ref.images[:1]))
    assert torch.equal(recons, want_recons[:1])
    # FID of the reconstructions: whole-set reference
    fid.update(ref.images, real=True)
    fid.update(want_recons, real=False)
    assert scores.fids()["fid_recon"] == pytest.approx(fid.compute(), rel=1e-9)
    assert scores.clip_scores(conds.captions)["clip_score_n"] == len(val)


class _Fresh:
    """A held-out source that makes every batch anew and watches them die."""

    def __init__(self, split: MemorySplit) -> None:
        self.split = split
        self.refs: list[weakref.ref] = []
        self.alive_at_yield: list[int] = []

    def __len__(self) -> int:
        return len(self.split)

    def ordered(self, batch_size: int):
        for x, c in self.split.ordered(batch_size):
            gc.collect()
            # batches handed out two or more steps ago must be gone by now
            self.alive_at_yield.append(sum(r() is not None for r in self.refs[:-1]))
            x = x.clone()
            self.refs.append(weakref.ref(x))
            yield x, c


def test_evaluation_holds_no_earlier_batch(coco) -> None:
    model, meta = load_model(coco.model, torch.device("cpu"), expect_arch="image")
    clip = meta["info"]["clip"]
    enc = load_clip(clip["model"], "none", "cpu", seed=int(clip["seed"] or 0))
    ref = _in_memory(coco)
    src = _Fresh(
        MemorySplit(ref.images.repeat(4, 1, 1, 1), ref.eval_conds.repeat(4, 1))
    )
    scores = HeldOutScores(enc, None, normalize=False, batch_size=2)
    score_held_out(model, src, scores, n_score=len(src), keep=1, batch_size=1, seed=0)
    assert len(src.alive_at_yield) == len(src) >= 8
    assert max(src.alive_at_yield) == 0


def test_trainer_val_from_shards_equals_val_in_memory(coco, tmp_path: Path) -> None:
    from conftest import train_config

    from cvae.training.trainer import Trainer

    val, _ = _val(coco)
    ref = _in_memory(coco)
    train = _in_memory(coco, "train")
    losses = []
    for i, held_out in enumerate([val, MemorySplit(ref.images, ref.eval_conds)]):
        model, _ = load_model(coco.model, torch.device("cpu"), expect_arch="image")
        cfg = train_config(epochs=1, batch_size=2, device="cpu")
        data = MemoryBatches(train.images, train.train_conds, batch_size=2, seed=0)
        torch.manual_seed(0)
        t = Trainer(
            model.train(),
            cfg,
            data,
            state_path=tmp_path / f"{i}.pt",
            val=held_out,
            log=lambda s: None,
        )
        losses.append(t.fit()[-1]["val_loss"])
    assert losses[0] == losses[1]


def test_a_split_holds_only_its_own_caption_vectors(coco) -> None:
    from cvae.data.pairs import image_conditions
    from cvae.data.shards import shard_index

    ids, splits = shard_index(coco.root / "shards64")
    full = image_conditions(ids, coco.text, coco.image, condition_on="text")
    val_ids = ids[[s == "val" for s in splits]]
    val = image_conditions(val_ids, coco.text, coco.image, condition_on="text")
    mine, every = val.train_conds, full.train_conds
    assert len(mine.vectors) == int(mine.count.sum()) < len(every.vectors)
    row = {int(i): k for k, i in enumerate(ids)}
    for k, image_id in enumerate(val_ids):
        j = row[int(image_id)]
        a, n = int(mine.first[k]), int(mine.count[k])
        b, m = int(every.first[j]), int(every.count[j])
        assert torch.equal(mine.vectors[a : a + n], every.vectors[b : b + m])


def test_conditions_equal_a_naive_lookup_of_the_caption_table(coco) -> None:
    """image_conditions (rows of the wanted images only, one copy) against a
    row-by-row reading of the whole caption table."""
    import pyarrow.parquet as pq

    from cvae.data.pairs import image_conditions
    from cvae.data.shards import shard_index

    ids, splits = shard_index(coco.root / "shards64")
    val_ids = ids[[s == "val" for s in splits]]
    got = image_conditions(val_ids, coco.text, coco.image, condition_on="text")
    rows = pq.read_table(coco.text).to_pylist()
    for k, image_id in enumerate(val_ids):
        mine = sorted(
            (r for r in rows if r["image_id"] == image_id),
            key=lambda r: r["caption_index"],
        )
        a, n = int(got.train_conds.first[k]), int(got.train_conds.count[k])
        want = torch.tensor([r["embedding"] for r in mine], dtype=torch.float32)
        assert torch.equal(got.train_conds.vectors[a : a + n], want)
        assert torch.equal(got.eval_conds[k], want[0])
        assert got.captions[k] == mine[0]["caption"]


def test_an_interrupted_stream_epoch_stops_its_workers_first(
    coco, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Ctrl-C in an epoch of the streamed loader: its decoding workers are
    stopped before the one line is printed (none is left for the interpreter's
    exit to reap), and a Ctrl-C while an epoch's workers stop ends the run
    rather than being swallowed by their shutdown."""
    import multiprocessing

    from conftest import train_config
    from torch.utils.data import dataloader

    from cvae.data.stream import ShardStream, id_lookup
    from cvae.training.trainer import Trainer

    train = _in_memory(coco, "train")
    earlier = set(multiprocessing.active_children())

    def trainer(name: str) -> Trainer:
        model, _ = load_model(coco.model, torch.device("cpu"), expect_arch="image")
        lookup = id_lookup(train.ids, train.train_conds)
        data = ShardStream(
            coco.root / "shards64", lookup, len(train.ids), 2, num_workers=1
        )
        cfg = train_config(epochs=3, batch_size=2, device="cpu")
        return Trainer(
            model.train(), cfg, data, state_path=tmp_path / name, log=lambda s: None
        )

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    in_a_step = trainer("step.pt")
    monkeypatch.setattr(in_a_step, "_step", ctrl_c)
    with pytest.raises(SystemExit, match="130") as stopped:
        in_a_step.fit()
    # the exception is alive still, as it is while the interpreter exits
    assert stopped.value.__context__ is not None
    assert set(multiprocessing.active_children()) <= earlier
    assert capsys.readouterr().err.startswith("interrupted in epoch 1: ")

    stop = dataloader._MultiProcessingDataLoaderIter._shutdown_workers
    pressed: list[bool] = []

    def stop_then_ctrl_c(self) -> None:
        stop(self)
        if not pressed:
            pressed.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(
        dataloader._MultiProcessingDataLoaderIter, "_shutdown_workers", stop_then_ctrl_c
    )
    with pytest.raises(SystemExit, match="130"):
        trainer("stop.pt").fit()
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("interrupted in epoch 1: ")
    assert set(multiprocessing.active_children()) <= earlier
