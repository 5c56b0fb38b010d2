"""Training whole-body models from partially annotated datasets, exported as nnU-Net folders.

One concept per module: :mod:`~omas_idc.train.config` (the TOML configuration),
:mod:`~omas_idc.train.data` (cases from NIfTI, DICOM CT + SEG, phantoms),
:mod:`~omas_idc.train.intensity` (nnU-Net's foreground intensity properties),
:mod:`~omas_idc.train.planner` (spacing, patch, topology -> plans.json),
:mod:`~omas_idc.train.sampling` and :mod:`~omas_idc.train.augment` (patches),
:mod:`~omas_idc.train.losses` (marginal and exclusion losses),
:mod:`~omas_idc.train.trainer` (the loop, checkpoints, resume),
:mod:`~omas_idc.train.export` (nnU-Net v2 result folder + model card),
:mod:`~omas_idc.train.run` (``train(config)``) and :mod:`~omas_idc.train.demo` (the packaged
demo model).
"""

from __future__ import annotations
