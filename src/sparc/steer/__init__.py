"""Acting on the aligned space: encode some streams, set / add / scale / zero chosen
latents, decode into any stream (docs/method.md §7.1).

- :mod:`.edits` — what an edit is, read from the command line, applied to codes;
- :mod:`.steer` — :func:`steer`: features → codes → edited codes → features of any stream;
- :mod:`.effects` — what an edit moved: nearest store rows, a label probe's scores.
"""

from sparc.steer.edits import Edit, apply_edits, parse_edit
from sparc.steer.steer import Steered, steer

__all__ = ["Edit", "Steered", "apply_edits", "parse_edit", "steer"]
