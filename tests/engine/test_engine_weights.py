"""Weights: download from a loopback HTTP server (Range resume, sha256, unzip), verify, refuse."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from omas_idc.engine.card import ModelCard, load_card
from omas_idc.engine.weights import (
    MANIFEST_NAME,
    download_weights,
    list_weights,
    verify_weights,
)
from omas_idc.errors import ModelError

torch = pytest.importorskip("torch")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with Range support; cuts the first full response off halfway."""

    files: ClassVar[dict[str, bytes]] = {}
    ranges: ClassVar[list[str | None]] = []
    cut_first: ClassVar[bool] = False

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        start = int(header.split("=")[1].split("-")[0]) if header else 0
        if start >= len(body):
            self.send_error(416)
            return
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if type(self).cut_first and not header:
            type(self).cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A zip of a synthetic nnU-Net result folder, laid out like the published weights."""
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    root = tmp_path_factory.mktemp("model")
    folder = make_model_folder(root, SyntheticModel(patch_size=(16, 16, 16)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


@pytest.fixture
def server(archive: bytes) -> Iterator[str]:
    _Handler.files = {"/w/Dataset901_Synthetic.zip": archive}
    _Handler.ranges = []
    _Handler.cut_first = False
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _card(base: str, sha256: str | None) -> ModelCard:
    return load_card(
        {
            "name": "synthetic",
            "recipe": "nnunet-native",
            "variants": {"open": {"licence": "CC0-1.0"}},
            "tasks": [
                {
                    "id": "901",
                    "dataset": "Dataset901_Synthetic",
                    "trainer": "nnUNetTrainer",
                    "plans": "nnUNetPlans",
                    "weights": {
                        "open": {"url": f"{base}/w/Dataset901_Synthetic.zip", "sha256": sha256}
                    },
                }
            ],
        }
    )


def test_interrupted_download_resumes_installs_and_loads(
    server: str, archive: bytes, tmp_path: Path
) -> None:
    from omas_idc.engine.model import load_model

    card = _card(server, hashlib.sha256(archive).hexdigest())
    _Handler.cut_first = True
    (entry,) = download_weights(card, tmp_path)
    assert _Handler.ranges == [None, f"bytes={len(archive) // 2}-"]
    assert entry.installed
    assert (entry.folder / "plans.json").is_file()
    assert not list((tmp_path / "synthetic" / "open").glob(".*/*"))  # no leftovers
    model = load_model(card, weights_dir=tmp_path)
    assert model.tasks[0].folder.num_classes == 3
    assert all(r.ok for r in verify_weights(card, tmp_path))

    # an installed task is not fetched again
    download_weights(card, tmp_path)
    assert len(_Handler.ranges) == 2

    # a changed file in the cache is found
    checkpoint = entry.folder / "fold_all" / "checkpoint_final.pth"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    (result,) = verify_weights(card, tmp_path)
    assert not result.ok
    assert any("checkpoint_final.pth: sha256 differs" in p for p in result.problems)


def test_checksum_mismatch_is_refused_and_nothing_installed(server: str, tmp_path: Path) -> None:
    card = _card(server, "0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        download_weights(card, tmp_path)
    assert not list_weights(card, tmp_path)[0].installed
    assert not list(tmp_path.rglob("*.zip*"))


def test_unverified_weights_need_explicit_acceptance(server: str, tmp_path: Path) -> None:
    card = _card(server, None)
    with pytest.raises(ModelError, match="accept-unverified"):
        download_weights(card, tmp_path)
    assert _Handler.ranges == []  # refused before any byte was fetched
    (entry,) = download_weights(card, tmp_path, accept_unverified=True)
    assert entry.installed
    manifest = (entry.folder / MANIFEST_NAME).read_text()
    assert "archive_sha256" in manifest


def test_offline_gives_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    card = _card(f"http://127.0.0.1:{port}", "0" * 64)
    with pytest.raises(ModelError, match="could not be downloaded") as info:
        download_weights(card, tmp_path)
    assert "place them manually" in str(info.value)
    assert "plans.json" in str(info.value)
    dns = _card("http://weights.invalid", "0" * 64)
    with pytest.raises(ModelError, match="could not be downloaded"):
        download_weights(dns, tmp_path, timeout_s=5)


def test_builtin_cards_have_weights_for_every_variant(tmp_path: Path) -> None:
    for name in ("cads", "totalseg"):
        card = load_card(name)
        for variant in card.variants:
            entries = list_weights(card, tmp_path, variant=variant)
            assert len(entries) == len(card.tasks)
            assert all(e.weight.url.startswith("https://") for e in entries)
            assert not any(e.installed for e in entries)


def test_models_cli_download_verify_list(server: str, archive: bytes, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from omas_idc.cli import app

    card_file = tmp_path / "synthetic.json"
    card = _card(server, None)
    task = card.tasks[0]
    card_file.write_text(
        json.dumps(
            {
                "name": card.name,
                "recipe": card.recipe,
                "variants": {"open": {"licence": "CC0-1.0"}},
                "tasks": [
                    {
                        "id": task.id,
                        "dataset": task.dataset,
                        "trainer": task.trainer,
                        "plans": task.plans,
                        "weights": {"open": {"url": task.weights["open"].url, "sha256": None}},
                    }
                ],
            }
        )
    )
    cache = tmp_path / "cache"
    runner = CliRunner()
    refused = runner.invoke(app, ["models", "download", str(card_file), "--cache-dir", str(cache)])
    assert refused.exit_code == 2
    assert "--accept-unverified" in refused.output
    done = runner.invoke(
        app,
        ["models", "download", str(card_file), "--cache-dir", str(cache), "--accept-unverified"],
    )
    assert done.exit_code == 0, done.output
    assert (cache / "synthetic" / "open" / task.result_folder / "plans.json").is_file()
    verified = runner.invoke(app, ["models", "verify", str(card_file), "--cache-dir", str(cache)])
    assert verified.exit_code == 0, verified.output
    assert "task 901: ok" in verified.output
    (cache / "synthetic" / "open" / task.result_folder / "dataset.json").write_text("{}")
    broken = runner.invoke(app, ["models", "verify", str(card_file), "--cache-dir", str(cache)])
    assert broken.exit_code == 1
    assert "dataset.json: sha256 differs" in broken.output
    listed = runner.invoke(app, ["models", "list", "--cache-dir", str(cache)], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "cads" in listed.output
    assert "totalseg" in listed.output


# Hostile cards and archives: nothing outside the cache may change. ``victim`` is a folder
# beside the cache laid out like a cache entry, which a card that climbs out would replace.

_RESULT = "Dataset901_Synthetic/nnUNetTrainer__nnUNetPlans__3d_fullres"


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    for folder in (victim / _RESULT, victim / "open" / _RESULT):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("precious")
    return victim


def _outside(tmp_path: Path, cache: Path) -> dict[str, bytes]:
    """Every file below ``tmp_path`` except the cache's, with its content."""
    return {
        str(p.relative_to(tmp_path)): p.read_bytes()
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and not p.is_relative_to(cache)
    }


