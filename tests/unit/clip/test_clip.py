"""CLIP wrapper: sentences, sentence-mean embeddings, weights, parquet, stage."""

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import SHARED_DATA, write_params
from PIL import Image

import cvae.clip.encoder as clip
import cvae.clip.weights as clip_weights
from cvae.clip.encoder import ClipEncoder, split_sentences
from cvae.clip.weights import load_clip
from cvae.core.errors import CVAEError
from cvae.data.coco import DEFAULT_KEYWORDS, filter_coco, subset_coco
from cvae.data.embeddings import read_embeddings, write_embeddings

DATA = SHARED_DATA
SAMPLE = DATA / "coco-sample"
SMALL = "ViT-S-32-alt"  # smallest built-in open_clip config, D = 256
TEXTS = [
    "A cow stands in a green pasture. Two sheep graze nearby!",
    "Hills under a grey sky",
    "A red barn. A tractor. Is that a farmer?",
]


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    """A small config, randomly initialised (no weights exist offline)."""
    return load_clip(SMALL, "none", "cpu", seed=0)


def test_default_config_builds() -> None:
    enc = load_clip("ViT-B-32", "none", "cpu", seed=0)
    assert enc.dim == 512 and enc.device == torch.device("cpu")
    assert not enc.model.training
    assert enc.embed_texts(["A cow."], batch_size=1).shape == (1, 512)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A cow. Two sheep!  Hills?", ["A cow.", "Two sheep!", "Hills?"]),
        ("no terminator at all", ["no terminator at all"]),
        ("  Trailing space.  ", ["Trailing space."]),
        ("A 3.5 m wall. Then grass", ["A 3.5 m wall.", "Then grass"]),
        ("Wait... what?", ["Wait...", "what?"]),
        ("A cow. . ! Sheep.", ["A cow.", "Sheep."]),
        ("...", ["..."]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_split_sentences_empty(text: str) -> None:
    with pytest.raises(CVAEError, match="empty caption"):
        split_sentences(text)


def test_sentence_mean_matches_per_sentence_calls(encoder: ClipEncoder) -> None:
    got = encoder.embed_texts(TEXTS, batch_size=3)  # 7 sentences, 3 batches
    assert got.shape == (3, 256) and got.dtype == np.float32
    ref = []
    with torch.no_grad():
        for text in TEXTS:
            per_sentence = [
                encoder.model.encode_text(encoder.tokenizer([s]))[0]
                for s in split_sentences(text)
            ]  # one model call per sentence
            ref.append(torch.stack(per_sentence).mean(0).numpy())
    np.testing.assert_allclose(got, np.stack(ref), atol=1e-5, rtol=0)
    normed = encoder.embed_texts(TEXTS, batch_size=64, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        normed, got / np.linalg.norm(got, axis=1, keepdims=True), atol=1e-5
    )
    assert encoder.embed_texts([], batch_size=4).shape == (0, 256)


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_sentence_means_equal_the_naive_mean(monkeypatch, chunk: int) -> None:
    """Chunked float64 sums give the bytes of one whole-set np.add.at, texts
    without sentences get zeros."""
    import cvae.clip.encoder as clip_mod

    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=11)  # sentences per text, some texts none
    owner = np.repeat(np.arange(11), counts)
    feats = rng.standard_normal((len(owner), 5)).astype(np.float32)
    sums = np.zeros((11, 5), np.float64)
    np.add.at(sums, owner, feats)
    naive = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    monkeypatch.setattr(clip_mod, "MEAN_CHUNK", chunk)
    got = clip_mod.sentence_means(feats, owner, 11)
    assert got.dtype == np.float32 and got.tobytes() == naive.tobytes()
    assert not got[counts == 0].any()


def test_embed_images_batch_invariant(encoder: ClipEncoder) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for h, w in [(50, 80), (64, 64), (90, 40)]
    ]
    one = encoder.embed_images(images, batch_size=1)
    three = encoder.embed_images(iter(images), batch_size=3)  # lazy iterable
    assert one.shape == (3, 256) and one.dtype == np.float32
    np.testing.assert_allclose(one, three, atol=1e-5, rtol=0)


