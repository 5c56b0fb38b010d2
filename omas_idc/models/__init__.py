"""Models shipped with omas-idc: the demo model trained on phantoms (package data).

``omas_idc/models/demo/`` holds ``card.json`` and the nnU-Net v2 result folder
``Dataset900_OmasDemo/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres``, written by
``python -m omas_idc.train.demo --out omas_idc/models/demo``. Load it with::

    from omas_idc.engine.model import load_model
    from omas_idc.models import demo_card_path

    model = load_model(demo_card_path())
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_MODEL_NAME", "demo_card_path", "demo_result_folder"]

#: The demo model's card name (also the ``model`` of its TaskLabelMaps).
DEMO_MODEL_NAME = "omas-demo"

_DEMO = Path(__file__).resolve().parent / "demo"


def demo_card_path() -> Path:
    """The packaged demo model's ``card.json``.

    Raises
    ------
    FileNotFoundError
        If the package was installed without its model data.
    """
    path = _DEMO / "card.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo model is missing from {_DEMO}; reinstall omas-idc or rebuild it with "
            "`python -m omas_idc.train.demo --out omas_idc/models/demo`"
        )
    return path


def demo_result_folder() -> Path:
    """The demo model's nnU-Net v2 result folder (for ``load_model`` or nnU-Net)."""
    demo_card_path()
    return _DEMO / "Dataset900_OmasDemo" / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
