"""The COCO protocol on a fixture the test writes, and the OpenMoji mosaics, end to end on
a real image model (EfficientNet-Lite0) and a stand-in text stream."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sparc.errors import SparcError
from sparc.localize.protocol_coco import (
    CocoSettings,
    coco_pairs,
    load_annotations,
    render_coco,
    run_coco,
    union_mask,
    write_coco,
)
from sparc.localize.protocol_mosaics import MosaicSettings, make_mosaics, render_table, run_mosaics, write_results


def test_coco_pairs_and_union_masks(loc_world):
    coco = load_annotations(loc_world["coco"] / "instances.json")
    assert coco_pairs(coco) == [(1, 1), (2, 1), (2, 5), (3, 5)]
    assert coco_pairs(coco, limit=1) == [(1, 1)]
    m = union_mask(coco, 2, 1)
    assert m.shape == (64, 96) and m[10, 10] and m[40, 70] and not m[10, 40]  # both apples, not the whale


@pytest.mark.parametrize("latents", ["text", "class"])
def test_coco_protocol(loc_world, tmp_path, latents):
    run = tmp_path / "run"
    shutil.copytree(loc_world["run"], run)
    settings = CocoSettings(annotations=loc_world["coco"] / "instances.json", images=loc_world["coco"] / "images",
                            latents=latents, class_min_count=0, progress=False)
    result = run_coco([run], settings, store=loc_world["store"])
    assert result.n_pairs == 4 and result.n_images == 3
    rows = {(r["model"], r["image_stream"], r["text_stream"], r["target"]): r for r in result.rows}
    assert set(rows) == {("run", "img", "txt", "sum"), ("run", "img", "txt", "cross")}  # no CLIP pair: no clip_sim
    for r in rows.values():
        assert r["pairs"] == 4 and 0 <= r["predictions"] <= 4
        assert 0 <= r["miou"] <= 1 and 0 <= r["pointing"] <= 1
        assert 0 <= r["map@0.2"] <= 1 or (r["predictions"] == 0 and np.isnan(r["map@0.2"]))
    files = write_coco(result, tmp_path / "out", [run])
    assert "| run | img | txt | cross |" in files[0].read_text()
    assert json.loads(files[1].read_text())["n_pairs"] == 4
    assert (run / "localisation-coco" / "localisation.md").is_file()
    assert "mAP@0.2" in render_coco(result)


def test_coco_errors(loc_world, tmp_path):
    with pytest.raises(SparcError, match="needs --coco-annotations"):
        run_coco([loc_world["run"]], CocoSettings(), store=loc_world["store"])
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SparcError, match="is not a COCO instances file"):
        run_coco([loc_world["run"]], CocoSettings(annotations=bad, images=tmp_path), store=loc_world["store"])


def test_mosaics_are_four_subgroups_with_alpha_masks(loc_world):
    from sparc.data import FeatureStore

    store = FeatureStore.open(loc_world["store"])
    settings = MosaicSettings(mosaics=5, split="all", progress=False)
    mosaics = make_mosaics(store, settings, 224)
    assert len(mosaics) == 5
    for m in mosaics:
        assert m.image.size == (224, 224) and m.masks.shape == (4, 224, 224)
        assert len(set(m.subgroups)) == 4
        assert not (m.masks.sum(0) > 1).any()  # tiles do not overlap
        for j in range(4):  # each mask lies in its own quadrant
            y, x = (j // 2) * 112, (j % 2) * 112
            assert m.masks[j][y:y + 112, x:x + 112].sum() == m.masks[j].sum() > 0
    # the mask is the render's alpha channel: opaque pixels are not white in the mosaic
    m = mosaics[0]
    a = np.asarray(m.image)
    assert (a[m.masks[0]] < 250).any(axis=1).mean() > 0.5
    assert (a[~m.masks.any(0)] >= 250).all(axis=1).mean() > 0.95
    again = make_mosaics(store, settings, 224)
    assert [x.rows for x in again] == [x.rows for x in mosaics]  # seeded


def test_too_few_subgroups(loc_world, monkeypatch):
    from sparc.data import FeatureStore

    store = FeatureStore.open(loc_world["store"])
    monkeypatch.setattr(store, "split_rows", lambda split: np.arange(3))  # 3 emoji: at most 3 subgroups
    with pytest.raises(SparcError, match="a mosaic needs 4"):
        make_mosaics(store, MosaicSettings(mosaics=1), 224)


def test_mosaic_protocol(loc_world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(loc_world["run"], run)
    settings = MosaicSettings(mosaics=6, split="all", batch_size=4, progress=False)
    result, mosaics, examples = run_mosaics([run], settings, store=loc_world["store"])
    assert result.n_mosaics == 6 and result.n_pairs == 24
    rows = {(r["model"], r["text_stream"], r["target"]): r for r in result.rows}
    assert set(rows) == {("run", "txt", "sum"), ("run", "txt", "cross"), ("run", "-", "image only"),
                         ("chance", "-", "uniform"), ("chance", "-", "centre")}
    assert all(r["pairs"] == 24 for r in rows.values())
    uniform = rows[("chance", "-", "uniform")]
    share = np.mean([m.masks[j].mean() for m in mosaics for j in range(4)])
    assert uniform["pointing"] == pytest.approx(share) and uniform["miou"] == pytest.approx(share)
    assert rows[("chance", "-", "centre")]["pointing"] == 0.0  # the centre is where four tiles meet: white
    files = write_results(result, mosaics, examples, tmp_path / "out", [run])
    assert (tmp_path / "out" / "examples.png").is_file() and Image.open(tmp_path / "out" / "examples.png").size[0] > 0
    table = files[0].read_text()
    assert "| run | txt | cross |" in table and "| chance | - | uniform |" in table
    assert (run / "localisation-mosaics" / "localisation.md").read_text() == table
    assert "6 mosaics, 24 prompts" in render_table(result)


def test_mosaics_need_an_openmoji_store(loc_world, tmp_path, monkeypatch):
    from sparc.data import FeatureStore
    from sparc.localize import protocol_mosaics

    store = FeatureStore.open(loc_world["store"])
    monkeypatch.setattr(store, "dataset_info", lambda: {"name": "coco"})
    with pytest.raises(SparcError, match="needs a store of the openmoji dataset"):
        protocol_mosaics.openmoji_dataset(store)


def test_coco_protocol_on_a_clip_store_with_the_clip_sim_baseline(loc_world, tmp_path):
    """Both towers of one (tiny, random) transformers CLIP: rollout maps and clip_sim."""
    transformers = pytest.importorskip("transformers", reason="needs the transformers extra")
    import torch

    from sparc.data import RowMeta, StoreWriter
    from sparc.extract.backbones import build
    from sparc.model import SPARC, SPARCConfig
    from tests.extract.backbones.test_hf import tiny_clip_tokenizer

    folder = tmp_path / "clip"
    folder.mkdir()
    tok, vocab = tiny_clip_tokenizer(folder)
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "max_position_embeddings": 77, "bos_token_id": vocab - 2,
                     "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    transformers.CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    img, txt = (build("hf-clip", model=str(folder), tower=t) for t in ("image", "text"))
    ims = [Image.open(p).convert("RGB") for p in sorted((loc_world["coco"] / "images").glob("*.png"))]
    feats = {"clip_img": img.encode(ims).numpy(), "clip_txt": txt.encode(["apple", "whale", "apple"]).numpy()}
    with StoreWriter(tmp_path / "store", {"clip_img": 16, "clip_txt": 16},
                     sources={"clip_img": img.fingerprint(), "clip_txt": txt.fingerprint()}) as w:
        w.append(feats, [RowMeta(row_id=f"r{i}") for i in range(3)])
    run = tmp_path / "run"
    SPARC({"clip_img": 16, "clip_txt": 16}, SPARCConfig(n_latents=32, k=4)).save(run)
    settings = CocoSettings(annotations=loc_world["coco"] / "instances.json", images=loc_world["coco"] / "images",
                            progress=False)
    with pytest.raises(SparcError, match="is not available"):  # the fingerprint names the folder only
        run_coco([run], settings, store=tmp_path / "store")
    specs = {s: f"hf-clip:model={folder},tower={t}" for s, t in (("clip_img", "image"), ("clip_txt", "text"))}
    result = run_coco([run], settings, store=tmp_path / "store", backbones=specs)
    rows = {(r["model"], r["target"]): r for r in result.rows}
    assert set(rows) == {("run", "sum"), ("run", "cross"), ("clip_sim", "clip_sim")}
    assert rows[("clip_sim", "clip_sim")]["predictions"] == 4  # a CLIP similarity always has a gradient
    assert "gradient-weighted attention rollout from block 1 of hf-clip" in render_coco(result)