def test_random_init_is_seeded(
    encoder: ClipEncoder, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    same = load_clip(SMALL, "none", seed=0)
    after = torch.rand(1)
    assert torch.equal(before, after)  # the caller's RNG stream is untouched
    assert "WARNING: CLIP has RANDOM weights" in capsys.readouterr().err
    other = load_clip(SMALL, "none", seed=1)
    assert same.random_init and same.metadata()["random_init"] is True
    assert same.dim == 256
    ea, eb, ec = (
        e.embed_texts(TEXTS[:1], batch_size=2) for e in (encoder, same, other)
    )
    assert np.array_equal(ea, eb) and not np.allclose(ea, ec)


def test_local_checkpoint_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = load_clip(SMALL, "none", seed=7)
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, path)
    loaded = load_clip(SMALL, str(path), seed=0)  # seed ignored: weights loaded
    assert not loaded.random_init and loaded.pretrained == str(path)
    np.testing.assert_array_equal(
        loaded.embed_texts(TEXTS, batch_size=8), src.embed_texts(TEXTS, batch_size=8)
    )
    with pytest.raises(CVAEError, match="check that embed.model matches"):
        load_clip("ViT-S-32", str(path))  # wrong architecture for these weights


def test_pretrained_errors_are_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clip_weights, "cached_checkpoint", lambda cfg: None)
    monkeypatch.setattr(clip_weights, "network_available", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(CVAEError, match=r"set embed.pretrained to /path/to/file"):
        load_clip("ViT-B-32", "openai")
    assert time.monotonic() - start < 5
    with pytest.raises(CVAEError, match="not found"):
        load_clip("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(CVAEError, match="neither a file nor a pretrained tag"):
        load_clip("ViT-B-32", "no_such_tag")
    with pytest.raises(CVAEError, match="unknown CLIP model"):
        load_clip("ViT-Q-99", "none")
    fake_jit = tmp_path / "ViT-B-32.pt"  # looks like OpenAI's TorchScript archive
    with zipfile.ZipFile(fake_jit, "w") as z:
        z.writestr("ViT-B-32/code/__torch__/model.py", "")
        z.writestr("ViT-B-32/constants.pkl", b"")
    with pytest.raises(CVAEError, match="ViT-B-32-quickgelu"):
        load_clip("ViT-B-32", str(fake_jit))


def test_network_probe_honours_offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert clip_weights.network_available() is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    start = time.monotonic()
    assert clip_weights.network_available(("127.0.0.1", 9), timeout=0.5) is False
    assert time.monotonic() - start < 2


def test_embeddings_parquet_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 7)).astype(np.float32)
    ids = np.array([3, 3, 9, 12, 12])
    path = tmp_path / "emb.parquet"
    meta = {"model": "ViT-B-32", "pretrained": "none", "random_init": True}
    write_embeddings(
        path,
        ids,
        vectors,
        extra_columns={"caption_index": [0, 1, 0, 0, 1], "caption": list("abcde")},
        metadata=meta,
    )
    got_ids, got, got_meta = read_embeddings(path)
    assert got_ids.dtype == np.int64 and got_ids.tolist() == ids.tolist()
    assert got.dtype == np.float32 and np.array_equal(got, vectors)
    assert got_meta == {**meta, "dim": 7}
    schema = pq.read_schema(path)
    assert schema.names == ["image_id", "caption_index", "caption", "embedding"]
    emb_type = schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == 7
    assert emb_type.value_type == pa.float32()
    assert [p.name for p in tmp_path.iterdir()] == ["emb.parquet"]  # no temp left
    with pytest.raises(ValueError):
        write_embeddings(path, ids[:4], vectors)
    with pytest.raises(CVAEError, match="run the coco_embed stage"):
        read_embeddings(tmp_path / "absent.parquet")
    write_embeddings(tmp_path / "empty.parquet", [], np.zeros((0, 7), np.float32))
    assert read_embeddings(tmp_path / "empty.parquet")[1].shape == (0, 7)


