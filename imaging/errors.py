"""Errors a user can fix.

`InputError` is raised for anything wrong with what the user gave us (files, folders,
plate maps, pipeline YAML). Its message names the offending file or key and says how to
fix it; the CLI prints it on one line and exits with status 2. Anything else that escapes
is a bug in this package.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the file or key and the fix."""

    def __init__(self, message: str, *, path: str | None = None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.fix = fix
        parts = [f"{self.path}: {message}" if self.path else message]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))
