"""Names taken from user data that end up in paths: one rule for all of them.

Plate names become folders (``OUT/<plate>/``), readout and plate names become plot files
(``OUT/plots/<name>.png``). Two rules, so that nothing is ever written outside ``--out``:

- a name that is itself a folder must be a single, ordinary path component
  (:func:`check_folder_name`): not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no
  control characters; such a name is refused at planning with the file it came from;
- a name that only labels a file (a plot of a readout) is made safe instead
  (:func:`file_stem`): anything but letters, digits, ``-``, ``_``, ``.`` and ``+`` becomes
  ``_``, leading dots are dropped, so a plate-map column called ``../../tmp/x`` plots to
  ``plots/superplot_.._.._tmp_x.png``, inside the run folder.
"""

from __future__ import annotations

import re

from imaging.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]")


def check_folder_name(name: str, *, kind: str, source=None) -> str:
    """``name`` if it is a safe single folder name, else an :class:`InputError` naming it."""
    text = str(name)
    if text.strip() in ("", ".", "..") or any(c in text for c in "/\\") or any(ord(c) < 32 for c in text):
        raise InputError(
            f"{kind} name {text!r} cannot be a folder name (empty, '.', '..', a path separator or a control character)",
            path=source,
            fix=f"rename the files or folder so the {kind} has a plain name, or give --pattern "
            f"a {kind} group that captures one",
        )
    return text


def file_stem(name: str) -> str:
    """``name`` as a safe file stem (see module docstring)."""
    stem = _UNSAFE.sub("_", str(name)).lstrip(".")
    return stem or "_"
