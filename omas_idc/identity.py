"""``ModelIdentity``: which model made an output, the one shape every stage uses.

The model card says it (name, version, the licence variant of its weights and that variant's
licence), the run carries it, and the encoder writes it into every SEG and SR (Algorithm
Identification, derived UIDs) through :class:`~omas_idc.encode.provenance.Provenance`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelIdentity"]


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
    """

    name: str
    version: str
    variant: str = ""
    licence: str = ""
