"""Networks built from plans.json by dynamic-network-architectures, from an allowlist.

nnU-Net locates the network class and its building blocks by the dotted names in the plans
(``pydoc.locate``), which would import anything a plans file names. We accept only the U-Nets
CADS and TotalSegmentator use and building blocks from ``torch.nn``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from omas_idc.engine.checkpoint import Checkpoint
from omas_idc.engine.modelfolder import ModelConfiguration
from omas_idc.errors import ModelError

__all__ = ["build_network", "load_weights"]

logger = logging.getLogger(__name__)

_NETWORKS = ("PlainConvUNet", "ResidualEncoderUNet")


def _network_class(name: str) -> type[nn.Module]:
    short = name.rsplit(".", 1)[-1]
    if short not in _NETWORKS:
        raise ModelError(
            f"network class {name!r} is not supported; omas-idc runs {list(_NETWORKS)}"
        )
    from dynamic_network_architectures.architectures import unet

    cls: type[nn.Module] = getattr(unet, short)
    return cls


def _torch_nn_object(dotted: str) -> Any:
    """A class named by its dotted path, only from ``torch.nn``."""
    if not dotted.startswith("torch.nn."):
        raise ModelError(f"plans name a building block outside torch.nn: {dotted!r}")
    obj: Any = torch
    for part in dotted.split(".")[1:]:
        if not hasattr(obj, part):
            raise ModelError(f"plans name an unknown building block {dotted!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ModelError(f"plans building block {dotted!r} is not a torch.nn module class")
    return obj


def build_network(configuration: ModelConfiguration, num_classes: int) -> nn.Module:
    """The network of a configuration, without deep supervision, in eval mode.

    Parameters
    ----------
    configuration
        A parsed plans configuration.
    num_classes
        Number of outputs (labels plus background).
    """
    cls = _network_class(configuration.network_class)
    kwargs: dict[str, Any] = dict(configuration.network_kwargs)
    for key in configuration.network_kwargs_import:
        if kwargs.get(key) is not None:
            kwargs[key] = _torch_nn_object(str(kwargs[key]))
    kwargs["deep_supervision"] = False
    try:
        network = cls(input_channels=1, num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise ModelError(f"cannot build {configuration.network_class} from plans: {err}") from err
    return network.eval()


def load_weights(network: nn.Module, checkpoint: Checkpoint | Mapping[str, torch.Tensor]) -> None:
    """Load a checkpoint's state dict into ``network``, strictly (every key must match)."""
    state = checkpoint.network_weights if isinstance(checkpoint, Checkpoint) else checkpoint
    try:
        network.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        raise ModelError(f"checkpoint does not fit the network built from plans: {err}") from err
