"""The input pipeline: a dataset and frozen backbones → a feature store.

- :mod:`sparc.extract.datasets` — dataset adapters (COCO, Open Images, Fashion-MNIST,
  an image folder, the embedded OpenMoji set): deterministic sequences of samples
  (image, caption, labels), registered by name in ``DATASETS``;
- :mod:`sparc.extract.backbones` — frozen feature extractors (OpenCLIP, DINOv2, CLIP,
  sentence-transformers, EfficientNet-Lite, E5), one per stream, registered by name in
  ``BACKBONES`` (README.md there lists them);
- :mod:`sparc.extract.extractor` — :func:`extract`: every sample through every stream's
  backbone into a :class:`~sparc.data.FeatureStore`, in resumable shards.

Both registries are :class:`sparc.registry.Registry` instances; every adapter and
backbone takes its options as a typed frozen dataclass, and :mod:`sparc.options`
parses the command line's ``NAME[:key=value,...]`` into them::

    from sparc.extract import backbones, datasets, extract

    ds = datasets.build("image-folder", root="imgs", captions="captions.csv")
    streams = {"img": backbones.build("efficientnet-lite"), "txt": backbones.build("e5-small")}
    store = extract(ds, streams, "store")
"""

from sparc.extract import backbones, datasets
from sparc.extract.extractor import extract

__all__ = ["backbones", "datasets", "extract"]
