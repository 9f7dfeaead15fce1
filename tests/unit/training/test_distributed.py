"""Data-parallel training: equal rank shares, DDP under torchrun (gloo, CPU).

The 2-process runs start real ``torchrun`` jobs (about 10-20 s each on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SHARED_DATA, write_params

from cvae.core.distributed import DistInfo, info_from_env, rank_share
from cvae.core.errors import CVAEError

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> None:
    """Run ``torchrun --standalone --nproc-per-node nproc args`` from the repo root."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", *args]
    r = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_rank_share_is_equal_disjoint_and_strided() -> None:
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    shares = [rank_share(perm, DistInfo(rank=r, world_size=4)) for r in range(4)]
    assert {len(s) for s in shares} == {25}  # 103 // 4, 3 dropped
    union = torch.cat(shares)
    assert len(set(union.tolist())) == 100 and set(union.tolist()) <= set(perm.tolist())
    assert torch.equal(shares[1], perm[:100][1::4])
    assert torch.equal(rank_share(perm, DistInfo()), perm)
    with pytest.raises(CVAEError, match="fewer processes"):
        rank_share(perm[:3], DistInfo(rank=0, world_size=4))


def test_env_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = info_from_env()
    assert info.enabled and not info.is_main and info.local_rank == 1
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(CVAEError, match="torchrun"):
        info_from_env()


