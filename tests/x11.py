"""Driving ImageJ's windows on a test's private X server with xdotool.

That X server has no window manager: Java alone decides where the keyboard focus goes, so the
helpers only wait for windows, send keys and click, and say which windows were open when a step
did not happen.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable


def xdotool(display: str, *args: str) -> str:
    """Run ``xdotool ARGS`` on ``display``; its standard output."""
    return subprocess.run(
        ["xdotool", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(os.environ, DISPLAY=display),
    ).stdout


def window(display: str, title: str) -> str | None:
    """The id of a window titled exactly ``title``, or None."""
    ids = xdotool(display, "search", "--name", f"^{title}$").split()
    return ids[0] if ids else None


def wait_window(display: str, title: str, timeout: float, check: Callable[[], None] = lambda: None) -> str:
    """Wait for a window titled ``title``; ``check`` raises when the program behind it has died."""
    deadline = time.monotonic() + timeout
    while (found := window(display, title)) is None:
        check()
        if time.monotonic() > deadline:
            raise AssertionError(f"no window {title!r} after {timeout:.0f} s; windows: {titles(display)}")
        time.sleep(0.1)
    return found


def geometry(display: str, window_id: str) -> tuple[int, int]:
    """Width and height of a window."""
    size = xdotool(display, "getwindowgeometry", window_id).split("Geometry:")[1].split()[0]
    width, height = size.split("x")
    return int(width), int(height)


def titles(display: str) -> list[str]:
    """The titles of the named windows on ``display`` (for failure messages)."""
    ids = xdotool(display, "search", "--name", ".").split()
    names = {xdotool(display, "getwindowname", i).strip() for i in ids}
    return sorted(n for n in names if n and not n.startswith(("sun-awt-", "FocusProxy", "Content window")))


def press_ok(display: str, title: str, attempts: int = 4, wait: float = 5.0) -> None:
    """OK in the ImageJ dialog ``title``: Return, then a click on its OK button while it stays open.

    A key pressed just as the dialog is mapped may be lost before Java gives the dialog the
    focus; the OK button (ImageJ 1.53t's GenericDialog: the last of its buttons, at the lower right)
    takes a click whatever has the focus. The input focus itself is never set from outside: with no
    window manager Java keeps it on a child of the dialog, and ``xdotool windowfocus`` on the dialog
    takes the keys away from Java.
    """
    time.sleep(0.5)  # let Java lay the dialog out
    for attempt in range(attempts):
        dialog = window(display, title)
        if dialog is None:
            return
        if attempt == 0:
            xdotool(display, "key", "Return")
        else:
            width, height = geometry(display, dialog)
            xdotool(display, "mousemove", "--window", dialog, str(width - 37), str(height - 22), "click", "1")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if window(display, title) is None:
                return
            time.sleep(0.1)
    raise AssertionError(
        f"the dialog {title!r} is still open after {attempts} tries; windows: {titles(display)}"
    )
