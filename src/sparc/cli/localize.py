"""``sparc heatmap`` and ``sparc localize``: where latents lie in images and captions (sparc.localize)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro


@dataclass
class Heatmap:
    """Where a latent or a caption lies in an image (Grad-CAM on CNNs, attention rollout or Grad-CAM on ViTs), or, without IMAGE, which words of a caption carry latents."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train')."""

    image: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="IMAGE")] = None
    """Image file to map (PNG, JPEG, WebP); without it, --text is a caption whose words are shaded."""

    latent: tuple[int, ...] = ()
    """Latent ids: the map of the sum of their values (in the image stream, or in the caption's text stream)."""

    text: str | None = None
    """With IMAGE: a prompt, through a text stream to its SPARC code, mapped on the image; without: the caption to attribute."""

    stream: str | None = None
    """With IMAGE: the image stream mapped (default: the first); without: the text stream whose words are shaded (default: the first)."""

    text_stream: str | None = None
    """Text stream a --text prompt goes through on an image (default: the first)."""

    method: Literal["gradcam", "rollout", "occlusion"] | None = None
    """gradcam (CNNs, ViTs' last block, text towers), rollout (ViTs), occlusion (any text stream); default: rollout on a ViT, gradcam on a CNN or a text tower with gradients, else occlusion."""

    target: Literal["sum", "cross"] = "cross"
    """For a --text prompt on an image: sum of the image's values at the text's latents, or the dot product of the two codes."""

    encoding: Literal["joint", "independent"] = "joint"
    """For a --text prompt: codes of image and prompt encoded together (as the original) or each alone."""

    start_layer: int = -1
    """Rollout: first block rolled out (negative: from the end; -1 the last)."""

    out: Path | None = None
    """PNG to write: the image with the map over it, or the shaded words (and the same name with .html)."""

    npy: Path | None = None
    """Also save the raw map (H×W float32 in [0, 1], the image's size) here, for scoring."""

    for_report: bool = False
    """Instead: write RUN/heatmaps/ — every latent on its top images and captions — which 'sparc report' shows."""

    rows: int = 3
    """--for-report: top images and captions per latent and stream."""

    max_latents: int | None = None
    """--for-report: only the latents that fire most often (default: all that fire)."""

    split: str = "all"
    """--for-report: split whose top rows are mapped (the report's: every row by default)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    backbone: tuple[str, ...] = ()
    """STREAM=FAMILY[:key=value,...] to build instead of reading the stream's backbone options from the store (e.g. a local model folder); still checked against its fingerprint."""

    device: str = "cpu"
    """Torch device of the backbones."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.localize.commands import heatmap

        heatmap(self)


@dataclass
class Localize:
    """Measure localisation: OpenMoji mosaics on the runs' real models (pointing game, mIoU, mAP@0.2), or the paper's COCO protocol."""

    runs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directories trained on the same store (e.g. the four of experiments/four_variants.sh)."""

    out: Path
    """Directory for localisation.md, localisation.json and the example figure (the table also goes into RUN/localisation-<protocol>/)."""

    protocol: Literal["mosaics", "coco"] = "mosaics"
    """mosaics: 2×2 OpenMoji mosaics from an openmoji store; coco: the paper's protocol on a COCO copy."""

    store: Path | None = None
    """Feature store (default: the store the first run was trained on)."""

    mosaics: int = 500
    """mosaics: number of mosaics (4 prompts each)."""

    split: str = "test"
    """mosaics: split of the store the emoji come from."""

    tile: int = 0
    """mosaics: side of one emoji in pixels (0: half the image model's input)."""

    seed: int = 0
    """mosaics: seed of the draw."""

    image_stream: str | None = None
    """mosaics: the image stream mapped (default: the first)."""

    targets: tuple[Literal["sum", "cross", "dense"], ...] = ("sum", "cross")
    """Targets mapped for every prompt (dense, mosaics only: the image's latents before TopK, a diagnostic)."""

    encoding: Literal["joint", "independent"] = "joint"
    """Codes of image and prompt: together (as the original) or each alone."""

    coco_annotations: Path | None = None
    """coco: instances JSON (e.g. annotations/instances_val2017.json)."""

    coco_images: Path | None = None
    """coco: folder of its images (e.g. val2017/)."""

    limit: int | None = None
    """coco: only the first N images (by id)."""

    latents: Literal["text", "class"] = "text"
    """coco, sum target: the text's active latents, or the category's (active > --class-min-count times on it: the paper's headline variant)."""

    class_min_count: int = 50
    """coco, --latents class: the count a latent must exceed on a category's pairs."""

    start_layer: int = -1
    """Rollout's first block on ViT image streams (-1: the last)."""

    backbone: tuple[str, ...] = ()
    """STREAM=FAMILY[:key=value,...] to build instead of reading the stream's backbone options from the store (e.g. a local model folder); still checked against its fingerprint."""

    device: str = "cpu"
    """Torch device of the backbones."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.localize.commands import localize

        localize(self)
