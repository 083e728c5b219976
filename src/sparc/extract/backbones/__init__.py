"""Backbones: frozen models that turn images or captions into feature vectors.

``build(FAMILY, **options)`` makes one (weights load lazily); ``BACKBONES.names()``
lists the families. See :mod:`.base` for the interface, :mod:`.preprocess` for the
shared image pipeline and README.md for the families.
"""

from sparc.extract.backbones.base import BACKBONES, Backbone, build
from sparc.extract.backbones.preprocess import ImagePreprocess

__all__ = ["BACKBONES", "Backbone", "ImagePreprocess", "build"]
