"""``extract``: dataset + backbones → store; skips, alignment and exact resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract import extract
from sparc.extract.backbones.base import Backbone
from sparc.extract.datasets.base import Dataset, Sample
from sparc.extract.extractor import work_dir_of


class Colours(Dataset):
    """Tiny solid-colour images on disk; some broken, some without caption."""

    name = "colours"

    def __init__(self, root, n=23, broken=(5,), no_caption=(7,)):
        self.samples = []
        for i in range(n):
            path = root / f"{i}.png"
            if i in broken:
                path.write_bytes(b"not a png")
            else:
                Image.new("RGB", (8, 8), (i * 10 % 256, 100, 200)).save(path)
            caption = "" if i in no_caption else f"colour number {i}"
            self.samples.append(Sample(f"r{i}", f"g{i // 2}", str(path), caption, (f"c{i % 3}",)))

    def __iter__(self):
        return iter(self.samples)

    def __len__(self):
        return len(self.samples)


class MeanColour(Backbone):
    family, modality = "mean-colour", "image"
    dim = 3

    def _load(self):
        pass

    def _encode(self, items):
        return torch.tensor(np.stack([np.asarray(im, np.float32).mean((0, 1)) + 1 for im in items]))


class HashText(Backbone):
    family, modality = "hash-text", "text"
    dim = 4

    def __init__(self, fail_after=None, **kw):
        super().__init__(**kw)
        self.calls, self.fail_after = 0, fail_after

    def _load(self):
        pass

    def _encode(self, items):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C here
        digests = [hashlib.sha256(t.encode()).digest()[:4] for t in items]
        return torch.tensor([[b + 1.0 for b in d] for d in digests])


def streams(fail_after=None):
    return {"img": MeanColour(), "txt": HashText(fail_after=fail_after)}


def test_extract_writes_aligned_rows_and_reports_skips(tmp_path):
    ds = Colours(tmp_path)
    store = extract(ds, streams(), tmp_path / "store", batch_size=4, shard_size=6, progress=False)
    assert store.n_rows == 21 and store.streams == {"img": 3, "txt": 4}
    ids = [r.row_id for r in store.rows()]
    assert ids == [f"r{i}" for i in range(23) if i not in (5, 7)]
    # row i of each stream belongs to the same sample
    i = ids.index("r12")
    img = np.asarray(store.features("img")[i])
    expected = np.array([121.0, 101.0, 201.0]) / np.linalg.norm([121.0, 101.0, 201.0])
    np.testing.assert_allclose(img, expected, rtol=1e-6)
    skipped = store.manifest.extra["skipped_rows"]
    assert [s["row_id"] for s in skipped] == ["r5", "r7"]
    assert "unreadable image" in skipped[0]["reason"] and skipped[1]["reason"] == "empty caption"
    assert store.dataset_info()["name"] == "colours"
    assert not work_dir_of(tmp_path / "store").exists()


def test_interrupted_extraction_resumes_to_the_same_store(tmp_path):
    ds = Colours(tmp_path)
    straight = extract(ds, streams(), tmp_path / "a", batch_size=4, shard_size=6, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract(ds, streams(fail_after=3), tmp_path / "b", batch_size=4, shard_size=6, progress=False)
    assert not (tmp_path / "b").exists() and work_dir_of(tmp_path / "b").exists()
    resumed = extract(ds, streams(), tmp_path / "b", batch_size=4, shard_size=6, progress=False)
    for s in ("img", "txt"):
        np.testing.assert_array_equal(straight.features(s), resumed.features(s))
    assert straight.rows() == resumed.rows()
    np.testing.assert_array_equal(straight.split_codes(), resumed.split_codes())


def test_resume_with_other_settings_is_refused(tmp_path):
    ds = Colours(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        extract(ds, streams(fail_after=1), tmp_path / "b", batch_size=4, shard_size=6, progress=False)
    with pytest.raises(SparcError, match="other settings"):
        extract(ds, streams(), tmp_path / "b", batch_size=4, shard_size=5, progress=False)


def test_existing_store_is_refused_unless_overwrite(tmp_path):
    ds = Colours(tmp_path, n=4, broken=(), no_caption=())
    extract(ds, streams(), tmp_path / "s", progress=False)
    with pytest.raises(SparcError, match="already exists"):
        extract(ds, streams(), tmp_path / "s", progress=False)
    assert extract(ds, streams(), tmp_path / "s", progress=False, overwrite=True).n_rows == 4
