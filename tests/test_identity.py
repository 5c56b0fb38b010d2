"""One model identity: the card's, the run's and the SEG/SR provenance's are one type."""

from __future__ import annotations

from datetime import datetime

from omas_idc.encode import Provenance
from omas_idc.identity import ModelIdentity
from omas_idc.run.pipeline import ModelInfo

WHEN = datetime(2026, 5, 6, 7, 8, 9)


def test_the_runs_model_is_an_identity_and_its_provenance_writes_the_same_uids() -> None:
    info = ModelInfo("cads", "1.0", "open", "CC BY 4.0", task_order=("551",), device="cpu")
    assert isinstance(info, ModelIdentity)
    provenance = Provenance.for_model(info, WHEN)
    assert provenance.identity == ModelIdentity("cads", "1.0", "open", "CC BY 4.0")
    by_hand = Provenance(
        model="cads",
        model_version="1.0",
        timestamp=WHEN,
        weights_variant="open",
        weights_licence="CC BY 4.0",
    )
    assert provenance == by_hand
    assert provenance.uid("1.2.3", "551", "series") == by_hand.uid("1.2.3", "551", "series")
    # Another variant of the same weights is another algorithm: other UIDs.
    other = Provenance.for_model(ModelIdentity("cads", "1.0", "research"), WHEN)
    assert other.uid("1.2.3", "551", "series") != provenance.uid("1.2.3", "551", "series")
