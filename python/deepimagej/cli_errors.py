"""One-line error reporting shared by every ``deepimagej`` sub-command."""

from __future__ import annotations

import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import click

from deepimagej.errors import DeepImageJError, DeepImageJWarning, first_line
from deepimagej.interrupts import command_started


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _note(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if issubclass(category, DeepImageJWarning):
        click.echo(f"note: {message}", err=True)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_SHOW_WARNING = warnings.showwarning


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DeepImageJError (and a few OS errors) into a one-line message and exit status 2.

    SIGTERM is handled like Ctrl-C: the command stops, its temporary and partial outputs are
    removed on the way out (see :func:`deepimagej.outputs.atomic_file`), exit status 130.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)
        command_started()  # Ctrl-C from here on stops the command's work (KeyboardInterrupt)
        warnings.showwarning = _note  # deepimagej's warnings as one-line notes
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt as exc:
            click.echo(
                f"error: interrupted{f' ({exc})' if str(exc) else ''}; no partial output was left", err=True
            )
            sys.exit(130)
        except DeepImageJError as exc:
            fail(first_line(exc))
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            fail(f"{exc.filename or ''}: {exc.strerror}")
        except MemoryError:
            fail("out of memory: use smaller tiles (--tile 256,256) or a smaller image")
        finally:
            warnings.showwarning = _SHOW_WARNING

    return wrapper
