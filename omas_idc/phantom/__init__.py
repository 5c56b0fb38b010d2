"""A synthetic CT phantom with known anatomy: the demo's input, the tests' ground truth.

:func:`make_phantom` writes a CT series (any orientation, patient position, transfer syntax,
gantry tilt) with its true label map; :func:`render_phantom` renders the same anatomy as
arrays only. The anatomy (:mod:`omas_idc.phantom.anatomy`) is analytic, so every structure's
volume and centroid are known exactly. The demo (``omas-idc phantom``, the notebooks) and the
training examples use it as a product feature; the tests use it as ground truth.
"""

from __future__ import annotations

from omas_idc.phantom.anatomy import AnatomyStructure, phantom_anatomy
from omas_idc.phantom.series import (
    TRANSFER_SYNTAXES,
    Phantom,
    PhantomOptions,
    StructureTruth,
    make_phantom,
    render_phantom,
)

__all__ = [
    "TRANSFER_SYNTAXES",
    "AnatomyStructure",
    "Phantom",
    "PhantomOptions",
    "StructureTruth",
    "make_phantom",
    "phantom_anatomy",
    "render_phantom",
]