@pytest.mark.skipif(
    not (SAMPLE / "captions.json").is_file(),
    reason=f"real COCO sample absent at {SAMPLE} (see shared/data/README.md)",
)
def test_embed_stage_main(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stages.coco_embed import main
    from stages.coco_filter import main as filter_main

    full, _ = filter_coco(
        SAMPLE / "captions.json", None, DEFAULT_KEYWORDS, val_fraction=0.1, seed=0
    )
    ids = full.column("image_id").to_pylist()[:4]
    captions = subset_coco(SAMPLE / "captions.json", SAMPLE / "images", tmp_path, ids)
    embed = {
        "model": SMALL,
        "pretrained": "none",
        "batch_size": 8,
        "device": "auto",
        "seed": 0,
        "normalize": False,
        "num_workers": 0,
    }
    params = write_params(
        tmp_path / "params.yaml",
        {
            "filter": {
                "keywords": DEFAULT_KEYWORDS,
                "subsets": ["bucolic", "nature"],
                "val_fraction": 0.1,
                "seed": 0,
            },
            "embed": embed,
        },
    )
    manifest = tmp_path / "manifest.parquet"
    filter_main(
        captions=captions,
        images=tmp_path / "images",
        out=manifest,
        metrics=tmp_path / "filter.json",
        params=params,
    )
    text_out, image_out = tmp_path / "text.parquet", tmp_path / "image.parquet"
    metrics = tmp_path / "embed.json"
    main(
        manifest=manifest,
        images=tmp_path / "images",
        text_out=text_out,
        image_out=image_out,
        metrics=metrics,
        info=tmp_path / "embed_info.json",
        params=params,
    )
    assert "embed: 20 captions" in capsys.readouterr().out
    m = json.loads(metrics.read_text())
    assert m["n_captions"] == 20 and m["n_images"] == 4 and m["dim"] == 256
    info = json.loads((tmp_path / "embed_info.json").read_text())
    assert m["n_sentences"] >= 20 and info["random_init"] is True and "WARNING" in info

    text = pq.read_table(text_out).to_pylist()
    assert [(r["image_id"], r["caption_index"]) for r in text] == [
        (i, k) for i in sorted(ids) for k in range(5)
    ]
    t_ids, t_vecs, t_meta = read_embeddings(text_out)
    assert t_vecs.shape == (20, 256) and t_meta["random_init"] is True
    assert t_meta["kind"] == "text" and t_meta["model"] == SMALL
    i_ids, i_vecs, i_meta = read_embeddings(image_out)
    assert i_ids.tolist() == sorted(ids) and i_vecs.shape == (4, 256)
    # The stored vectors are what the library gives for the same captions.
    same = load_clip(SMALL, "none", seed=0)
    np.testing.assert_allclose(
        t_vecs[:5],
        same.embed_texts([r["caption"] for r in text[:5]], batch_size=8),
        atol=1e-5,
    )
    # Images decoded in 2 worker processes: the same bytes as in-process.
    two = write_params(
        tmp_path / "two.yaml",
        {
            "filter": yaml.safe_load(params.read_text())["filter"],
            "embed": embed | {"num_workers": 2},
        },
    )
    main(
        manifest=manifest,
        images=tmp_path / "images",
        text_out=tmp_path / "t2.parquet",
        image_out=tmp_path / "i2.parquet",
        metrics=tmp_path / "e2.json",
        params=two,
    )
    assert (tmp_path / "i2.parquet").read_bytes() == image_out.read_bytes()
    assert (tmp_path / "t2.parquet").read_bytes() == text_out.read_bytes()


def test_text_features_ignore_everything_after_the_end_token(encoder) -> None:
    """CLIP's text transformer is causal and pooled at the end-of-text token, so
    tokens after it (padding) cannot change the feature: why trimming is exact."""
    tokens = encoder.tokenizer(["A cow stands in a green pasture.", "Two sheep."])
    noisy = tokens.clone()
    gen = torch.Generator().manual_seed(0)
    for row in noisy:
        end = int(row.argmax())  # the end-of-text token has the highest id
        row[end + 1 :] = torch.randint(
            1, int(row[end]), (len(row) - end - 1,), generator=gen
        )
    with torch.inference_mode():
        clean = encoder.model.encode_text(tokens)
        other = encoder.model.encode_text(noisy)
    torch.testing.assert_close(other, clean, atol=1e-6, rtol=0)


def test_trimmed_batches_give_the_full_length_vectors(coco_sample: Path) -> None:
    """The trimmed, length-sorted text path against open_clip's own 77-token
    encode_text, on the real sample captions (ViT-B-32, random weights)."""
    from cvae.clip.text import encode_text_trimmed, trimmable, used_length

    enc = load_clip("ViT-B-32", "none", "cpu", seed=0)
    assert trimmable(enc.model)
    data = json.loads((coco_sample / "captions.json").read_text())
    sentences = [
        s for a in data["annotations"][:120] for s in split_sentences(a["caption"])
    ]
    got = enc._encode_sentences(sentences, batch_size=32)  # sorted, trimmed
    with torch.inference_mode():
        tokens = enc.tokenizer(sentences)
        assert used_length(tokens) < 40  # COCO sentences use a fraction of 77
        want = torch.cat(
            [
                enc.model.encode_text(tokens[i : i + 32])
                for i in range(0, len(tokens), 32)
            ]
        ).numpy()
        one = encode_text_trimmed(enc.model, tokens[:1]).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max(), rtol=0)
    np.testing.assert_allclose(one, want[:1], atol=2e-5 * np.abs(want).max(), rtol=0)


