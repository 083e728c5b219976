"""The dataset registry: names, building, option errors."""

import pytest

from sparc.errors import SparcError
from sparc.extract.datasets import DATASETS, Dataset, build
from sparc.options import parse_spec


def test_all_adapters_registered():
    assert {"image-folder", "coco", "open-images", "fashion-mnist", "openmoji"} <= set(DATASETS.names())


def test_unknown_dataset():
    with pytest.raises(SparcError, match="unknown dataset 'nope'.*openmoji"):
        build("nope")


def test_unknown_option(images):
    with pytest.raises(
        SparcError, match=r"^unknown option 'colour' for dataset 'image-folder'; valid: root \(path\), captions \(path or none\), "
    ):
        build("image-folder", root=images, colour="red")


def test_missing_required_option_names_it_with_its_help():
    with pytest.raises(SparcError, match=r"^dataset 'image-folder' needs root=\.\.\. \(path\): The image folder\.$"):
        build("image-folder")


def test_built_adapter_is_a_dataset(images):
    ds = build("image-folder", root=images)
    assert isinstance(ds, Dataset) and ds.name == "image-folder"
    assert ds.options == DATASETS.get("image-folder").Options(root=images)


def test_options_in_command_line_form(tmp_path):
    """Options as the CLI passes them (``NAME:key=value,...``, text coerced to the field types)."""
    (tmp_path / "dog").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "dog" / "1.png")
    name, options = parse_spec(f"image-folder:root={tmp_path},missing_images=skip,caption_template={{label}}", DATASETS)
    ds = DATASETS.get(name)(options)
    assert [(s.row_id, s.caption, s.labels) for s in ds] == [("dog/1.png", "dog", ("dog",))]
