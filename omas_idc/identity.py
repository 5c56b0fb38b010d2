"""``ModelIdentity``: which model made an output, the one shape every stage uses.

The model card says it (name, version, the licence variant of its weights and that variant's
licence), the run carries it, and the encoder writes it into every SEG and SR (Algorithm
Identification, derived UIDs) through :class:`~omas_idc.encode.provenance.Provenance`.

A structure selection (``--structures``, TotalSegmentator's ``roi_subset``) is part of the
identity: outputs of a selection hold only its structures, so they are other objects than the
whole model's (other UIDs, the selection in the SEG's algorithm parameters), and a run resumed
with another selection does not take them for its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ModelIdentity", "structure_selection"]


def structure_selection(names: Iterable[str]) -> tuple[str, ...]:
    """A structure selection in its one written form: sorted, each name once.

    ``--structures liver,heart`` and ``--structures heart --structures liver`` make the same
    outputs, so they are the same selection; ``()`` is the whole model.
    """
    return tuple(sorted({str(name) for name in names}))


@dataclass(frozen=True)
class ModelIdentity:
    """The model behind an output.

    Attributes
    ----------
    name
        Model family as the catalog knows it (``"cads"``, ``"totalseg"``, ``"omas-demo"``).
    version
        Model or weights version, e.g. ``"1.0"``.
    variant
        Licence variant of the weights (``"open"``, ``"research"``) or ``""``.
    licence
        The licence of that variant's weights, e.g. ``"CC BY-SA 4.0"``, or ``""``.
    structures
        The catalog structures the outputs are restricted to (``--structures``), in the form
        of :func:`structure_selection`; ``()`` for every structure of the model.
    """

    name: str
    version: str
    variant: str = ""
    licence: str = ""
    structures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "structures", structure_selection(self.structures))
