"""The dataset registry: names, building, option errors."""

import pytest

from sparc.data.datasets import Dataset, available, build
from sparc.errors import SparcError


def test_all_adapters_registered():
    assert {"image-folder", "coco", "open-images", "fashion-mnist", "openmoji"} <= set(available())


def test_unknown_dataset():
    with pytest.raises(SparcError, match="unknown dataset 'nope'.*openmoji"):
        build("nope")


def test_unknown_option(images):
    with pytest.raises(SparcError, match="bad options for dataset 'image-folder'"):
        build("image-folder", root=images, colour="red")


def test_built_adapter_is_a_dataset(images):
    ds = build("image-folder", root=images)
    assert isinstance(ds, Dataset) and ds.name == "image-folder"


def test_options_in_command_line_form(tmp_path):
    """Options as the CLI passes them (``NAME:key=value,...``, values parsed or strings)."""
    extract = pytest.importorskip("sparc.data.extract")
    (tmp_path / "dog").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "dog" / "1.png")
    name, options = extract.parse_options(
        f"image-folder:root={tmp_path},missing_images=skip,caption_template={{label}}"
    )
    ds = build(name, **options)
    assert [(s.row_id, s.caption, s.labels) for s in ds] == [("dog/1.png", "dog", ("dog",))]
