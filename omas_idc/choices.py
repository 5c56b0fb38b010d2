"""One look-up of a value among fixed choices, with a "did you mean" suggestion.

Every place that accepts a name from a user or a file (a model, a task, a layout, a machine
type, a configuration key) checks it here, so that all of them say the same thing the same
way: what was given, what is allowed, and the closest allowed value.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from typing import TypeVar

from omas_idc.errors import ConfigurationError, OmasIdcError

__all__ = ["StrEnum", "choose", "did_you_mean", "suggestion"]

_E = TypeVar("_E", bound="StrEnum")


def suggestion(value: str, choices: Iterable[object], n: int = 1) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` (an empty string if none is close)."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=n)
    if not close:
        return ""
    return f" Did you mean {', '.join(map(repr, close))}?"


def did_you_mean(
    value: str,
    choices: Iterable[object],
    what: str,
    error: type[OmasIdcError] = ConfigurationError,
) -> OmasIdcError:
    """The error for an unknown ``what`` named ``value``, listing the choices and the closest.

    Parameters
    ----------
    value
        What was given.
    choices
        What is allowed.
    what
        The kind of value, as the message names it (``"model"``, ``"layout"``).
    error
        The error class to build (a :class:`ConfigurationError` unless the caller's stage has
        its own, e.g. :class:`~omas_idc.errors.SelectionError`).
    """
    options = sorted(str(c) for c in choices)
    return error(f"unknown {what} {value!r}; choose one of {options}.{suggestion(value, options)}")


def choose(
    value: str,
    choices: Iterable[object],
    what: str,
    error: type[OmasIdcError] = ConfigurationError,
) -> str:
    """``value`` if it is one of ``choices``; else raise :func:`did_you_mean`'s error."""
    options = [str(c) for c in choices]
    if str(value) not in options:
        raise did_you_mean(str(value), options, what, error)
    return str(value)


class StrEnum(str, enum.Enum):
    """A fixed set of string choices (layouts, devices, verdicts) that also compares equal to
    its plain string value, as highdicom's enumerated values do (``Layout("binary") ==
    "binary"``); Python 3.10 has no :class:`enum.StrEnum`.
    """

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(
        cls: type[_E], value: str | _E, what: str, error: type[OmasIdcError] = ConfigurationError
    ) -> _E:
        """The member named by ``value``, or the "did you mean" error of :func:`choose`."""
        if isinstance(value, cls):
            return value
        return cls(choose(str(value), [m.value for m in cls], what, error))
