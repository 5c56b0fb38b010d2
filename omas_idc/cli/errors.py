"""How every ``omas-idc`` command reports an error: one classified line, the right exit code.

The whole app is wrapped once (:func:`classify_app`, called in :mod:`omas_idc.cli` after
every command has registered), so a command needs no ``try`` of its own to report errors:

- :class:`~omas_idc.errors.OmasIdcError` prints ``ErrorClass (reason): series UID: message``
  (the message says what went wrong, why and how to fix it).
- ``OSError``, ``EOFError`` and ``ValueError`` that no stage classified (a missing, unreadable
  or malformed file or folder named on the command line) print ``InputError (FileNotFoundError):
  ...`` with the original message and a hint.
- Anything else is a bug in omas-idc: one line naming the exception and asking to report it,
  exit 1. With ``-v`` the traceback is shown instead, for the report.

Exit codes (README "Exit codes", the contract of ``omas-idc run`` and Cloud Batch's lifecycle
policy): 2 for a configuration or input error that a retry cannot fix (every
``OmasIdcError`` but the retryable ones, and unclassified ``OSError``/``ValueError``);
1 for :data:`RETRYABLE_ERRORS` (network, memory, an output store that failed to accept a
file) and ``ConnectionError``/``TimeoutError``, and for bugs.

Messages are printed verbatim: never as rich markup, so a path or a UID list with brackets
(``[red]``, ``['1.2.3']``) is shown as it is and cannot break the output.

Commands that handle an error themselves (to print a table first, or exit with another code)
use :func:`print_error` and :func:`exit_code_for`, or :func:`fail`::

    except OmasIdcError as err:
        raise fail(err) from err

and never put an error's text into a markup string.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from omas_idc.errors import FetchError, InferenceError, OmasIdcError, PublishError

__all__ = [
    "BUG_EXIT",
    "CONFIGURATION_EXIT",
    "RETRYABLE_ERRORS",
    "RETRY_EXIT",
    "classify_app",
    "classify_errors",
    "describe",
    "exit_code_for",
    "fail",
    "is_bug",
    "print_error",
    "set_verbosity",
]

logger = logging.getLogger(__name__)

#: A configuration or input error: running again unchanged cannot help.
CONFIGURATION_EXIT = 2
#: A failure that a retry may fix (network, memory, a store that refused a write).
RETRY_EXIT = 1
#: An unexpected error: a bug in omas-idc (also Python's own status for a traceback).
BUG_EXIT = 1

#: omas-idc errors that a retry may fix: a command that raises them exits 1.
RETRYABLE_ERRORS: tuple[type[OmasIdcError], ...] = (FetchError, InferenceError, PublishError)

#: Errors from reading or writing the files and folders a user named, not classified by a
#: stage: input errors (exit 2), not bugs.
INPUT_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError)

_HINTS: dict[type[BaseException], str] = {
    FileNotFoundError: "check the path",
    IsADirectoryError: "give a file, not a folder",
    NotADirectoryError: "give a folder, not a file",
    PermissionError: "check the file's permissions",
    EOFError: "the file is truncated: copy or download it again",
}

_F = TypeVar("_F", bound=Callable[..., Any])

_err_console = Console(stderr=True)


def is_bug(err: BaseException) -> bool:
    """Whether ``err`` is unexpected: neither an omas-idc error nor an input error."""
    return not isinstance(err, (OmasIdcError, *INPUT_ERRORS))


def exit_code_for(err: BaseException) -> int:
    """The exit code of a command that ends with ``err`` (see the module's docstring)."""
    if isinstance(err, OmasIdcError):
        return RETRY_EXIT if isinstance(err, RETRYABLE_ERRORS) else CONFIGURATION_EXIT
    if isinstance(err, (ConnectionError, TimeoutError)):
        return RETRY_EXIT
    if isinstance(err, INPUT_ERRORS):
        return CONFIGURATION_EXIT
    return BUG_EXIT


def describe(err: BaseException) -> str:
    """One line that classifies ``err``: ``ErrorClass (reason): series UID: message``."""
    if isinstance(err, OmasIdcError):
        return f"{err.error_class} ({err.reason}): {err}"
    name = type(err).__name__
    text = str(err) or "(no message)"
    if not is_bug(err):
        hint = next((h for kind, h in _HINTS.items() if isinstance(err, kind)), "")
        if not hint:
            hint = "check the files and folders given on the command line"
        return f"InputError ({name}): {text}; {hint}"
    return (
        f"internal error ({name}): {text}. This is a bug in omas-idc: please report it with the "
        "command line and the output of the same command with -v (which shows the traceback)."
    )


def print_error(err: BaseException, console: Console | None = None) -> None:
    """Print :func:`describe` of ``err`` to ``console`` (stderr), never read as markup."""
    line = describe(err)
    head, sep, rest = line.partition(": ")
    text = Text(head, style="red") + Text(sep + rest)
    (console or _err_console).print(text, markup=False, highlight=False, soft_wrap=True)


def fail(err: BaseException, console: Console | None = None) -> typer.Exit:
    """Print ``err`` (:func:`print_error`) and return the ``typer.Exit`` to raise."""
    print_error(err, console)
    return typer.Exit(exit_code_for(err))


_verbosity = 0


def set_verbosity(count: int) -> None:
    """Record the ``-v`` count of this invocation (the app's root callback calls it)."""
    global _verbosity
    _verbosity = count


def classify_errors(command: _F) -> _F:
    """Wrap a command callback so that it reports errors as the module's docstring says.

    typer's own exceptions (``typer.Exit``, ``typer.BadParameter``, ``typer.Abort``) pass
    through.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as err:
            if is_bug(err) and _verbosity > 0:
                raise  # the traceback, for the bug report
            logger.debug("traceback of the error below", exc_info=err)
            raise fail(err) from err

    return wrapper  # type: ignore[return-value]


def classify_app(app: typer.Typer) -> None:
    """Wrap every command registered on ``app`` and its sub-apps in :func:`classify_errors`.

    Call it once, after every command has registered. Commands wrapped already are left as
    they are, so calling it twice is harmless.
    """
    for info in app.registered_commands:
        callback = info.callback
        if callback is not None and not getattr(callback, "_omas_classified", False):
            wrapped = classify_errors(callback)
            wrapped._omas_classified = True  # type: ignore[attr-defined]
            info.callback = wrapped
    for group in app.registered_groups:
        if group.typer_instance is not None:
            classify_app(group.typer_instance)