@pytest.mark.parametrize("layer_scale", [None, 0.5])
def test_last_block_at_one_position_is_that_row_of_the_full_block(
    layer_scale,
) -> None:
    """``block_at`` against the naive reference: the whole block under the causal
    mask, then the row read at each sequence's own position (with and without
    LayerScale, which some open_clip towers use)."""
    from open_clip.transformer import ResidualAttentionBlock

    from cvae.clip.last_block import block_at, block_ok

    torch.manual_seed(0)
    block = ResidualAttentionBlock(32, 4, ls_init_value=layer_scale).eval()
    assert block_ok(block)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 11, 32, generator=gen)
    index = torch.tensor([0, 3, 10, 5, 7, 1])
    causal = torch.full((11, 11), float("-inf")).triu(1)
    hidden = torch.arange(11)[None, :] > index[:, None]
    with torch.inference_mode():
        want = block(x, attn_mask=causal)[torch.arange(6), index]
        got = block_at(block, x, index, hidden)
        unmasked = block_at(block, x, index)
        want_unmasked = block(x)[torch.arange(6), index]
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    torch.testing.assert_close(unmasked, want_unmasked, atol=2e-6, rtol=0)


@pytest.mark.parametrize("pool", ["argmax", "eos"])
def test_end_positions_are_where_open_clip_pools(pool: str) -> None:
    from open_clip.transformer import text_global_pool

    from cvae.clip.text import end_positions

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 900, (8, 20), generator=gen)
    for row, end in zip(tokens, [3, 7, 19, 0, 12, 5, 5, 9], strict=True):
        row[end] = 1000  # the end token: the highest id, and the eos id
        row[end + 1 :] = 0
    x = torch.arange(8 * 20, dtype=torch.float32).reshape(8, 20, 1)
    want = text_global_pool(x, tokens, pool, eos_token_id=1000)[:, 0].long() % 20
    assert torch.equal(end_positions(tokens, pool, 1000), want)


@pytest.mark.parametrize(
    "change", [{"pool_type": "avg"}, {"output_tokens": True}, {"attn_pool": "x"}]
)
def test_pooled_image_path_refuses_other_towers(encoder, change) -> None:
    """Towers the class-token shortcut would get wrong keep open_clip's path."""
    import copy

    from cvae.clip.last_block import image_ok

    model = copy.deepcopy(encoder.model)
    for name, value in change.items():
        setattr(model.visual, name, value)
    assert not image_ok(model)


