"""Localisation: where in an image a latent or a caption lies, which words of a caption
carry a latent, and how well that matches ground-truth masks (docs/method.md §5.7;
README.md beside this file).

- :mod:`.spatial` — image backbones with their spatial map (CNN: the last convolutional
  block; ViT: attention and tokens);
- :mod:`.gradcam`, :mod:`.rollout` — Grad-CAM and the gradient-weighted attention rollout
  of Chefer et al. (attention captured in any ViT library);
- :mod:`.targets` — the scalar of the SPARC code a map differentiates (``sum``,
  ``cross``, latents, the CLIP-similarity baseline);
- :mod:`.heatmap` — :class:`ImageMapper`, batched maps of (image, query) pairs;
- :mod:`.text_attribution` — per-word attribution in text streams (Grad-CAM, occlusion);
- :mod:`.scoring` — Otsu masks, pointing game, mIoU, COCOeval mAP at IoU 0.2;
- :mod:`.protocol_coco`, :mod:`.protocol_mosaics` — the paper's COCO protocol and the
  OpenMoji mosaics;
- :mod:`.render`, :mod:`.report` — pictures, and the heatmaps of ``sparc report``.
"""

from sparc.localize.heatmap import ImageMapper, Maps
from sparc.localize.targets import Query, target_values
from sparc.localize.text_attribution import TextAttributor, WordScores

__all__ = ["ImageMapper", "Maps", "Query", "TextAttributor", "WordScores", "target_values"]
