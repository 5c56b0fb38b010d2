"""Model weights in a local cache: download (resumable, checksummed), unzip, verify.

Layout of the cache (what :func:`omas_idc.engine.model.load_model` reads)::

    {cache}/{model}/{variant}/{Dataset...}/{trainer}__{plans}__{config}/plans.json ...
    {cache}/{model}/{variant}/{Dataset...}/{trainer}__{plans}__{config}/.omas-idc-weights.json

A download goes to ``{cache}/{model}/{variant}/.downloads/{name}.zip.part``, resumes with an
HTTP ``Range`` request where a previous attempt was cut off, is checked against the card's
sha256, unzipped into a temporary folder and renamed into place: a killed download never leaves
a half-written result folder. The manifest ``.omas-idc-weights.json`` records the archive's
sha256 and that of every extracted file, so :func:`verify_weights` can recompute them later.

Cards may carry ``sha256: null`` (not measured yet): such weights are *unverified* and are only
downloaded when the caller accepts that explicitly.

A card is data from outside (a file someone wrote, possibly served with the weights): its names
are checked on load (:mod:`omas_idc.engine.card`), and here again every folder the cache
creates, replaces or deletes must lie inside the cache (:func:`omas_idc.paths.inside`), and
every archive member inside the folder it is unzipped into.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from omas_idc.engine.card import ModelCard, TaskCard, WeightFile
from omas_idc.errors import ModelError
from omas_idc.paths import inside, path_part

__all__ = [
    "MANIFEST_NAME",
    "TaskWeights",
    "VerifyResult",
    "default_cache_dir",
    "download_file",
    "download_weights",
    "list_weights",
    "sha256_of",
    "verify_weights",
]

logger = logging.getLogger(__name__)

#: Written into each result folder installed by :func:`download_weights`.
MANIFEST_NAME = ".omas-idc-weights.json"
_CHUNK = 1 << 20

#: Called with (bytes done, bytes total or None) while downloading.
ProgressCallback = Callable[[int, int | None], None]


def default_cache_dir() -> Path:
    """The user's cache folder for model weights (platformdirs), e.g. ``~/.cache/omas-idc/models``.

    Looked up when called, never at import; the CLI's ``--cache-dir`` overrides it.
    """
    import platformdirs

    return Path(platformdirs.user_cache_dir("omas-idc")) / "models"


@dataclass(frozen=True)
class TaskWeights:
    """Where one task's weights come from and where they go.

    Attributes
    ----------
    task
        The task's card.
    weight
        URL and expected sha256 (``None``: unverified).
    folder
        The result folder in the cache (holds ``plans.json`` once installed).
    installed
        Whether ``folder/plans.json`` exists.
    """

    task: TaskCard
    weight: WeightFile
    folder: Path
    installed: bool

    @property
    def verified(self) -> bool:
        """Whether the card gives a sha256 to check the archive against."""
        return self.weight.sha256 is not None


def _in_cache(cache_dir: str | Path, path: Path, what: str, *, follow_links: bool = True) -> Path:
    """``path`` if it lies inside the cache; a ``ModelError`` (``"unsafe-path"``) otherwise.

    ``follow_links=False`` for paths that are only looked at (a result folder linked into the
    cache from another disk is fine to read); every path written or deleted follows links.
    """
    return inside(Path(cache_dir), path, what=what, error=ModelError, follow_links=follow_links)


def _variant_root(card: ModelCard, variant: str, cache_dir: str | Path) -> Path:
    root = Path(cache_dir) / card.name / variant
    what = f"the cache folder of model card {card.name!r} (variant {variant!r})"
    return _in_cache(cache_dir, root, what, follow_links=False)


def list_weights(
    card: ModelCard,
    cache_dir: str | Path,
    *,
    variant: str | None = None,
    tasks: Sequence[str] | None = None,
) -> list[TaskWeights]:
    """The weights of a model's tasks (and their dependencies) and whether they are installed."""
    chosen = card.variant(variant)
    root = _variant_root(card, chosen, cache_dir)
    out = []
    for task in card.resolve_tasks(list(tasks) if tasks else None):
        if chosen not in task.weights:
            raise ModelError(
                f"model card {card.name!r} gives no weights of task {task.id} for variant "
                f"{chosen!r}; variants with weights: {sorted(task.weights)}"
            )
        what = f"the result folder of task {task.id}"
        folder = _in_cache(cache_dir, root / task.result_folder, what, follow_links=False)
        out.append(
            TaskWeights(
                task=task,
                weight=task.weights[chosen],
                folder=folder,
                installed=(folder / "plans.json").is_file(),
            )
        )
    return out


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _offline_error(url: str, err: object, manual: str) -> ModelError:
    return ModelError(
        f"the weights could not be downloaded from {url} ({err}). Check the internet connection "
        f"(or proxy), or place them manually: {manual}",
        reason="download",
    )


