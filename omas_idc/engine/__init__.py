"""The segment stage: batched nnU-Net v2 inference in torch (CADS, TotalSegmentator, any folder).

One concept per module: :mod:`~omas_idc.engine.card` (model cards),
:mod:`~omas_idc.engine.checkpoint` (safe checkpoint loading), :mod:`~omas_idc.engine.modelfolder`
(nnU-Net result folders), :mod:`~omas_idc.engine.network` (U-Nets from plans),
:mod:`~omas_idc.engine.resampling`, :mod:`~omas_idc.engine.preprocessing`,
:mod:`~omas_idc.engine.sliding_window`, :mod:`~omas_idc.engine.segmenter` (the batched,
producer/consumer API), :mod:`~omas_idc.engine.recipes` and :mod:`~omas_idc.engine.weights`.
"""

from __future__ import annotations