def test_pooled_image_path_gives_open_clips_vectors(encoder, coco_sample) -> None:
    """The image path (last block at the class token only) against open_clip's
    own encode_image, on real sample photos."""
    from cvae.clip.last_block import image_ok

    assert image_ok(encoder.model)
    files = sorted((coco_sample / "images").glob("*.jpg"))[:6]
    pixels = torch.stack(
        [encoder.preprocess(Image.open(f).convert("RGB")) for f in files]
    )
    got = encoder.embed_pixels([pixels[:4], pixels[4:]])
    with torch.inference_mode():
        want = encoder.model.encode_image(pixels).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max(), rtol=0)
    assert not image_ok(torch.nn.Linear(2, 2))  # no ViT: open_clip's own path


def test_clip_score_matches_naive_definition() -> None:
    """100 * max(cos, 0) per pair, checked against a per-row loop in torch."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=(20, 16)).astype(np.float32)
    v = rng.normal(size=(20, 16)).astype(np.float32)
    v[:5] = 3.0 * t[:5]  # same direction: score 100
    v[5:8] = -t[5:8]  # opposite: clipped to 0
    naive = [
        100
        * max(
            float(
                torch.nn.functional.cosine_similarity(
                    torch.from_numpy(a), torch.from_numpy(b), dim=0
                )
            ),
            0.0,
        )
        for a, b in zip(t, v, strict=True)
    ]
    got = clip.clip_score(t, v)
    np.testing.assert_allclose(got, naive, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[:5], 100.0, atol=1e-4)
    assert (got[5:8] == 0).all()
    with pytest.raises(CVAEError, match="one shape"):
        clip.clip_score(t, v[:3])


def test_tensor_to_pil_round_trips_uint8() -> None:
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    ims = clip.tensor_to_pil(x)
    assert [im.size for im in ims] == [(8, 8)] * 3
    back = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in ims])
    assert torch.equal(back, x)
    assert torch.equal(
        torch.from_numpy(np.array(clip.tensor_to_pil(x.float() / 255)[0])).permute(
            2, 0, 1
        ),
        x[0],
    )


def test_one_ahead_keeps_order_runs_in_a_thread_and_raises() -> None:
    import threading

    from cvae.data.image_files import one_ahead

    seen: list[str] = []
    ahead = threading.Event()

    def produce():
        for i in range(5):
            seen.append(threading.current_thread().name)
            if i == 1:
                ahead.set()  # item 1 is made while the caller holds item 0
            yield i

    items = one_ahead(produce())
    assert next(items) == 0
    assert ahead.wait(timeout=10)
    assert list(items) == [1, 2, 3, 4]
    assert threading.main_thread().name not in seen

    def broken():
        yield 1
        raise ValueError("unreadable")

    got = one_ahead(broken())
    assert next(got) == 1
    with pytest.raises(ValueError, match="unreadable"):
        next(got)

    def slow():
        yield 0
        time.sleep(5)
        yield 1

    early = one_ahead(slow())
    assert next(early) == 0
    t0 = time.perf_counter()
    early.close()  # does not wait for the item being made
    assert time.perf_counter() - t0 < 2


def test_trimmed_text_without_the_last_block_shortcut(encoder, monkeypatch) -> None:
    """Blocks the shortcut cannot run still get trimmed batches: the whole last
    block, then the end-of-text row (open_clip's vectors to float rounding)."""
    import cvae.clip.text as clip_text

    monkeypatch.setattr(clip_text, "blocks_ok", lambda transformer: False)
    tokens = encoder.tokenizer(["A cow stands in a green pasture.", "Two sheep."])
    with torch.inference_mode():
        got = clip_text.encode_text_trimmed(encoder.model, tokens)
        want = encoder.model.encode_text(tokens)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_length_order_sorts_by_token_count_stably(encoder, monkeypatch) -> None:
    import cvae.clip.text as clip_text

    monkeypatch.setattr(clip_text, "COUNT_CHUNK", 2)  # several chunks
    sentences = ["a b c d e", "a", "hills", "a b c", "two sheep", "a b c d e"]
    order = clip_text.length_order(sentences, encoder.tokenizer).tolist()
    counts = (encoder.tokenizer(sentences) != 0).sum(dim=1).tolist()
    assert sorted(order) == list(range(len(sentences)))
    keys = [(counts[i], i) for i in order]
    assert keys == sorted(keys)  # by count, ties in the order given
    assert clip_text.length_order([], encoder.tokenizer).numel() == 0
