"""Frame decoders that release the GIL, tried before pydicom's pixel backends.

pydicom's JPEG 2000 backend (pylibjpeg-openjpeg) holds the GIL while it decodes, so the read
stage's decoding threads would take turns on one core. imagecodecs wraps the same OpenJPEG
library and releases the GIL inside ``jpeg2k_decode``, so one thread per file decodes in
parallel. Its output is turned into exactly what ``pydicom.pixels.pixel_array(ds, raw=True)``
returns (dtype from Pixel Representation, pydicom's J2K sign correction), so both paths give the
same stored values; pydicom stays the fallback for every syntax and whatever this module does not
recognise (:func:`decode_frames` returns None), and so also names undecodable syntaxes.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from types import ModuleType

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import UID, JPEG2000TransferSyntaxes

__all__ = ["decode_frames", "is_available", "missing_dependencies"]

logger = logging.getLogger(__name__)

#: JPEG 2000 Image Compression (Lossless Only) and JPEG 2000 Image Compression (PS3.5 A.4.4).
_JPEG2000 = frozenset(str(uid) for uid in JPEG2000TransferSyntaxes)


@cache
def _imagecodecs() -> ModuleType | None:
    """imagecodecs where it is installed with its JPEG 2000 codec, else None."""
    try:
        module = importlib.import_module("imagecodecs")
    except ImportError:
        return None
    codec = getattr(module, "JPEG2K", None)
    if codec is None or not getattr(codec, "available", False):
        return None
    return module


def is_available(transfer_syntax: str) -> bool:
    """Whether a GIL-releasing decoder is installed for ``transfer_syntax``."""
    return str(transfer_syntax) in _JPEG2000 and _imagecodecs() is not None


def missing_dependencies(transfer_syntax: str) -> list[str]:
    """What to install so that :func:`is_available` becomes true (empty where it is)."""
    if str(transfer_syntax) not in _JPEG2000:
        return [f"no GIL-releasing decoder is known for {UID(transfer_syntax).name}"]
    return [] if _imagecodecs() is not None else ["imagecodecs (with its JPEG2K codec)"]


def decode_frames(ds: Dataset, transfer_syntax: str) -> npt.NDArray[np.integer] | None:
    """Stored values of all frames as (frames, rows, columns), or None to leave it to pydicom.

    Parameters
    ----------
    ds
        A greyscale (one sample per pixel) dataset with encapsulated Pixel Data.
    transfer_syntax
        Its transfer syntax UID.

    Returns
    -------
    numpy.ndarray or None
        Equal to ``pydicom.pixels.pixel_array(ds, raw=True)`` (with a frame axis). None where
        no decoder of this module handles the data: another syntax, imagecodecs absent,
        unusual precision, or a codestream imagecodecs rejects (pydicom then decodes it, or
        reports why it cannot).
    """
    codecs = _imagecodecs() if str(transfer_syntax) in _JPEG2000 else None
    if codecs is None or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixel_representation = int(ds.get("PixelRepresentation", 0))
    bits_stored = int(ds.get("BitsStored", 16))
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    out: npt.NDArray[np.integer] | None = None
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=n_frames, extended_offsets=extended)
        for index, codestream in enumerate(frames):
            frame = _decode_jpeg2000(codecs, codestream, pixel_representation, bits_stored)
            if frame is None or frame.shape != (rows, columns) or index >= n_frames:
                return None
            if out is None:
                out = np.empty((n_frames, rows, columns), dtype=frame.dtype)
            elif frame.dtype != out.dtype:
                return None
            out[index] = frame
    except (codecs.Jpeg2kError, ValueError) as err:
        # pydicom decodes it (or raises, naming the syntax) with its own backends.
        logger.debug("imagecodecs could not decode %s (%s); using pydicom", ds.filename, err)
        return None
    if out is None or index != n_frames - 1:
        return None
    return out


def _decode_jpeg2000(
    codecs: ModuleType, codestream: bytes, pixel_representation: int, bits_stored: int
) -> npt.NDArray[np.integer] | None:
    """One JPEG 2000 frame as pydicom returns it, or None for what pydicom should handle."""
    info = get_j2k_parameters(codestream)
    precision = int(info.get("precision", bits_stored))
    j2k_signed = int(bool(info.get("is_signed", pixel_representation)))
    # numthreads=1: the read stage decodes one file per thread already.
    decoded = codecs.jpeg2k_decode(codestream, numthreads=1)
    if decoded.ndim != 2 or decoded.dtype.kind not in "iu" or not 0 < precision <= 16:
        return None
    # pydicom's container follows the codestream precision (1 or 2 bytes) and its signedness
    # the Pixel Representation; imagecodecs uses the same container size.
    if decoded.itemsize != (1 if precision <= 8 else 2):
        return None
    dtype = np.dtype(f"{'i' if pixel_representation else 'u'}{decoded.itemsize}")
    frame = decoded.view(dtype)
    shift = 8 * decoded.itemsize - precision
    if shift and j2k_signed != pixel_representation:
        # pydicom's J2K sign correction: the codestream's signedness disagrees with the Pixel
        # Representation, so the value bits are reinterpreted with the dataset's signedness.
        frame = (frame << shift) >> shift
    return frame
