"""The napari plugin's tests need napari (the ``napari`` extra) and a display (Xvfb in CI:
``xvfb-run -a make test``). Locally without them they are skipped; in CI they must run."""

import os

import pytest

if os.environ.get("CI"):
    import napari  # noqa: F401  (CI installs the extra: a missing napari must fail there)
else:
    pytest.importorskip("napari")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        pytest.skip("napari tests need a display: run them under xvfb-run -a", allow_module_level=True)