def _card_data(base: str) -> dict[str, Any]:
    return {
        "name": "synthetic",
        "recipe": "nnunet-native",
        "variants": {"open": {"licence": "CC0-1.0"}},
        "tasks": [
            {
                "id": "901",
                "dataset": "Dataset901_Synthetic",
                "trainer": "nnUNetTrainer",
                "plans": "nnUNetPlans",
                "weights": {"open": {"url": f"{base}/w/Dataset901_Synthetic.zip", "sha256": None}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("dataset", "../../../victim", "ConfigurationError"),
        ("configuration", "x/../../../../../victim", "ConfigurationError"),
        ("dataset", "/tmp/victim", "ConfigurationError"),
        # Not path fields of a task: the cache's own check refuses them.
        ("name", "../victim", "ModelError"),
        # Markup-like text in the message is printed as it is, not interpreted by rich.
        ("name", "../[/b]/../victim", "ModelError"),
        ("variant", "../../victim", "ModelError"),
    ],
)
def test_models_download_refuses_a_card_that_climbs_out_of_the_cache(
    server: str, tmp_path: Path, field: str, value: str, error: str
) -> None:
    import json

    from typer.testing import CliRunner

    from omas_idc.cli import app

    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    data = _card_data(server)
    task = data["tasks"][0]
    if field == "name":
        data["name"] = value
    elif field == "variant":
        data["variants"] = {value: {"licence": "CC0-1.0"}}
        task["weights"] = {value: task["weights"]["open"]}
    else:
        task[field] = value
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(data))
    before = _outside(tmp_path, cache)

    args = ["models", "download", str(card_file), "--cache-dir", str(cache)]
    result = CliRunner().invoke(app, [*args, "--accept-unverified", "--force"])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert error in result.output
    assert value in result.output.replace("\n", "")
    assert _Handler.ranges == []  # refused before any byte was fetched
    assert _outside(tmp_path, cache) == before
    assert (victim / "open" / _RESULT / "keep.txt").read_text() == "precious"


def test_a_card_built_in_code_cannot_climb_out_either(server: str, tmp_path: Path) -> None:
    """The cache checks its own paths, whatever the card's origin (defence in depth)."""
    import dataclasses

    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    card = _card(server, None)
    task = dataclasses.replace(card.tasks[0], dataset="../../../victim")
    hostile = dataclasses.replace(card, tasks=(task,))
    before = _outside(tmp_path, cache)

    with pytest.raises(ModelError, match="not inside") as info:
        download_weights(hostile, cache, accept_unverified=True, force=True)

    assert info.value.reason == "unsafe-path"
    assert _Handler.ranges == []
    assert _outside(tmp_path, cache) == before
    assert (victim / _RESULT / "keep.txt").read_text() == "precious"


def test_a_result_folder_linked_elsewhere_is_not_replaced(server: str, tmp_path: Path) -> None:
    """``--force`` over a link to another disk refuses instead of deleting the link's target."""
    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    link = cache / "synthetic" / "open" / "Dataset901_Synthetic"
    link.parent.mkdir(parents=True)
    link.symlink_to(victim / "Dataset901_Synthetic", target_is_directory=True)
    card = _card(server, None)
    before = _outside(tmp_path, cache)

    with pytest.raises(ModelError, match="not inside") as info:
        download_weights(card, cache, accept_unverified=True, force=True)

    assert info.value.reason == "unsafe-path"
    assert _outside(tmp_path, cache) == before
    # Reading through the link stays possible (weights kept on another disk).
    assert list_weights(card, cache)[0].folder == link / "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "Dataset901_Synthetic/../../evil.txt", "/tmp/omas-idc-zip-slip/evil.txt"],
)
def test_zip_slip_archive_is_refused_and_nothing_is_extracted(
    server: str, archive: bytes, tmp_path: Path, member: str
) -> None:
    """An archive member that would land outside the unzip folder refuses the whole archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, zipfile.ZipFile(io.BytesIO(archive)) as good:
        for info in good.infolist():
            zf.writestr(info, good.read(info))
        zf.writestr(zipfile.ZipInfo(member), b"owned")
    _Handler.files["/w/Dataset901_Synthetic.zip"] = buffer.getvalue()
    cache = tmp_path / "cache"
    card = _card(server, None)
    before = _outside(tmp_path, cache)

    with pytest.raises(ModelError, match="path escape") as info:
        download_weights(card, cache, accept_unverified=True)

    assert member in str(info.value)
    assert info.value.reason == "archive"
    assert _outside(tmp_path, cache) == before
    assert not Path("/tmp/omas-idc-zip-slip").exists()
    assert not list(cache.rglob("evil.txt"))
    assert not list_weights(card, cache)[0].installed
    assert not list(cache.rglob("*.zip*"))  # the refused archive is not kept
