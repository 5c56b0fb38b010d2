"""Series read from a DICOMweb service (QIDO-RS, WADO-RS) instead of IDC's buckets.

IDC's public DICOMweb proxy, Google Cloud Healthcare DICOM stores and PACS such as Orthanc
speak the same protocol (PS3.18). A series is listed by QIDO-RS (its SOP Instance UIDs), its
instance count is checked against the selection's, and its instances are retrieved by WADO-RS
in their stored transfer syntax into the same folder layout as the bucket fetch
(:meth:`omas_idc.series_ref.SeriesRef.relative_dir`, one ``<SOPInstanceUID>.dcm`` per
instance), so that the read stage is unchanged; the same verification marker lets a re-run skip
a complete series.

A location is written ``dicomweb+https://host/path`` (or ``dicomweb+http://``); the service is
``https://host/path``. A bearer token, where the service needs one, is passed explicitly
(the CLI reads it from :data:`TOKEN_VARIABLE`); it is sent in the ``Authorization`` header only,
and never appears in a message or a log line. A refused token (HTTP 401 or 403) is a
:class:`~omas_idc.errors.ConfigurationError` (``reason="unauthorized"``): running again does
not help.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests import RequestException

from omas_idc.atomic import atomic_output
from omas_idc.errors import ConfigurationError, FetchError, OmasIdcError
from omas_idc.fetch.fetcher import FetchResult, fetch_each, fetch_with_retries
from omas_idc.fetch.verify import is_verified, verify_series, write_marker
from omas_idc.paths import inside, path_part
from omas_idc.series_ref import SeriesRef, check_ref, check_uid

__all__ = [
    "SCHEMES",
    "TOKEN_VARIABLE",
    "DicomwebService",
    "fetch_selection_dicomweb",
    "fetch_series_dicomweb",
    "is_dicomweb_url",
    "service_error",
]

logger = logging.getLogger(__name__)

#: The prefixes of a DICOMweb location on the command line.
SCHEMES = ("dicomweb+http://", "dicomweb+https://")
#: The environment variable the CLI reads a bearer token from (the library reads none).
TOKEN_VARIABLE = "OMAS_IDC_DICOMWEB_TOKEN"
#: Media type of a WADO-RS retrieval in the stored transfer syntax (no transcoding).
_STORED = (("application/dicom", "*"),)
#: Failures worth another attempt (the service or the network hiccuped).
_RETRYABLE = frozenset({"unreachable", "http-error", "invalid-dicom", "count-mismatch"})


def is_dicomweb_url(location: str | Path) -> bool:
    """Whether ``location`` names a DICOMweb service (``dicomweb+http(s)://...``)."""
    return str(location).startswith(SCHEMES)


@dataclass(frozen=True)
class DicomwebService:
    """A DICOMweb service: its base URL (``https://host/dicom-web``) and bearer token.

    Attributes
    ----------
    url
        The service's base URL (QIDO-RS, WADO-RS and STOW-RS below it).
    token
        A bearer token sent in the ``Authorization`` header, or ``None``. Never shown.
    timeout_s
        Limit of one HTTP request, in seconds.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0

    @classmethod
    def parse(cls, location: str, token: str | None = None) -> DicomwebService:
        """The service of a ``dicomweb+http(s)://host/path`` location.

        Raises
        ------
        ConfigurationError
            ``reason="dicomweb-url"`` for another scheme, a URL without a host, or one with
            credentials in it (pass a token instead).
        """
        if not is_dicomweb_url(location):
            raise ConfigurationError(
                f"{location!r} is not a DICOMweb location: write dicomweb+https://host/path "
                "(or dicomweb+http:// for a server on this machine)",
                reason="dicomweb-url",
            )
        url = location[len("dicomweb+") :].rstrip("/")
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigurationError(
                f"the DICOMweb location {location!r} names no host: write "
                "dicomweb+https://host/path",
                reason="dicomweb-url",
            )
        if parts.username or parts.password:
            shown = urlunsplit(parts._replace(netloc=parts.hostname + _port(parts.port)))
            raise ConfigurationError(
                f"the DICOMweb location for {shown} carries credentials in the URL: remove "
                f"them and give a bearer token in {TOKEN_VARIABLE} instead",
                reason="dicomweb-url",
            )
        return cls(url=url, token=token or None)

    @property
    def location(self) -> str:
        """The location as the command line writes it (``dicomweb+https://...``)."""
        return f"dicomweb+{self.url}"

    def client(self) -> Any:
        """A ``dicomweb_client.DICOMwebClient`` for the service (one per thread)."""
        from dicomweb_client.api import DICOMwebClient

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return DICOMwebClient(self.url, headers=headers, timeout=self.timeout_s)

    def check(self, error: type[OmasIdcError] = FetchError) -> None:
        """Ask the service one small QIDO-RS question (a study, any) before any work.

        Raises
        ------
        ConfigurationError
            ``reason="unauthorized"`` where the service refuses the token (or its absence).
        OmasIdcError
            Of class ``error``, ``reason="unreachable"`` or ``"http-error"``.
        """
        try:
            self.client().search_for_studies(limit=1, fields=["StudyInstanceUID"])
        except RequestException as err:
            raise service_error(err, self, "a study search (QIDO-RS)", error=error) from err


def _port(port: int | None) -> str:
    return "" if port is None else f":{port}"


def service_error(
    err: RequestException,
    service: DicomwebService,
    what: str,
    *,
    error: type[OmasIdcError] = FetchError,
    series_instance_uid: str | None = None,
) -> OmasIdcError:
    """The classified error of a failed request to ``service``.

    The message names the service's URL and what was asked, never the token. A refused token
    is a :class:`ConfigurationError` (``"unauthorized"``); an unreachable service
    ``"unreachable"``, another HTTP error ``"http-error"`` (``"not-found"`` for 404), both of
    class ``error``.
    """
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        status = err.response.status_code
        if status in (401, 403):
            return ConfigurationError(
                f"the DICOMweb service {service.url} refused {what} (HTTP {status}): the "
                f"bearer token (environment variable {TOKEN_VARIABLE}) is "
                f"{'missing' if not service.token else 'not accepted'}. Set it to a valid "
                "token for this service (for Google Cloud: `gcloud auth print-access-token`).",
                series_instance_uid=series_instance_uid,
                reason="unauthorized",
            )
        return error(
            f"the DICOMweb service {service.url} answered {what} with HTTP {status} "
            f"({err.response.reason}). Check the URL, or run again if the service was busy.",
            series_instance_uid=series_instance_uid,
            reason="not-found" if status == 404 else "http-error",
        )
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return error(
            f"the DICOMweb service {service.url} could not be reached for {what} "
            f"({type(err).__name__}). Check the URL and the network, then run again.",
            series_instance_uid=series_instance_uid,
            reason="unreachable",
        )
    return error(
        f"the request to the DICOMweb service {service.url} for {what} failed "
        f"({type(err).__name__}). Check the URL, then run again.",
        series_instance_uid=series_instance_uid,
        reason="http-error",
    )


def _instance_uids(client: Any, service: DicomwebService, ref: SeriesRef) -> set[str]:
    """The SOP Instance UIDs QIDO-RS lists for the series (checked as UIDs)."""
    uid = ref.series_instance_uid
    try:
        found = client.search_for_instances(
            study_instance_uid=ref.study_instance_uid,
            series_instance_uid=uid,
            fields=["SOPInstanceUID"],
            get_remaining=True,
        )
    except RequestException as err:
        raise service_error(err, service, "the instance search", series_instance_uid=uid) from err
    uids = set()
    for item in found:
        value = item.get("00080018", {}).get("Value", [None])[0]
        uids.add(check_uid(value, f"a SOPInstanceUID QIDO-RS lists for series {uid}"))
    return uids


def _fetch_once(ref: SeriesRef, out_dir: Path, service: DicomwebService, check: bool) -> int:
    import pydicom

    uid = ref.series_instance_uid
    client = service.client()
    expected = _instance_uids(client, service, ref)
    if not expected:
        raise FetchError(
            f"the DICOMweb service {service.url} holds no instances of series {uid} (study "
            f"{ref.study_instance_uid}). Check the location and the selection.",
            series_instance_uid=uid,
            reason="not-found",
        )
    if len(expected) != ref.instance_count:
        raise FetchError(
            f"QIDO-RS at {service.url} lists {len(expected)} instances of the series but the "
            f"selection says {ref.instance_count}: the service holds another version of the "
            "series. Select again, or fetch from the service the selection was made from.",
            series_instance_uid=uid,
            reason="count-mismatch",
        )
    series_dir = out_dir / ref.relative_dir()
    series_dir.mkdir(parents=True, exist_ok=True)
    names = {f"{path_part(sop)}.dcm" for sop in expected}
    for path in series_dir.iterdir():  # leftovers of an interrupted fetch, never followed
        if path.is_file() and not path.is_symlink() and path.name not in names:
            inside(series_dir, path, what="the leftover file", error=FetchError).unlink()
    received = 0
    try:
        for dataset in client.iter_series(ref.study_instance_uid, uid, media_types=_STORED):
            sop = str(dataset.get("SOPInstanceUID", ""))
            if sop not in expected or str(dataset.get("SeriesInstanceUID", "")) != uid:
                raise FetchError(
                    f"WADO-RS at {service.url} returned instance {sop!r}, which QIDO-RS does "
                    "not list for this series. Run again; report a persistent mismatch to the "
                    "service's operators.",
                    series_instance_uid=uid,
                    reason="invalid-dicom",
                )
            target = inside(
                series_dir,
                series_dir / f"{path_part(sop)}.dcm",
                what="the instance file",
                error=FetchError,
                series_instance_uid=uid,
            )
            with atomic_output(target) as stream:
                pydicom.dcmwrite(stream, dataset, enforce_file_format=True)
            received += 1
    except RequestException as err:
        raise service_error(
            err, service, "the series retrieval (WADO-RS)", series_instance_uid=uid
        ) from err
    local = {p.name: p.stat().st_size for p in series_dir.iterdir() if p.is_file()}
    files = verify_series(ref, series_dir, local, check_contents=check)
    if set(files) != names:
        raise FetchError(
            f"WADO-RS at {service.url} returned {received} of the {len(expected)} instances "
            "QIDO-RS lists for the series. Run again to fetch the rest.",
            series_instance_uid=uid,
            reason="count-mismatch",
        )
    write_marker(out_dir, ref, files)
    return received


def fetch_series_dicomweb(
    ref: SeriesRef,
    out_dir: Path,
    service: DicomwebService,
    *,
    attempts: int = 3,
    backoff_s: float = 2.0,
    check_contents: bool = True,
    where: str = "",
) -> FetchResult:
    """Fetch and verify one series from a DICOMweb service, retrying transient failures.

    Parameters
    ----------
    ref
        The series; its identifiers are checked first (:func:`omas_idc.series_ref.check_ref`).
    out_dir
        The download root (the bucket fetch's layout).
    service
        The DICOMweb service.
    attempts, backoff_s
        Tries, and the wait before the second (doubled before each further one).
    check_contents
        Parse every file (a complete DICOM file of the series) before the series counts.
    where
        Where ``ref`` comes from, for the message of a bad identifier.

    Returns
    -------
    FetchResult
        ``status="cached"`` where the series verified earlier (nothing is requested).

    Raises
    ------
    FetchError
        ``reason`` ``"not-found"``, ``"count-mismatch"`` (QIDO-RS, the selection and the
        files disagree), ``"unreachable"``, ``"http-error"``, ``"invalid-dicom"``.
    ConfigurationError
        ``reason="unauthorized"``: the service refused the token.
    """
    check_ref(ref, where)
    if is_verified(out_dir, ref):
        return FetchResult(ref.series_instance_uid, "cached", out_dir / ref.relative_dir())
    return fetch_with_retries(
        ref,
        out_dir,
        lambda: _fetch_once(ref, out_dir, service, check_contents),
        attempts=attempts,
        backoff_s=backoff_s,
        retryable=_RETRYABLE,
    )


def fetch_selection_dicomweb(
    refs: Sequence[SeriesRef],
    out_dir: Path,
    service: DicomwebService,
    *,
    workers: int = 4,
    attempts: int = 3,
    backoff_s: float = 2.0,
    on_result: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch many series from a DICOMweb service in parallel; a failing series is recorded.

    Returns
    -------
    list of FetchResult
        One per series, in the order of ``refs``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    return fetch_each(
        refs,
        out_dir,
        lambda ref, where: fetch_series_dicomweb(
            ref, out_dir, service, attempts=attempts, backoff_s=backoff_s, where=where
        ),
        workers=workers,
        attempts=attempts,
        on_result=on_result,
    )
