"""The phantom's anatomy: analytic shapes in patient space (LPS, mm) with known volumes.

Every structure is an ellipsoid, a slab of an ellipsoid (lung lobes) or an elliptic cylinder,
so its true volume and centroid follow from formulas, independently of any voxelisation.
A ``seed`` varies the layout: a global shift of the patient (up to +-15 mm per axis), each
organ's size (up to +-20 %), axis ratios, in-plane rotation and HU value. Organs never
overlap one another (checked by sampling and re-drawn if they would) and lie inside the body,
so the analytic volumes are the volumes of the ground-truth labels.

HU values are those of a contrast-enhanced CT in the portal venous phase, the commonest
body CT (liver about 105, spleen 120, kidneys 170, blood in the heart and aorta 140-175, urine
8, bone 300-480, lungs -850, the body's fat-dominated soft tissue -100 to -60), each varied by
the seed.

Coordinates are DICOM patient coordinates: +x is the patient's left, +y posterior, +z superior.
Names follow the CADS / TotalSegmentator class lists (``kidney_left``, ``vertebrae_L1``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

__all__ = ["AnatomyStructure", "Ellipsoid", "EllipticCylinder", "phantom_anatomy"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

AIR_HU = -1000.0


def _rotation_z(degrees: float) -> FloatArray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid, optionally restricted to a slab ``z_low < z_local <= z_high``.

    ``rotation`` maps local axes to patient axes; ``semi_axes`` are along the local axes.
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    z_low: float = -np.inf
    z_high: float = np.inf

    def _local(self, points: FloatArray) -> FloatArray:
        rot = np.asarray(self.rotation, dtype=np.float64)
        return (points - np.asarray(self.center)) @ rot

    def contains(self, points: FloatArray) -> BoolArray:
        """Which of the LPS points (shape (..., 3)) lie inside."""
        q = self._local(points)
        a = np.asarray(self.semi_axes)
        inside: BoolArray = np.sum((q / a) ** 2, axis=-1) <= 1.0
        if np.isfinite(self.z_low) or np.isfinite(self.z_high):
            inside &= (q[..., 2] > self.z_low) & (q[..., 2] <= self.z_high)
        return inside

    def _z_range(self) -> tuple[float, float]:
        c = self.semi_axes[2]
        return max(-c, self.z_low), min(c, self.z_high)

    @property
    def volume_mm3(self) -> float:
        """Analytic volume: the integral of the elliptic cross-section over the slab."""
        a, b, c = self.semi_axes
        z1, z2 = self._z_range()
        if z2 <= z1:
            return 0.0
        return float(np.pi * a * b * ((z2 - z1) - (z2**3 - z1**3) / (3 * c * c)))

    @property
    def centroid(self) -> FloatArray:
        """Analytic centroid (LPS)."""
        a, b, c = self.semi_axes
        z1, z2 = self._z_range()
        volume = self.volume_mm3
        moment = np.pi * a * b * ((z2**2 - z1**2) / 2 - (z2**4 - z1**4) / (4 * c * c))
        local = np.array([0.0, 0.0, moment / volume if volume else 0.0])
        rot = np.asarray(self.rotation, dtype=np.float64)
        return np.asarray(self.center) + rot @ local

    def half_extent(self) -> FloatArray:
        """Half-size of the axis-aligned bounding box (of the whole ellipsoid)."""
        rot = np.asarray(self.rotation, dtype=np.float64)
        return np.sqrt(((rot * np.asarray(self.semi_axes)) ** 2).sum(axis=1))

    def sample_inside(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` points spread through the shape (for overlap checks)."""
        u = rng.normal(size=(n, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        r = rng.uniform(0.0, 1.0, size=(n, 1)) ** (1 / 3)
        local = u * r * np.asarray(self.semi_axes)
        rot = np.asarray(self.rotation, dtype=np.float64)
        points = local @ rot.T + np.asarray(self.center)
        return points[self.contains(points)]


@dataclass(frozen=True)
class EllipticCylinder:
    """An elliptic cylinder along the patient z axis, ``|z - center_z| <= half_height``."""

    center: tuple[float, float, float]
    semi_axes: tuple[float, float]
    half_height: float

    def contains(self, points: FloatArray) -> BoolArray:
        """Which of the LPS points (shape (..., 3)) lie inside."""
        q = points - np.asarray(self.center)
        a, b = self.semi_axes
        inside: BoolArray = ((q[..., 0] / a) ** 2 + (q[..., 1] / b) ** 2 <= 1.0) & (
            np.abs(q[..., 2]) <= self.half_height
        )
        return inside

    @property
    def volume_mm3(self) -> float:
        """Analytic volume."""
        return float(np.pi * self.semi_axes[0] * self.semi_axes[1] * 2 * self.half_height)

    @property
    def centroid(self) -> FloatArray:
        """Analytic centroid (LPS)."""
        return np.asarray(self.center, dtype=np.float64)

    def half_extent(self) -> FloatArray:
        """Half-size of the axis-aligned bounding box."""
        return np.array([self.semi_axes[0], self.semi_axes[1], self.half_height])

    def sample_inside(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` points spread through the shape (for overlap checks)."""
        r = np.sqrt(rng.uniform(0.0, 1.0, n))
        t = rng.uniform(0.0, 2 * np.pi, n)
        z = rng.uniform(-self.half_height, self.half_height, n)
        local = np.stack(
            [r * np.cos(t) * self.semi_axes[0], r * np.sin(t) * self.semi_axes[1], z], axis=1
        )
        return local + np.asarray(self.center)


Shape = Ellipsoid | EllipticCylinder


@dataclass(frozen=True)
class AnatomyStructure:
    """One labelled structure of the phantom.

    ``group`` names the solid the structure is a part of (the lobes of one lung share their
    ellipsoid); parts of one group partition it and are exempt from the overlap check.
    """

    name: str
    shape: Shape
    hu: float
    group: str

    @property
    def volume_ml(self) -> float:
        """Analytic volume in millilitres."""
        return self.shape.volume_mm3 / 1000.0

    @property
    def centroid(self) -> FloatArray:
        """Analytic centroid (LPS, mm)."""
        return self.shape.centroid


# name, centre (x, y, z), semi-axes, rotation about z (degrees), HU (portal venous phase)
_ORGANS: tuple[
    tuple[str, tuple[float, float, float], tuple[float, float, float], float, float], ...
] = (
    ("heart", (10.0, -40.0, 70.0), (36.0, 34.0, 35.0), 20.0, 140.0),
    ("liver", (-70.0, -10.0, -10.0), (62.0, 62.0, 34.0), -15.0, 105.0),
    ("spleen", (95.0, 10.0, 0.0), (26.0, 34.0, 27.0), 30.0, 120.0),
    ("kidney_left", (62.0, 55.0, -68.0), (24.0, 22.0, 40.0), -20.0, 170.0),
    ("kidney_right", (-62.0, 55.0, -80.0), (24.0, 22.0, 40.0), 20.0, 170.0),
    ("urinary_bladder", (0.0, -50.0, -140.0), (38.0, 28.0, 24.0), 0.0, 8.0),
    ("hip_left", (98.0, 30.0, -138.0), (15.0, 45.0, 28.0), -25.0, 480.0),
    ("hip_right", (-98.0, 30.0, -138.0), (15.0, 45.0, 28.0), 25.0, 480.0),
)
# (name, local z range of the lobe within its lung ellipsoid, as fractions of the z semi-axis)
_LUNGS: tuple[tuple[str, float, tuple[tuple[str, float, float], ...]], ...] = (
    ("left", 1.0, (("lung_lower_lobe_left", -1.0, 0.0), ("lung_upper_lobe_left", 0.0, 1.0))),
    (
        "right",
        -1.0,
        (
            ("lung_lower_lobe_right", -1.0, -0.25),
            ("lung_middle_lobe_right", -0.25, 0.3),
            ("lung_upper_lobe_right", 0.3, 1.0),
        ),
    ),
)
_VERTEBRAE = ("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8")


def _draw_layout(rng: np.random.Generator) -> list[AnatomyStructure]:
    shift = rng.uniform(-15.0, 15.0, 3)
    body_scale = rng.uniform(0.92, 1.08, 2)
    structures = [
        AnatomyStructure(
            "body",
            EllipticCylinder(
                tuple(np.array([0.0, 0.0, 0.0]) + shift),
                (170.0 * body_scale[0], 120.0 * body_scale[1]),
                half_height=600.0,
            ),
            hu=rng.uniform(-100.0, -60.0),
            group="body",
        )
    ]
    for side, sign, lobes in _LUNGS:
        scale = rng.uniform(0.85, 1.1) * rng.uniform(0.95, 1.05, 3)
        center = np.array([sign * 100.0, 5.0, 100.0]) + shift + rng.uniform(-4, 4, 3)
        semi = np.array([38.0, 55.0, 62.0]) * scale
        hu = rng.uniform(-880.0, -800.0)
        for name, low, high in lobes:
            shape = Ellipsoid(
                tuple(center),
                tuple(semi),
                z_low=low * semi[2] if low > -1 else -np.inf,
                z_high=high * semi[2],
            )
            structures.append(AnatomyStructure(name, shape, hu, group=f"lung_{side}"))
    for name, center0, semi0, angle, hu0 in _ORGANS:
        scale = rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3)
        rotation = _rotation_z(angle + rng.uniform(-10.0, 10.0))
        shape = Ellipsoid(
            tuple(np.array(center0) + shift + rng.uniform(-4, 4, 3)),
            tuple(np.array(semi0) * scale),
            rotation=tuple(tuple(row) for row in rotation),
        )
        structures.append(AnatomyStructure(name, shape, hu0 * rng.uniform(0.9, 1.1), name))
    aorta_radius = 11.0 * rng.uniform(0.85, 1.15)
    structures.append(
        AnatomyStructure(
            "aorta",
            EllipticCylinder(
                tuple(np.array([35.0, 30.0, 15.0]) + shift),
                (aorta_radius, aorta_radius),
                half_height=110.0,
            ),
            hu=rng.uniform(150.0, 175.0),
            group="aorta",
        )
    )
    vertebra_scale = rng.uniform(0.9, 1.1)
    vertebra_hu = rng.uniform(300.0, 420.0)
    for k, level in enumerate(_VERTEBRAE):
        center = np.array([0.0, 70.0, -135.0 + 30.0 * k]) + shift
        structures.append(
            AnatomyStructure(
                f"vertebrae_{level}",
                EllipticCylinder(
                    tuple(center),
                    (20.0 * vertebra_scale, 16.0 * vertebra_scale),
                    half_height=11.0,
                ),
                hu=vertebra_hu,
                group=f"vertebrae_{level}",
            )
        )
    return structures


def _valid(structures: list[AnatomyStructure], rng: np.random.Generator) -> bool:
    body = structures[0]
    solids: dict[str, Shape] = {}
    for s in structures[1:]:
        shape = s.shape
        if isinstance(shape, Ellipsoid):
            shape = replace(shape, z_low=-np.inf, z_high=np.inf)
        solids[s.group] = shape
    samples = {group: shape.sample_inside(rng, 3000) for group, shape in solids.items()}
    names = list(solids)
    for i, a in enumerate(names):
        if not body.shape.contains(samples[a]).all():
            return False
        lo_a = solids[a].centroid - solids[a].half_extent()
        hi_a = solids[a].centroid + solids[a].half_extent()
        for b in names[i + 1 :]:
            lo_b = solids[b].centroid - solids[b].half_extent()
            hi_b = solids[b].centroid + solids[b].half_extent()
            if np.any(hi_a < lo_b) or np.any(hi_b < lo_a):
                continue
            if solids[b].contains(samples[a]).any() or solids[a].contains(samples[b]).any():
                return False
    return True


def phantom_anatomy(seed: int) -> tuple[AnatomyStructure, ...]:
    """The structures of the phantom for ``seed``, body first, organs after.

    Layouts whose organs would touch are re-drawn (deterministically for a seed).
    """
    rng = np.random.default_rng([seed, 20261128])
    for _ in range(200):
        structures = _draw_layout(rng)
        if _valid(structures, rng):
            return tuple(structures)
    raise RuntimeError(f"no valid phantom layout found for seed {seed}")
