"""The curation controls both docks share (plate browser, tissue curation): a required
reason, the decisions in force, and the undo of the selected one. A dock using
:class:`DecisionControls` has ``reason_edit``, ``user_edit``, ``decision_list`` and ``status``
widgets, a ``curation_model`` (``decisions()`` and ``undo(decision, reason=, user=)``: a
:class:`imaging.plate.review.RunReview` or :class:`imaging.tissue.curation.TissueCuration`;
None before a run is open) and ``_recorded(text)``."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QListWidgetItem


class DecisionControls:
    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            self.status.setText("Give a reason for the decision.")
            return None
        return reason

    def list_decisions(self) -> None:
        """Show the decisions in force (latest per target), each selectable for undo."""
        self.decision_list.clear()
        for decision in self.curation_model.decisions() if self.curation_model is not None else []:
            item = QListWidgetItem(decision.text)
            item.setData(Qt.UserRole, decision)
            self.decision_list.addItem(item)

    def undo_selected(self) -> None:
        """Undo the selected decision (with a reason, like any decision)."""
        item = self.decision_list.currentItem()
        if item is None:
            self.status.setText("Select a decision in the list to undo.")
            return
        if (reason := self._reason()) is not None:
            decision = item.data(Qt.UserRole)
            self.curation_model.undo(decision, reason=reason, user=self.user_edit.text())
            self._recorded(f'Undo of "{decision.text}"')
