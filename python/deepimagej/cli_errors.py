"""One-line error reporting shared by every ``deepimagej`` sub-command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from deepimagej.errors import DeepImageJError, first_line


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DeepImageJError (and a few OS errors) into a one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeepImageJError as exc:
            fail(first_line(exc))
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            fail(f"{exc.filename or ''}: {exc.strerror}")
        except MemoryError:
            fail("out of memory: use smaller tiles (--tile 256,256) or a smaller image")

    return wrapper
