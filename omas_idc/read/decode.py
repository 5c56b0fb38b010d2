"""Pixel decoding (threads) and the stored value -> Hounsfield unit conversion.

One file per task in a thread pool. Uncompressed 16-bit little-endian data is read with numpy;
JPEG 2000 goes first to :mod:`omas_idc.read.codecs` (imagecodecs, which releases the GIL, so the
threads decode in parallel); everything else, and whatever that module declines, goes to
pydicom's pixel backends (pylibjpeg with openjpeg/libjpeg/rle, pyjpegls, and pydicom's own
native, RLE and deflate handling), which hold the GIL. Every transfer syntax in IDC decodes:
native little/big endian, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS and JPEG 2000.
A file that no installed backend decodes (e.g. the retired JPEG processes 6/8 and 10/12)
refuses the series with :class:`~omas_idc.errors.UnsupportedSeriesError` naming the syntax.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pydicom.pixels
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from omas_idc.errors import UnsupportedSeriesError
from omas_idc.read import codecs
from omas_idc.read.consistency import check_complete
from omas_idc.read.slices import SliceRecord

__all__ = ["PADDING_HU", "decode_volume", "stored_to_hu"]

logger = logging.getLogger(__name__)

#: HU given to pixels marked as padding (Pixel Padding Value / Range Limit, PS3.3 C.7.5.1.1.2):
#: air, what the scanner would have measured outside the patient.
PADDING_HU = -1024

_INT16_MIN, _INT16_MAX = int(np.iinfo(np.int16).min), int(np.iinfo(np.int16).max)


def _padding_range(ds: Dataset) -> tuple[int, int] | None:
    """The stored-value range marked as padding, or None (PS3.3 C.7.5.1.1.2)."""
    if "PixelPaddingValue" not in ds:
        return None

    def signed(value: int) -> int:
        # "US or SS": pydicom may give the unsigned reading of a signed value.
        bits = int(ds.get("BitsAllocated", 16))
        if int(ds.get("PixelRepresentation", 0)) == 1 and value >= 2 ** (bits - 1):
            return value - 2**bits
        return value

    first = signed(int(ds.PixelPaddingValue))
    limit = ds.get("PixelPaddingRangeLimit")
    last = first if limit is None else signed(int(limit))
    return (min(first, last), max(first, last))


def stored_to_hu(
    stored: npt.NDArray[np.integer],
    slope: float,
    intercept: float,
    padding: tuple[int, int] | None = None,
    *,
    out: npt.NDArray[np.int16] | None = None,
) -> tuple[npt.NDArray[np.int16], int]:
    """Apply the Modality LUT (PS3.3 C.11.1.1.2: HU = stored x slope + intercept).

    Parameters
    ----------
    stored
        Stored values of one frame (signed or unsigned as decoded).
    slope, intercept
        Rescale Slope and Rescale Intercept.
    padding
        Inclusive range of stored values that are padding; set to :data:`PADDING_HU`.
    out
        Where to write the HU (same shape); may be the memory ``stored`` lies in.

    Returns
    -------
    tuple
        HU rounded to the nearest integer and clipped to int16 (``out`` where given), and the
        number of clipped voxels.
    """
    if slope == 1.0 and float(intercept).is_integer() and padding is None and stored.size:
        low, high = int(stored.min()) + int(intercept), int(stored.max()) + int(intercept)
        if _INT16_MIN <= low and high <= _INT16_MAX:
            # The common case, without temporaries: integer offset that stays in int16.
            if out is None:
                out = np.empty(stored.shape, dtype=np.int16)
            np.add(stored, np.int32(intercept), out=out, casting="unsafe")
            return out, 0
    if slope == 1.0 and float(intercept).is_integer():
        hu = stored.astype(np.int32) + int(intercept)
    else:
        hu = np.rint(stored.astype(np.float64) * slope + intercept)
    if padding is not None:
        hu[(stored >= padding[0]) & (stored <= padding[1])] = PADDING_HU
    clipped = int(np.count_nonzero((hu < _INT16_MIN) | (hu > _INT16_MAX)))
    if clipped:
        hu = np.clip(hu, _INT16_MIN, _INT16_MAX)
    if out is None:
        return hu.astype(np.int16), clipped
    out[...] = hu
    return out, clipped


#: Native little-endian syntaxes whose 16-bit pixel data numpy reads without a decoder.
_NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _native_frames(ds: Dataset, ts: UID) -> npt.NDArray[np.integer] | None:
    """Frames of uncompressed 16-bit little-endian pixel data, or None for other encodings.

    A fast path around pydicom's decoder for the most common CT encoding; pydicom handles
    everything else (and whatever this path does not recognise).
    """
    if ts not in _NATIVE_LITTLE_ENDIAN or int(ds.get("BitsAllocated", 0)) != 16:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    data = ds.PixelData
    if len(data) < rows * columns * frames * 2:
        return None
    dtype = np.dtype("<i2" if int(ds.get("PixelRepresentation", 0)) == 1 else "<u2")
    stored = np.frombuffer(data, dtype=dtype, count=rows * columns * frames)
    bits_stored = int(ds.get("BitsStored", 16))
    if bits_stored < 16:
        # Bits above BitsStored are not part of the value (PS3.5 8.1.1): mask or sign-extend.
        shift = 16 - bits_stored
        stored = (
            (stored << shift) >> shift if dtype.kind == "i" else stored & ((1 << bits_stored) - 1)
        )
    return stored.reshape(frames, rows, columns)


def _read_native_into(
    ds: Dataset, path: str, ts: UID, target: npt.NDArray[np.int16]
) -> npt.NDArray[np.integer] | None:
    """Read one uncompressed 16-bit little-endian frame straight into ``target``'s memory.

    Returns the stored values as a view of ``target`` (no copy, so that uncompressed series
    cost one read per file), or None where the general path must decode the file: another
    encoding, several frames, pixel data already read or shorter than one frame.
    """
    if (
        ts not in _NATIVE_LITTLE_ENDIAN
        or sys.byteorder != "little"
        or int(ds.get("BitsAllocated", 0)) != 16
        or int(ds.get("NumberOfFrames", 1) or 1) != 1
        or not target.flags.c_contiguous
    ):
        return None
    element = ds.get_item("PixelData", keep_deferred=True)
    if not isinstance(element, RawDataElement) or element.value is not None:
        return None  # not a deferred read (already read, or read in full with the header)
    if element.value_tell is None or element.length < target.nbytes:
        return None
    with open(path, "rb") as fh:
        fh.seek(element.value_tell)
        if fh.readinto(target.data.cast("B")) != target.nbytes:
            return None
    stored = target.view(np.int16 if int(ds.get("PixelRepresentation", 0)) == 1 else np.uint16)
    bits_stored = int(ds.get("BitsStored", 16))
    if bits_stored < 16:
        # Bits above BitsStored are not part of the value (PS3.5 8.1.1): mask or sign-extend.
        shift = 16 - bits_stored
        if stored.dtype.kind == "i":
            np.left_shift(stored, shift, out=stored)
            np.right_shift(stored, shift, out=stored)
        else:
            np.bitwise_and(stored, (1 << bits_stored) - 1, out=stored)
    return stored


#: What pydicom and its decoder plugins raise on pixel data they cannot decode.
#: (AttributeError: pydicom's "Missing required element" where a damaged header lost one.)
_DECODE_ERRORS = (
    NotImplementedError,
    RuntimeError,
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    AttributeError,
)


def _is_decoder_failure(err: BaseException) -> bool:
    """True for a decoder's refusal of damaged or unsupported data.

    Decoders written in Rust (pylibjpeg-rle) panic on some damaged streams with pyo3's
    ``PanicException``, which derives from BaseException and is not importable by name.
    """
    return isinstance(err, _DECODE_ERRORS) or type(err).__name__ == "PanicException"


def _decode_file(
    items: Sequence[tuple[int, SliceRecord]],
    out: npt.NDArray[np.int16],
    series_uid: str,
) -> int:
    """Decode one file into ``out`` at the given slice indices; returns clipped voxels."""
    record = items[0][1]
    f = record.file
    ds = f.dataset
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise UnsupportedSeriesError(
            f"{f.path} is a {photometric} image with {samples} samples per pixel; CT volumes "
            "are greyscale (PS3.3 C.8.2.1.1.2). This is not a CT volume.",
            series_instance_uid=series_uid,
            reason="not-ct-volume",
        )
    ts = UID(f.transfer_syntax_uid)
    if not ts.is_deflated:  # a deflated file's offsets count the inflated stream
        check_complete(ds, f.path, series_uid)
    if len(items) == 1:
        index, rec = items[0]
        stored = _read_native_into(ds, f.path, ts, out[index])
        if stored is not None:
            frame_hu = out[index]
            _, n = stored_to_hu(
                stored, rec.rescale_slope, rec.rescale_intercept, _padding_range(ds), out=frame_hu
            )
            return n
    try:
        stored = _native_frames(ds, ts)
        if stored is None:
            stored = codecs.decode_frames(ds, ts)
        if stored is None:
            stored = pydicom.pixels.pixel_array(ds, raw=True)
    except BaseException as err:
        if not _is_decoder_failure(err):
            raise
        raise UnsupportedSeriesError(
            f"the pixel data of {f.path} cannot be decoded as transfer syntax "
            f"{ts.name} ({ts}): {type(err).__name__}: {err}. Either no installed decoder "
            "supports it (re-encode the series, e.g. `gdcmconv --raw`, `dcmdjpeg`, or install "
            "a decoder plugin for it) or the file is damaged (fetch the series again).",
            series_instance_uid=series_uid,
            reason="undecodable",
        ) from err
    finally:
        # The pixel data was read on demand; do not keep it in the header.
        if "PixelData" in ds:
            del ds.PixelData
    if stored.ndim == 2:
        stored = stored[np.newaxis]
    if stored.shape[1:] != out.shape[1:]:
        raise UnsupportedSeriesError(
            f"{f.path} decodes to frames of {stored.shape[1:]} but Rows/Columns say "
            f"{out.shape[1:]}; the file is damaged.",
            series_instance_uid=series_uid,
            reason="undecodable",
        )
    padding = _padding_range(ds)
    clipped = 0
    for index, rec in items:
        frame = stored[rec.frame_index or 0]
        _, n = stored_to_hu(
            frame, rec.rescale_slope, rec.rescale_intercept, padding, out=out[index]
        )
        clipped += n
    return clipped


def decode_volume(
    records: Sequence[SliceRecord],
    series_uid: str,
    *,
    workers: int | None = None,
) -> tuple[npt.NDArray[np.int16], list[str]]:
    """Decode the slices (in slice order) into an int16 HU array of shape (z, y, x).

    Parameters
    ----------
    records
        Slices in array order.
    series_uid
        For messages.
    workers
        Threads (default: the number of CPUs).

    Returns
    -------
    tuple
        The HU array and warnings.

    Raises
    ------
    UnsupportedSeriesError
        ``undecodable`` where a file's pixel data cannot be decoded (naming the transfer
        syntax), ``not-ct-volume`` for colour images.
    """
    rows, columns = records[0].rows, records[0].columns
    out = np.empty((len(records), rows, columns), dtype=np.int16)
    by_file: dict[str, list[tuple[int, SliceRecord]]] = {}
    for index, rec in enumerate(records):
        by_file.setdefault(rec.file.path, []).append((index, rec))
    jobs = list(by_file.values())
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if n_workers == 1:
        clipped = [_decode_file(items, out, series_uid) for items in jobs]
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            clipped = list(pool.map(lambda items: _decode_file(items, out, series_uid), jobs))
    warnings = []
    if sum(clipped):
        warnings.append(
            f"{sum(clipped)} voxel(s) outside the int16 range after rescaling were clipped"
        )
    syntaxes = sorted({UID(r.file.transfer_syntax_uid).name for r in records})
    logger.debug("decoded %d slices (%s) with %d threads", len(records), syntaxes, n_workers)
    return out, warnings