def download_file(
    url: str,
    destination: str | Path,
    *,
    sha256: str | None,
    retries: int = 3,
    timeout_s: float = 60.0,
    progress: ProgressCallback | None = None,
    manual_hint: str = "",
) -> Path:
    """Download ``url`` to ``destination``: resumable, checksummed, renamed into place.

    Bytes go to ``destination + ".part"``; where that file exists (an earlier attempt was cut
    off) the download continues with an HTTP ``Range`` request, and a connection that breaks
    off is resumed up to ``retries`` times. The file is renamed to ``destination`` only after
    its sha256 matched (where one is given).

    Raises
    ------
    ModelError
        Where the server cannot be reached (offline, DNS failure, refused connection), answers
        with an HTTP error, or the checksum differs (the partial file is then removed).
    """
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    hint = manual_hint or f"download {url} yourself and save it as {target}"
    attempts = 0
    while True:
        done = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "omas-idc"})
        if done:
            request.add_header("Range", f"bytes={done}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                status = response.status
                length = response.headers.get("Content-Length")
                if done and status != 206:
                    logger.info("%s: server ignored the Range request; starting over", url)
                    done = 0
                total = int(length) + done if length is not None else None
                with open(part, "ab" if done else "wb") as handle:
                    while block := response.read(_CHUNK):
                        handle.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
                if total is not None and done < total:
                    raise ConnectionError(f"connection closed after {done} of {total} bytes")
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and done:  # the part file is already complete
                break
            raise ModelError(
                f"the weights could not be downloaded from {url}: HTTP {err.code} {err.reason}. "
                f"Place them manually: {hint}",
                reason="download",
            ) from err
        except urllib.error.URLError as err:
            raise _offline_error(url, err.reason, hint) from err
        except (http.client.HTTPException, OSError) as err:
            attempts += 1
            if attempts > retries:
                raise _offline_error(url, err, hint) from err
            logger.warning("download of %s interrupted (%s); resuming", url, err)
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise ModelError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. The file "
                "was removed; the download was corrupted or the file on the server changed. "
                "Retry, and report the model card if it persists.",
                reason="checksum",
            )
    os.replace(part, target)
    return target


