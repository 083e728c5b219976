"""What ``sparc heatmap`` and ``sparc localize`` do (the CLI dataclasses only parse)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sparc.errors import SparcError


def heatmap(cmd) -> None:
    """``sparc heatmap`` (see :class:`sparc.cli.localize.Heatmap`)."""
    if cmd.for_report:
        return _for_report(cmd)
    if cmd.out is None:
        raise SparcError("give --out PATH (a .png; with --npy also the raw map)")
    if cmd.image is None:
        return _words(cmd)
    return _image(cmd)


def _open(cmd):
    from sparc.data import FeatureStore
    from sparc.explore.explorer import check_store_belongs
    from sparc.localize.runs import Backbones, backbone_specs
    from sparc.train.rundir import RunDir, load_model

    specs = backbone_specs(cmd.backbone)
    model = load_model(cmd.run_dir)
    store = FeatureStore.open(cmd.store if cmd.store is not None else RunDir(cmd.run_dir).trained_store())
    check_store_belongs(cmd.run_dir, model, store)
    return model, store, Backbones(store, cmd.device, specs)


def _pick(store, model, modality: str, stream: str | None, what: str) -> str:
    from sparc.explore.sources import stream_modality

    have = ", ".join(f"{s} ({stream_modality(store, s) or 'no backbone recorded'})" for s in model.names)
    if stream is not None:
        if stream not in model.names:
            raise SparcError(f"unknown stream {stream!r}; this run has: {have}")
        if stream_modality(store, stream) != modality:
            raise SparcError(f"stream {stream!r} does not read {modality}s ({what}); this run has: {have}")
        return stream
    for s in model.names:
        if stream_modality(store, s) == modality:
            return s
    raise SparcError(f"this run has no {modality} stream ({have}); {what} needs one")


def _image(cmd) -> None:
    import torch

    from sparc.explore.sources import read_image
    from sparc.localize.heatmap import ImageMapper, to_image
    from sparc.localize.render import overlay, save_png, with_legend
    from sparc.localize.targets import Query, check_latents

    if bool(cmd.latent) == (cmd.text is not None):
        raise SparcError("give --latent L [L ...] or --text \"...\" (one of the two)")
    model, store, bbs = _open(cmd)
    if cmd.latent:
        check_latents(model, cmd.latent)
    image = read_image(cmd.image)
    stream = _pick(store, model, "image", cmd.stream, "a heatmap on an image")
    if cmd.method == "occlusion":
        raise SparcError("occlusion is a text method; on an image use --method gradcam or rollout")
    mapper = ImageMapper(model, stream, bbs.get(stream), method=cmd.method, start_layer=cmd.start_layer)
    if cmd.latent:
        query = Query(latents=tuple(cmd.latent))
        what = f"latent{'s' if len(cmd.latent) > 1 else ''} {', '.join(map(str, cmd.latent))}"
    else:
        ts = _pick(store, model, "text", cmd.text_stream, "a --text query")
        query = Query(text_stream=ts, text=bbs.text_features(ts, [cmd.text])[0], target=cmd.target,
                      encoding=cmd.encoding)
        what = f"text {cmd.text!r} through {ts} ({cmd.target}, {cmd.encoding} codes)"
    torch.set_grad_enabled(True)
    t = time.perf_counter()
    got = mapper.maps([image], [(0, query)])
    seconds = time.perf_counter() - t
    h = to_image(got.maps[0], (image.height, image.width))
    save_png(with_legend(overlay(image, h, max_side=1024), f"{what}; {mapper.describe()}"), cmd.out)
    if cmd.npy is not None:
        Path(cmd.npy).parent.mkdir(parents=True, exist_ok=True)
        np.save(cmd.npy, h.astype(np.float32))
    print(f"{mapper.describe()}: {what} on {cmd.image} (stream {stream}); target {float(got.targets[0]):.4g}; "
          f"{seconds:.2f} s")
    if got.flat[0]:
        print("note: the map is flat — the target's latents are not active on this image, so nothing lights up")
    y, x = np.unravel_index(int(np.argmax(h)), h.shape)
    print(f"maximum at x={x}, y={y} of {image.width}×{image.height}")
    print(f"wrote {cmd.out}" + (f" and {cmd.npy}" if cmd.npy is not None else ""))


def _words(cmd) -> None:
    from sparc.localize.render import write_words
    from sparc.localize.targets import check_latents
    from sparc.localize.text_attribution import TextAttributor

    if cmd.text is None:
        raise SparcError("give IMAGE (a heatmap on it) or --text \"...\" without IMAGE (its words shaded)")
    model, store, bbs = _open(cmd)
    latents = check_latents(model, cmd.latent) if cmd.latent else None
    stream = _pick(store, model, "text", cmd.stream, "per-word attribution")
    method = cmd.method if cmd.method in (None, "gradcam", "occlusion") else None
    if cmd.method == "rollout":
        raise SparcError("rollout maps images; on a caption use --method gradcam or occlusion")
    attr = TextAttributor(model, stream, bbs.get(stream), method=method)
    ws = attr.attribute(cmd.text, latents)
    title = (f"{stream}: latents {', '.join(map(str, ws.latents[:12]))}{' …' if len(ws.latents) > 12 else ''} "
             f"({ws.method})")
    png, page = write_words(ws.words, ws.scores, cmd.out, title=title)
    print(f"{ws.method} on {stream}, target {ws.target:.4g} over latents {list(ws.latents)}")
    print("  ".join(f"{w}:{s:.2f}" for w, s in zip(ws.words, ws.scores)))
    if ws.target <= 0:
        print("note: the latents do not fire on this caption, so no word is attributed")
    print(f"wrote {png} and {page}")


def _for_report(cmd) -> None:
    from sparc.explore import Explorer, StatsSettings
    from sparc.localize.report import ReportHeatmapSettings, write_report_heatmaps

    ex = Explorer.open(cmd.run_dir, cmd.store, stats_settings=StatsSettings(split=cmd.split, progress=cmd.progress),
                       naming=None, reuse_any=True, device=cmd.device)
    from sparc.localize.runs import backbone_specs

    info = write_report_heatmaps(ex, ReportHeatmapSettings(rows=cmd.rows, max_latents=cmd.max_latents,
                                                           progress=cmd.progress), device=cmd.device,
                                 backbones=backbone_specs(cmd.backbone))
    for note in info.notes:
        print(f"note: {note}")
    print(info.summary() + "; 'sparc report' shows them on each latent's page")


def localize(cmd) -> None:
    """``sparc localize`` (see :class:`sparc.cli.localize.Localize`)."""
    from sparc.workspace import LOCALISATION, check_replaceable, mark, writing

    with writing(cmd.out, "sparc localize"):
        check_replaceable(cmd.out, LOCALISATION, "choose a new or empty --out")  # before the long work
        Path(cmd.out).mkdir(parents=True, exist_ok=True)
        mark(cmd.out, LOCALISATION, "sparc localize")  # first: a killed localize leaves a folder it may reuse
        files = _localize(cmd)
    print("wrote " + ", ".join(str(f) for f in files))


def _localize(cmd) -> list:
    """Run the chosen protocol and write its tables into ``cmd.out``; the files written."""
    from sparc.localize.runs import backbone_specs

    if cmd.protocol == "coco":
        from sparc.localize.protocol_coco import CocoSettings, render_coco, run_coco, write_coco

        settings = CocoSettings(annotations=cmd.coco_annotations, images=cmd.coco_images, limit=cmd.limit,
                                targets=tuple(cmd.targets), latents=cmd.latents,
                                class_min_count=cmd.class_min_count, encoding=cmd.encoding,
                                start_layer=cmd.start_layer, progress=cmd.progress)
        result = run_coco(list(cmd.runs), settings, store=cmd.store, device=cmd.device,
                          backbones=backbone_specs(cmd.backbone))
        files = write_coco(result, cmd.out, list(cmd.runs))
        print(render_coco(result))
    else:
        from sparc.localize.protocol_mosaics import MosaicSettings, render_table, run_mosaics, write_results

        settings = MosaicSettings(mosaics=cmd.mosaics, split=cmd.split, tile=cmd.tile, seed=cmd.seed,
                                  targets=tuple(cmd.targets), encoding=cmd.encoding, progress=cmd.progress)
        result, mosaics, examples = run_mosaics(list(cmd.runs), settings, store=cmd.store, device=cmd.device,
                                                image_stream=cmd.image_stream, backbones=backbone_specs(cmd.backbone))
        files = write_results(result, mosaics, examples, cmd.out, list(cmd.runs))
        print(render_table(result))
    return files