def test_two_ranks_equal_one_process_with_twice_the_batch(
    tiny_fashion: Path, tmp_path: Path
) -> None:
    """DDP averages the ranks' gradients: with z = mu, 2 ranks x batch 32 take the
    steps of 1 process x batch 64 (same items per step), up to float rounding;
    both ranks end with identical weights and rank 0 alone writes the state."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir(), single.mkdir()
    torchrun(str(WORKER), str(tiny_fashion), str(ddp), "32", "mean-z")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, str(WORKER), str(tiny_fashion), str(single), "64", "mean-z"],
        check=True,
        env=env,
        capture_output=True,
        cwd=ROOT,
    )
    r0, r1 = (torch.load(ddp / f"rank{r}.pt") for r in (0, 1))
    one = torch.load(single / "rank0.pt")
    for k, v in r0["model"].items():
        assert torch.equal(v, r1["model"][k]), k  # ranks in sync, bit for bit
        torch.testing.assert_close(v, one["model"][k], atol=2e-5, rtol=1e-4)
    h0, h1 = r0["history"][0], one["history"][0]
    assert h0["world_size"] == 2 and "world_size" not in h1
    assert h0["loss"] == pytest.approx(h1["loss"], rel=1e-4)
    assert (ddp / "state.pt").exists() and not list(ddp.glob(".tmp-*"))


@pytest.fixture(scope="module")
def many_shards(coco_sample: Path, tmp_path_factory: pytest.TempPathFactory):
    """Real COCO sample images in 4-image shards, embedded with random CLIP."""
    from stages import coco_embed as embed
    from stages import coco_filter as filter
    from stages import coco_shard as shard

    tmp = tmp_path_factory.mktemp("ddp-coco")
    stream = {"loader": "stream", "num_workers": 1}
    params = write_params(
        tmp / "params.yaml",
        {
            "filter": {"val_fraction": 0.25},
            "shard": {"shard_size": 4},
            "embed": {"model": "ViT-S-32-alt", "device": "cpu", "batch_size": 32},
            "coco": {
                "model": {"base_channels": 4, "latent_dim": 8, "embed_dim": 16},
                "train": {"epochs": 2, "batch_size": 4, "device": "cpu"} | stream,
            },
        },
    )
    d = tmp / "data"
    images, caps = coco_sample / "images", coco_sample / "captions.json"
    filter.main(
        captions=caps,
        images=images,
        out=d / "manifest.parquet",
        metrics=tmp / "f.json",
        params=params,
    )
    shard.main(
        manifest=d / "manifest.parquet",
        images=images,
        out=d / "shards",
        metrics=tmp / "s.json",
        params=params,
    )
    embed.main(
        manifest=d / "manifest.parquet",
        images=images,
        text_out=d / "text.parquet",
        image_out=d / "image.parquet",
        metrics=tmp / "e.json",
        params=params,
    )
    return tmp, params, d


def test_coco_train_under_torchrun_streams_split_shards(many_shards) -> None:
    """The coco_train stage itself, 2 gloo ranks, shards split by node and worker."""
    from cvae.data.shards import shard_index, shard_paths
    from cvae.models.checkpoint import load_model

    tmp, params, d = many_shards
    assert len(shard_paths(d / "shards")) >= 4  # 2 ranks x 1 worker, and more
    out = tmp / "model.safetensors"
    torchrun(
        "-m",
        "stages.coco_train",
        "--shards",
        str(d / "shards"),
        "--text-emb",
        str(d / "text.parquet"),
        "--image-emb",
        str(d / "image.parquet"),
        "--model-out",
        str(out),
        "--history",
        str(tmp / "h.json"),
        "--state",
        str(tmp / "state.pt"),
        "--params",
        str(params),
    )
    hist = json.loads((tmp / "h.json").read_text())
    ids, splits = shard_index(d / "shards")
    n_train = splits.count("train")
    assert len(hist) == 2 and all(h["world_size"] == 2 for h in hist)
    # equal full batches per rank: steps = n // (ranks * batch), all ranks counted
    per_epoch = (n_train // (2 * 4)) * 2 * 4
    assert all("images_per_s" not in h for h in hist)  # timings go to the log
    assert hist[0]["loss"] > 0 and "val_loss" in hist[0]
    model, meta = load_model(out)
    assert meta["info"]["n_train"] == n_train and per_epoch > 0
    assert not (tmp / "state.pt").exists()  # complete run: nothing to resume


def test_stream_adapts_workers_and_refuses_too_few_shards(many_shards) -> None:
    from cvae.core.distributed import DistInfo
    from cvae.data.shards import shard_paths
    from cvae.data.stream import ShardStream

    _, _, d = many_shards
    n = len(shard_paths(d / "shards"))
    # more workers than shards: fewer workers, never an error (small sets)
    s = ShardStream(d / "shards", lambda ids, g: ids, 40, 4, num_workers=n + 5)
    assert s.num_workers == n
    two = ShardStream(
        d / "shards",
        lambda ids, g: ids,
        40,
        4,
        num_workers=8,
        info=DistInfo(rank=0, world_size=2),
    )
    assert two.num_workers == n // 2
    with pytest.raises(CVAEError, match="lower shard.shard_size"):
        ShardStream(
            d / "shards",
            lambda ids, g: ids,
            40,
            4,
            num_workers=1,
            info=DistInfo(rank=0, world_size=n + 1),
        )
    with pytest.raises(CVAEError, match="lower batch_size"):
        ShardStream(
            d / "shards",
            lambda ids, g: ids,
            7,
            4,
            num_workers=1,
            info=DistInfo(rank=0, world_size=2),
        )


def test_auto_decode_workers_none_on_cpu_cpus_per_rank_on_cuda(monkeypatch) -> None:
    from cvae.data.stream import CUDA_WORKERS, decode_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert decode_workers("auto", cpu) == 0  # the training process decodes
    assert decode_workers(3, cpu) == 3  # a number is taken as it is
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert decode_workers("auto", cuda) == CUDA_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 GPUs share 16 CPUs
    assert decode_workers("auto", cuda) == 2
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert decode_workers("auto", cuda) == 1  # never 0 on CUDA


def test_shard_and_embed_under_torchrun_write_the_bytes_of_one_process(
    many_shards,
) -> None:
    """2 gloo ranks share the shards and the CLIP batches; rank 0 writes the
    same files, byte for byte, as one process (shards, both parquets, counts)."""
    tmp, params, d = many_shards
    images = str(SHARED_DATA / "coco-sample")
    images += "/images"

    def stages(out: Path) -> list[str]:
        out.mkdir()
        shard = ["-m", "stages.coco_shard", "--manifest", str(d / "manifest.parquet")]
        shard += ["--images", images, "--out", str(out / "shards")]
        shard += ["--metrics", str(out / "s.json"), "--params", str(params)]
        embed = ["-m", "stages.coco_embed", "--manifest", str(d / "manifest.parquet")]
        embed += ["--images", images, "--text-out", str(out / "t.parquet")]
        embed += ["--image-out", str(out / "i.parquet")]
        embed += ["--metrics", str(out / "e.json"), "--params", str(params)]
        return [shard, embed]

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for args in stages(tmp / "one"):
        subprocess.run([sys.executable, *args], check=True, env=env, cwd=ROOT)
    for args in stages(tmp / "two"):
        torchrun(*args)
    one = sorted(p.relative_to(tmp / "one") for p in (tmp / "one").rglob("*.*"))
    two = sorted(p.relative_to(tmp / "two") for p in (tmp / "two").rglob("*.*"))
    assert one == two and len([p for p in one if p.suffix == ".tar"]) >= 4
    for rel in one:
        assert (tmp / "one" / rel).read_bytes() == (tmp / "two" / rel).read_bytes(), rel
