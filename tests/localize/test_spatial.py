"""Which backbones have a spatial map: the one-line errors of spatial_for."""

from __future__ import annotations

import pytest

from sparc.errors import SparcError
from sparc.localize.spatial import CNN_FAMILIES, VIT_FAMILIES, spatial_for


class StandIn:
    """A backbone as the registry describes it, never loaded."""

    def __init__(self, family: str, modality: str):
        self.family, self.modality = family, modality

    def load(self):  # pragma: no cover - the errors come before loading
        raise AssertionError("spatial_for must not load a backbone it cannot map")


def test_an_image_backbone_of_an_unknown_family_names_the_methods_that_fit():
    with pytest.raises(SparcError) as e:
        spatial_for(StandIn("resnet-from-a-folder", "image"), "img")
    line = str(e.value)
    assert "\n" not in line and "resnet-from-a-folder backbone has no spatial map" in line
    assert all(f in line for f in (*CNN_FAMILIES, *VIT_FAMILIES))
    assert "--method gradcam" in line and "--method rollout" in line


def test_a_text_backbone_points_to_word_attribution():
    with pytest.raises(SparcError, match="reads texts, not images.*per-word attribution"):
        spatial_for(StandIn("minilm", "text"), "minilm")
