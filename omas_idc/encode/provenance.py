"""Who made a derived object, when, and the UIDs that follow deterministically from that.

Outputs are deterministic (DESIGN.md): SOP and Series Instance UIDs derive from the source
SeriesInstanceUID, the model, its version, the task, the structure selection (where one is
made) and the omas-idc version, through
pydicom's ``generate_uid`` with entropy sources; dates and times come from the caller (the run's
start, recorded in its state), never from the clock at encoding time. Encoding the same input
twice therefore gives byte-identical files, and a retried shard never duplicates objects in IDC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.uid import UID, generate_uid

from omas_idc import __version__
from omas_idc.identity import ModelIdentity, structure_selection

__all__ = ["UID_PREFIX", "Provenance", "derived_uid"]

#: pydicom's UID root (``generate_uid``'s default), under which derived UIDs are made.
UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def derived_uid(*parts: str) -> UID:
    """A UID determined by ``parts`` (and nothing else): equal parts, equal UID."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["omas-idc", *parts])


@dataclass(frozen=True)
class Provenance:
    """The algorithm and the moment behind a derived SEG or SR.

    Attributes
    ----------
    model
        Model family as the catalog knows it (``"cads"``, ``"totalseg"``, ``"phantom-truth"``).
    model_version
        Model or weights version, e.g. ``"1.0"``.
    weights_variant
        Licence variant of the weights (``"open"``, ``"research"``, ``"reference"``) or ``""``.
    weights_licence
        The licence of the weights, e.g. ``"CC BY-SA 4.0"``, or ``""``.
    timestamp
        Content date and time of the outputs (the run's start).
    algorithm_name
        Name written to the Algorithm Identification Sequence; defaults to the model name.
    algorithm_type
        ``"AUTOMATIC"`` for model output, ``"MANUAL"`` or ``"SEMIAUTOMATIC"`` for released
        annotations (PS3.3 C.8.20.2, Segment Algorithm Type).
    content_creator_name
        ContentCreatorName (PN) of the outputs.
    manufacturer
        Manufacturer of the equipment (software) that made the outputs.
    omas_idc_version
        omas-idc version, part of every derived UID.
    structures
        The structures the outputs are restricted to (``--structures``), sorted; ``()`` for
        the whole model. A selection is part of every derived UID (its SEG holds other
        segments than the whole model's) and of the SEG's algorithm parameters.
    """

    model: str
    model_version: str
    timestamp: datetime
    weights_variant: str = ""
    weights_licence: str = ""
    algorithm_name: str = ""
    algorithm_type: str = "AUTOMATIC"
    content_creator_name: str = "omas-idc^"
    manufacturer: str = "omas-idc"
    omas_idc_version: str = __version__
    structures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "structures", structure_selection(self.structures))

    @classmethod
    def for_model(cls, model: ModelIdentity, timestamp: datetime) -> Provenance:
        """The provenance of outputs made by ``model`` at ``timestamp``."""
        return cls(
            model=model.name,
            model_version=model.version,
            timestamp=timestamp,
            weights_variant=model.variant,
            weights_licence=model.licence,
            structures=model.structures,
        )

    @property
    def identity(self) -> ModelIdentity:
        """The model behind the outputs."""
        return ModelIdentity(
            self.model,
            self.model_version,
            self.weights_variant,
            self.weights_licence,
            self.structures,
        )

    def uid(self, source_series_uid: str, task: str, kind: str) -> UID:
        """The UID of ``kind`` (``"series"``, ``"instance"``) for one task of one source series.

        The whole model's UIDs do not depend on the selection's existence: the selection is
        a part only where one is made.
        """
        selection = ("structures=" + " ".join(self.structures),) if self.structures else ()
        return derived_uid(
            source_series_uid,
            self.model,
            self.model_version,
            self.weights_variant,
            task,
            self.omas_idc_version,
            kind,
            *selection,
        )

    @property
    def name(self) -> str:
        """The algorithm name written into the SEG."""
        return self.algorithm_name or self.model

    @property
    def date(self) -> str:
        """DICOM DA of the timestamp."""
        return self.timestamp.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        """DICOM TM of the timestamp."""
        return self.timestamp.strftime("%H%M%S")
