"""omas-idc in Slicer's Python, installed on first use.

Slicer ships its own Python; the module installs omas-idc into it with
``slicer.util.pip_install``. torch is the one heavy dependency: where Slicer already has one
(the PyTorch extension installs a build that matches the machine's GPU), it is kept by pinning
its installed version, so that pip never replaces a CUDA build by another one.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

__all__ = ["REQUIREMENT", "ensure_installed", "install_requirements", "installed_version"]

#: What is installed where omas-idc is missing (a checkout's path or a release's name).
REQUIREMENT = "omas-idc"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_requirements(requirement: str = REQUIREMENT) -> list[str]:
    """The ``pip install`` arguments for omas-idc, keeping an installed torch.

    Returns
    -------
    list of str
        ``[requirement]`` plus ``torch==<installed>`` where torch is already installed.
    """
    args = [requirement]
    torch = installed_version("torch")
    if torch is not None:
        args.append(f"torch=={torch}")
    return args


def ensure_installed(
    pip_install: Callable[[list[str]], object], requirement: str = REQUIREMENT
) -> bool:
    """Install omas-idc with ``pip_install`` (``slicer.util.pip_install``) if missing.

    Returns
    -------
    bool
        Whether anything was installed.
    """
    if installed_version("omas-idc") is not None:
        return False
    pip_install(install_requirements(requirement))
    return True
