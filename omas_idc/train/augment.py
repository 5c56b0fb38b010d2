"""Data augmentation for training patches: rotation, scaling and intensity, never mirroring.

nnU-Net's default trainer mirrors patches along every axis; for whole-body anatomy that would
teach the network that a left kidney may look like a right one, which is why the CADS and
TotalSegmentator models are trained without mirroring (``nnUNetTrainerNoMirroring``). We
follow them. Spatial augmentation samples the patch through a rotation (about the first,
cranio-caudal axis, plus small tilts where the spacing is isotropic enough) and an isotropic
scaling from a larger source region (trilinear for data, nearest for labels); intensity
augmentation applies, each with its own probability, Gaussian noise, a multiplicative
brightness change, a contrast change and a gamma curve, as nnU-Net's transforms do.
All parameters are drawn from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AugmentationParams", "augment_patch"]


@dataclass(frozen=True)
class AugmentationParams:
    """Probabilities and ranges of the augmentations (nnU-Net-like defaults)."""

    p_spatial: float = 0.3
    rotation_degrees: float = 15.0
    tilt_degrees: float = 5.0
    scale: tuple[float, float] = (0.85, 1.25)
    p_noise: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.1)
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    margin: float = 1.5

    def source_size(self, patch_size: Sequence[int]) -> tuple[int, ...]:
        """Size of the region cut before spatial augmentation (centred on the patch)."""
        out = []
        for p in patch_size:
            extra = math.ceil(p * (self.margin - 1.0) / 2.0) * 2
            out.append(p + extra)
        return tuple(out)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    m = np.eye(3)
    a, b = [i for i in range(3) if i != axis]
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def _spatial(
    data: torch.Tensor,
    labels: torch.Tensor,
    patch: Sequence[int],
    params: AugmentationParams,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    source = data.shape[-3:]
    center = [(s - p) // 2 for s, p in zip(source, patch, strict=True)]
    if rng.random() >= params.p_spatial:
        region = tuple(slice(c, c + p) for c, p in zip(center, patch, strict=True))
        return data[(slice(None), *region)], labels[region]
    matrix = _rotation(0, rng.uniform(-params.rotation_degrees, params.rotation_degrees))
    for axis in (1, 2):
        matrix = matrix @ _rotation(axis, rng.uniform(-params.tilt_degrees, params.tilt_degrees))
    matrix = matrix * rng.uniform(*params.scale)
    # voxel offsets from the centre, (z, y, x): u_source = A u_patch; in grid_sample's
    # normalised coordinates (align_corners=False) x = u / (size / 2); theta is in (x, y, z).
    theta_zyx = np.diag(2.0 / np.asarray(source)) @ matrix @ np.diag(np.asarray(patch) / 2.0)
    theta = np.zeros((3, 4))
    theta[:, :3] = theta_zyx[::-1, ::-1]
    grid = F.affine_grid(torch.from_numpy(theta).float()[None], [1, 1, *patch], align_corners=False)
    out = F.grid_sample(
        data[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    seg = F.grid_sample(
        labels[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out[0], seg[0, 0].to(labels.dtype)


def _intensity(
    data: torch.Tensor, params: AugmentationParams, rng: np.random.Generator
) -> torch.Tensor:
    if rng.random() < params.p_noise:
        std = rng.uniform(*params.noise_std)
        noise = rng.normal(0.0, std, size=tuple(data.shape)).astype(np.float32)
        data = data + torch.from_numpy(noise)
    if rng.random() < params.p_brightness:
        data = data * float(rng.uniform(*params.brightness))
    if rng.random() < params.p_contrast:
        factor = float(rng.uniform(*params.contrast))
        centre, lo, hi = data.mean(), data.min(), data.max()
        data = ((data - centre) * factor + centre).clamp(lo, hi)
    if rng.random() < params.p_gamma:
        gamma = float(rng.uniform(*params.gamma))
        before_mean, before_std = data.mean(), data.std()
        low, high = data.min(), data.max()
        span = torch.clamp(high - low, min=1e-7)
        data = ((data - low) / span) ** gamma * span + low
        data = (data - data.mean()) / torch.clamp(data.std(), min=1e-7) * before_std + before_mean
    return data


def augment_patch(
    data: torch.Tensor,
    labels: torch.Tensor,
    patch_size: Sequence[int],
    params: AugmentationParams,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one patch.

    Parameters
    ----------
    data
        ``(1, *source)`` normalised intensities, ``source = params.source_size(patch_size)``.
    labels
        ``(*source)`` labels.
    patch_size
        Output size.
    params
        Probabilities and ranges.
    rng
        The generator every random parameter is drawn from.

    Returns
    -------
    data, labels
        ``(1, *patch_size)`` and ``(*patch_size)``.
    """
    data, labels = _spatial(data, labels, patch_size, params, rng)
    return _intensity(data.contiguous(), params, rng), labels.contiguous()
