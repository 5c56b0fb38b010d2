"""What validation reports: one broken rule (:class:`Issue`) and the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field

from omas_idc.catalog.model import Structure

__all__ = ["Issue", "ValidationReport"]


@dataclass(frozen=True)
class Issue:
    """One broken rule: the structure, the rule's name and what is wrong."""

    name: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: [{self.rule}] {self.message}"


@dataclass
class ValidationReport:
    """The result of :func:`validate_structures`.

    Attributes
    ----------
    errors
        Broken rules; a valid catalog has none.
    outside_part16
        Structures whose type is SNOMED CT outside Part 16, with their source.
    outside_cid7151
        Structures whose type is in Part 16 but not in CID 7151 (allowed only on
        :data:`~omas_idc.catalog.validate.OUTSIDE_CID7151`).
    sources_checked
        Whether the outside-Part-16 sources and the label class lists were checked against the
        reference folder.
    """

    errors: list[Issue] = field(default_factory=list)
    outside_part16: list[Structure] = field(default_factory=list)
    outside_cid7151: list[Structure] = field(default_factory=list)
    sources_checked: bool = False

    def rules_broken(self) -> set[str]:
        """The names of the rules with at least one issue."""
        return {issue.rule for issue in self.errors}
