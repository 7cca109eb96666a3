"""Curating a tissue run: the Qt-free model behind the napari plugin's tissue curation dock
(usable from a notebook).

:class:`TissueCuration` opens a finished tissue run folder and answers what a reviewer asks
of it: which images there are, with their scores as the run measured them and whether they
are excluded; it records ``exclude_image`` / ``include_image`` decisions in
``curation.csv`` (:mod:`imaging.curation`, the log plate runs use) and rebuilds the tables
and the report from the stored per-image results (:func:`imaging.tissue.tables.rebuild_tissue_tables`),
so an excluded section leaves every table, pooled sample and comparison.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from imaging import curation
from imaging.errors import InputError
from imaging.run.record import read_record

# What the reviewer sees of each image: its IHC scores and its metastatic burden, as measured.
IMAGE_COLUMNS = {
    "ihc": ("n_cells", "percent_positive", "h_score", "positive_cells_per_mm2"),
    "burden": ("n_lesions", "lesion_percent_of_tissue"),
}


@dataclasses.dataclass
class TissueCuration:
    """A tissue run folder under curation (see module docstring)."""

    out_dir: Path
    record: dict

    @classmethod
    def open(cls, out_dir: str | Path) -> TissueCuration:
        """A finished tissue run; InputError for a plate run or a folder that is no run.

        Parameters
        ----------
        out_dir : str or Path
            The run's ``--out`` folder.

        Returns
        -------
        TissueCuration
        """
        out_dir = Path(out_dir)
        record, _ = read_record(out_dir)
        if record.get("mode") != "tissue":
            raise InputError("is a plate run, not a tissue run", path=out_dir, fix="open it with the plate browser")
        return cls(out_dir, record)

    def images(self) -> pd.DataFrame:
        """One row per image of the run: its measured scores, ``excluded`` and the ``note``
        (reason, user, time) of the exclusion in force."""
        excluded = curation.load(self.out_dir).excluded_images
        rows = []
        for summary in sorted(self.record["images"], key=lambda s: s["image"]):
            row = {"image": summary["image"]}
            for section, columns in IMAGE_COLUMNS.items():
                if section in summary:
                    row |= {column: summary[section].get(column) for column in columns}
            row |= {"excluded": summary["image"] in excluded, "note": excluded.get(summary["image"], "")}
            rows.append(row)
        return pd.DataFrame(rows)

    def _known(self, image: str) -> str:
        names = [s["image"] for s in self.record["images"]]
        if image not in names:
            raise InputError(
                f"has no image {image!r} (images: {', '.join(sorted(names))})",
                path=self.out_dir,
                fix="name an image of this run (its file name without extension)",
            )
        return image

    def exclude(self, image: str, *, reason: str, user: str = "", undo: bool = False) -> None:
        """Leave ``image`` out of the tables (``undo``: include it again); a reason is required,
        as the log is what a reader of the results checks.

        Parameters
        ----------
        image : str
            The image's name in the run.
        reason : str
            Why.
        user : str
            Who decided.
        undo : bool
            Include the image again.

        Raises
        ------
        InputError
            Without a reason, or for an image the run does not hold.
        """
        curation.record(
            self.out_dir,
            action="include_image" if undo else "exclude_image",
            image=self._known(image),
            reason=reason,
            user=user,
        )

    def decisions(self) -> list[curation.Decision]:
        """The decisions in force, each with its undo."""
        return curation.in_force(curation.load(self.out_dir))

    def undo(self, decision: curation.Decision, *, reason: str, user: str = "") -> None:
        """Record the decision that reverses ``decision`` (the log keeps both).

        Parameters
        ----------
        decision : Decision
            One of :meth:`decisions`.
        reason : str
            Why.
        user : str
            Who decided.
        """
        curation.record(self.out_dir, **decision.undo, reason=reason, user=user)

    def rebuild(self) -> dict:
        """Rebuild the tables (curation applied) and the report; returns the run record."""
        from imaging.report.tissue import build_tissue_report
        from imaging.tissue.tables import rebuild_tissue_tables

        self.record = rebuild_tissue_tables(self.out_dir)
        build_tissue_report(self.out_dir)
        return self.record