def _safe_members(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    """The archive's members, refused as a whole if any could land outside the target folder.

    Zip slip: a member named ``../x``, ``/etc/x`` or ``C:\\x`` (absolute on either system)
    would be written outside the folder it is extracted into.
    """
    members = archive.infolist()
    for member in members:
        name = member.filename
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or PureWindowsPath(name).drive:
            raise ModelError(
                f"{where}: refusing archive member {name!r} (path escape): it would be written "
                "outside the folder the archive is unzipped into. The archive is not a model "
                "download; report it to whoever serves it.",
                reason="archive",
            )
    return members


def _install_archive(
    archive_path: Path, task: TaskCard, folder: Path, archive_sha: str, cache_dir: Path
) -> None:
    """Unzip into a temporary folder next to the cache entry and rename the result in place.

    ``folder`` (replaced where it exists) must lie inside ``cache_dir``.
    """
    _in_cache(cache_dir, folder, f"the result folder of task {task.id}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".unzip-") as tmp:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(tmp, members=_safe_members(archive, str(archive_path)))
        found = sorted(Path(tmp).rglob("plans.json"))
        wanted = [p.parent for p in found if p.parent.name == folder.name] or [
            p.parent for p in found
        ]
        if len(wanted) != 1:
            raise ModelError(
                f"{archive_path} should hold one nnU-Net result folder {task.result_folder} "
                f"(with plans.json); found {[str(p.relative_to(tmp)) for p in wanted]}",
                reason="archive",
            )
        source = wanted[0]
        files = {
            str(p.relative_to(source)): sha256_of(p)
            for p in sorted(source.rglob("*"))
            if p.is_file()
        }
        manifest = {"archive_sha256": archive_sha, "task": task.id, "files": files}
        (source / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        _in_cache(cache_dir, folder, f"the result folder of task {task.id}")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(source, folder)


def download_weights(
    card: ModelCard,
    cache_dir: str | Path,
    *,
    variant: str | None = None,
    tasks: Sequence[str] | None = None,
    accept_unverified: bool = False,
    force: bool = False,
    progress: Callable[[TaskWeights, int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> list[TaskWeights]:
    """Download and install a model's weights into the cache.

    Parameters
    ----------
    card
        The model.
    cache_dir
        The cache root (see :func:`default_cache_dir`).
    variant
        Licence variant (the card's default where ``None``).
    tasks
        Task ids (their dependencies are added); all where ``None``.
    accept_unverified
        Download weights whose card gives no sha256. Without it they are refused before any
        byte is fetched.
    force
        Download again even where the result folder is installed.
    progress
        Called with (task weights, bytes done, bytes total or None).
    timeout_s
        Socket timeout of each request.

    Returns
    -------
    list of TaskWeights
        The tasks' weights, all installed.
    """
    entries = list_weights(card, cache_dir, variant=variant, tasks=tasks)
    unverified = [e.task.id for e in entries if not e.verified and (force or not e.installed)]
    if unverified and not accept_unverified:
        raise ModelError(
            f"the {card.name} model card gives no sha256 for tasks {unverified}: their download "
            "cannot be verified. Pass accept_unverified=True (--accept-unverified) to download "
            "them anyway.",
            reason="unverified",
        )
    chosen = card.variant(variant)
    root = _variant_root(card, chosen, cache_dir)
    out = []
    for entry in entries:
        if entry.installed and not force:
            logger.info(
                "%s task %s already installed at %s", card.name, entry.task.id, entry.folder
            )
            out.append(entry)
            continue
        # The URL's last part names the download: encoded, so that it stays one file name.
        name = path_part(entry.weight.url.rstrip("/").rsplit("/", 1)[-1], f"{entry.task.id}.zip")
        archive = _in_cache(cache_dir, root / ".downloads" / name, "the download")
        hint = (
            f"download {entry.weight.url} and unzip it into {root} so that "
            f"{entry.folder / 'plans.json'} exists"
        )
        callback = None if progress is None else _bind(progress, entry)
        download_file(
            entry.weight.url,
            archive,
            sha256=entry.weight.sha256,
            progress=callback,
            timeout_s=timeout_s,
            manual_hint=hint,
        )
        archive_sha = entry.weight.sha256 or sha256_of(archive)
        try:
            _install_archive(archive, entry.task, entry.folder, archive_sha, Path(cache_dir))
        finally:
            archive.unlink(missing_ok=True)
        logger.info("installed %s task %s at %s", card.name, entry.task.id, entry.folder)
        out.append(
            TaskWeights(task=entry.task, weight=entry.weight, folder=entry.folder, installed=True)
        )
    return out


def _bind(
    progress: Callable[[TaskWeights, int, int | None], None], entry: TaskWeights
) -> ProgressCallback:
    def callback(done: int, total: int | None) -> None:
        progress(entry, done, total)

    return callback


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_weights` found for one task."""

    task: str
    folder: Path
    ok: bool
    problems: tuple[str, ...]


def verify_weights(
    card: ModelCard,
    cache_dir: str | Path,
    *,
    variant: str | None = None,
    tasks: Sequence[str] | None = None,
) -> list[VerifyResult]:
    """Recompute the checksums of the installed weights against their manifests and the card.

    A task fails where it is not installed, has no manifest (placed by hand), a file is
    missing, changed or added, or the archive's sha256 recorded at download differs from the
    card's.
    """
    results = []
    for entry in list_weights(card, cache_dir, variant=variant, tasks=tasks):
        problems: list[str] = []
        manifest_path = entry.folder / MANIFEST_NAME
        if not entry.installed:
            problems.append("not installed")
        elif not manifest_path.is_file():
            problems.append(f"no {MANIFEST_NAME} (placed by hand?): nothing to verify against")
        else:
            manifest = json.loads(manifest_path.read_text())
            expected: dict[str, str] = manifest.get("files", {})
            for rel, digest in expected.items():
                path = entry.folder / rel
                if not path.is_file():
                    problems.append(f"{rel}: missing")
                elif sha256_of(path) != digest:
                    problems.append(f"{rel}: sha256 differs from the download")
            extra = {
                str(p.relative_to(entry.folder))
                for p in entry.folder.rglob("*")
                if p.is_file() and p.name != MANIFEST_NAME
            } - set(expected)
            problems.extend(f"{rel}: not part of the download" for rel in sorted(extra))
            card_sha = entry.weight.sha256
            if card_sha is not None and manifest.get("archive_sha256") != card_sha.lower():
                problems.append("archive sha256 differs from the model card's")
        results.append(
            VerifyResult(
                task=entry.task.id, folder=entry.folder, ok=not problems, problems=tuple(problems)
            )
        )
    return results
