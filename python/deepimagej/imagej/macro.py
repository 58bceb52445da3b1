"""Run ImageJ macros without a user: errors become :class:`MacroError`, dialogs never block.

A macro runs in ImageJ batch mode (``Interpreter.runBatchMacro``) in a worker thread. While it
runs, the Java ``DialogGuard`` closes any dialog that opens (nobody can click under Xvfb): a
"Macro Error" dialog is read for its message and line number; any other dialog
(``waitForUser``, ``getNumber``, a command run without its options...) aborts the macro with
a message naming the dialog. A configurable timeout aborts a macro that runs too long.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepimagej.errors import DeepImageJError, MacroError

DEFAULT_TIMEOUT_S = 600.0

#: macro functions that wait for a user, with what to do instead
INTERACTIVE_FUNCTIONS = {
    "waitForUser": "remove it, or guard it with if (!is(\"Batch Mode\"))",
    "getNumber": "replace it with a fixed value or an argument (getArgument())",
    "getString": "replace it with a fixed value or an argument (getArgument())",
    "getBoolean": "replace it with a fixed value",
    "Dialog.show": "give the values in the macro or as arguments",
    "showMessageWithCancel": "remove it",
    "File.openDialog": "pass the file path instead",
    "getDirectory": "pass the folder path instead",
    "getDir": "pass the folder path instead",
}
_KNOWN_DIRS = {"home", "startup", "imagej", "plugins", "macros", "luts", "image", "file", "temp", "current",
               "default", "cwd", "downloads", "preferences"}


@dataclass
class MacroResult:
    """What a macro left behind.

    Attributes:
        image: the macro's active image at the end (numpy or xarray), or ``None``.
        imageplus: the same as an ``ij.ImagePlus`` (for further macros), or ``None``.
        log: what the macro printed to ImageJ's Log window.
        results: ImageJ's Results table as a pandas ``DataFrame`` (empty when none).
        axes: axis letters of ``image``.
    """

    image: Any = None
    imageplus: Any = None
    log: str = ""
    results: Any = None
    axes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def strip_comments(text: str) -> str:
    """The macro without ``//`` and ``/* */`` comments (strings kept, line count kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = ""
        elif ch in "\"'":
            quote = ch
            out.append(ch)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            block = text[i : n if j < 0 else j + 2]
            out.append("\n" * block.count("\n"))
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _mask_strings(code: str) -> str:
    """``code`` with the inside of string literals replaced by ``_`` (same length)."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', lambda m: m.group(0)[0] + "_" * (len(m.group(0)) - 2) + m.group(0)[-1], code)


def interactive_calls(text: str) -> list[tuple[int, str, str]]:
    """Calls in a macro that open a dialog and wait for a user: ``(line, function, advice)``."""
    found = []
    code = strip_comments(text)
    masked = _mask_strings(code)
    for lineno, (line, mline) in enumerate(zip(code.splitlines(), masked.splitlines()), start=1):
        for func, advice in INTERACTIVE_FUNCTIONS.items():
            for m in re.finditer(rf"(?<![\w.]){re.escape(func)}\s*\(", mline):
                if func in ("getDirectory", "getDir"):
                    arg = re.match(r"\s*[\"']([^\"']*)", line[m.end():])
                    word = (arg.group(1) if arg else "").lower()
                    if word in _KNOWN_DIRS or word.startswith(("imagej", "image")):
                        continue
                found.append((lineno, func, advice))
    return found


def read_macro(text_or_file: str | Path) -> tuple[str, str | None]:
    """``(macro text, file name or None)`` for a macro given as text or as a file path."""
    if isinstance(text_or_file, Path) or (
        isinstance(text_or_file, str) and "\n" not in text_or_file and text_or_file.rstrip().endswith((".ijm", ".txt", ".py"))
    ):
        path = Path(text_or_file)
        if not path.is_file():
            raise MacroError(f"macro file not found: {path}")
        return path.read_text(encoding="utf-8", errors="replace"), path.name
    return str(text_or_file), None


MESSAGE_DIALOG = "ij.gui.MessageDialog"
#: titles of ImageJ's own macro error dialogs ("No Image" is used for "There are no images open")
ERROR_DIALOG_TITLES = ("Macro Error", "No Image")


def _dialogs(java_rows) -> list[tuple[str, str, str]]:
    return [(str(r[0]), str(r[1]), str(r[2])) for r in java_rows]


_ERROR_LINE = re.compile(r"^(?P<msg>.*?)\s+in line (?P<line>\d+)", re.DOTALL)


def _parse_macro_error(text: str) -> tuple[str, int | None]:
    """Message and line from the text of ImageJ's "Macro Error" dialog."""
    first = text.partition("\n")[0]
    m = _ERROR_LINE.match(first)
    if m:
        return m.group("msg").strip(), int(m.group("line"))
    m = re.search(r"in line (\d+)", text)
    return first.strip() or "macro error", int(m.group(1)) if m else None


class MacroRunner:
    """Runs macros in the started ImageJ, one at a time, never blocking on a dialog."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        from jpype import JClass

        self.timeout = timeout
        self._Interpreter = JClass("ij.macro.Interpreter")
        self._Guard = JClass("deepimagej.ij.DialogGuard")
        self._Guard.install()
        self._lock = threading.RLock()
        #: error raised by a DeepImageJ command inside the running macro (see commands)
        self.pending_error: DeepImageJError | None = None
        self._depth = 0
        #: texts of message dialogs (showMessage) the last macro opened; they go to the result's log
        self.messages: list[str] = []

    @property
    def running(self) -> bool:
        return self._depth > 0

    def run(self, text: str, image=None, args: Mapping[str, Any] | None = None, *, name: str | None = None,
            timeout: float | None = None):
        """Run macro ``text`` on ``image`` (an ImagePlus, made current) and return the active image.

        Inside a running macro (a DeepImageJ command running a bundle's macros) the macro
        runs nested, in the same batch-mode session, like ``runMacro`` in ImageJ.

        Raises:
            MacroError: the macro failed, opened a dialog, or ran past the timeout.
        """
        if self.running:
            return self._run_nested(text, image, args, name)
        with self._lock:
            return self._run_top(text, image, args, name, self.timeout if timeout is None else timeout)

    def _run_top(self, text: str, image, args: Mapping[str, Any] | None, name: str | None, timeout: float | None):
        interp = self._Interpreter()
        outcome: dict[str, Any] = {}
        self.pending_error = None

        def target() -> None:
            try:
                outcome["image"] = interp.runBatchMacro(_with_args(text, args), image)
            except Exception as exc:  # noqa: BLE001 - Java exceptions (Macro canceled, plugin errors)
                outcome["exception"] = exc

        self._Guard.arm(interp)
        self._depth += 1
        worker = threading.Thread(target=target, name="deepimagej-macro", daemon=True)
        forced: list[tuple[str, str, str]] = []
        try:
            worker.start()
            forced = self._wait(worker, timeout)
            timed_out = worker.is_alive() and not forced
            if timed_out:  # close first: a waitForUser dialog is cancelled before the abort wakes it
                self._Guard.closeAll()
            if forced or timed_out:
                self._Interpreter.abort(interp)
                worker.join(10)
        finally:
            self._depth -= 1
            dialogs = _dialogs(self._Guard.disarm()) + forced
        self._raise_for(text, name, dialogs, outcome, interp, timed_out, timeout)
        self.messages = [f"[{t}] {b}" for t, b, c in dialogs if c == MESSAGE_DIALOG]
        return outcome.get("image")

    def _wait(self, worker: threading.Thread, timeout: float | None) -> list[tuple[str, str, str]]:
        """Wait for the macro thread; close a blocking dialog the event guard missed.

        Polls twice a second: a modal dialog (or ImageJ's non-modal "Action Required" window)
        still showing one second after it was first seen waits for a user who is not there; it
        is closed and returned, and the macro is stopped. This backs up the AWT event guard,
        whose WINDOW_OPENED event can be missed, so that no macro waits until its timeout.
        """
        from jpype import JClass

        window_class, dialog_class = JClass("java.awt.Window"), JClass("java.awt.Dialog")
        wait_class = JClass("ij.gui.WaitForUserDialog")
        deadline = None if timeout is None else time.monotonic() + timeout
        first_seen: dict[int, float] = {}
        while worker.is_alive():
            worker.join(0.5)
            now = time.monotonic()
            if not worker.is_alive() or (deadline is not None and now > deadline):
                return []
            showing = [w for w in window_class.getWindows()
                       if isinstance(w, dialog_class) and w.isShowing() and (w.isModal() or isinstance(w, wait_class))]
            for w in showing:
                first_seen.setdefault(int(w.hashCode()), now)
            if any(now - first_seen[int(w.hashCode())] >= 1.0 for w in showing):
                return _dialogs(self._Guard.closeAll())
        return []

    def _run_nested(self, text: str, image, args: Mapping[str, Any] | None, name: str | None):
        from jpype import JClass

        if image is not None:
            image.show()  # batch mode: becomes the current image
        interp = self._Interpreter()
        outcome: dict[str, Any] = {}
        self._Guard.drain()
        try:
            interp.run(_with_args(text, args), "")  # with an argument: a "called" macro, batch mode kept
        except Exception as exc:  # noqa: BLE001
            outcome["exception"] = exc
        dialogs = _dialogs(self._Guard.drain())
        self._raise_for(text, name, dialogs, outcome, interp, False, None, nested=True)
        return JClass("ij.WindowManager").getCurrentImage()

    def _raise_for(self, text: str, name: str | None, dialogs: list[tuple[str, str, str]], outcome: dict[str, Any],
                   interp, timed_out: bool, timeout: float | None, nested: bool = False) -> None:
        if self.pending_error is not None and not nested:
            err, self.pending_error = self.pending_error, None
            raise err
        for title, body, _cls in dialogs:
            if title in ERROR_DIALOG_TITLES:
                msg, line = _parse_macro_error(body)
                raise MacroError(msg, line, name)
        exc = outcome.get("exception")
        canceled = exc is not None and "Macro canceled" in f"{exc}{exc!r}"
        messages = [(t, b) for t, b, c in dialogs if c == MESSAGE_DIALOG]
        if canceled and messages:  # exit("why") or a command's error message ended the macro
            title, body = messages[-1]
            line = next((ln for ln, ln_text in enumerate(strip_comments(text).splitlines(), 1)
                         if re.search(r"(?<![\w.])exit\s*\(\s*[\"']", ln_text)), None)
            raise MacroError(f"{title}: {body}" if title not in ("Macro", "Message") else body,
                             line if title == "Macro" else None, name)
        for title, body, _cls in (d for d in dialogs if d[2] != MESSAGE_DIALOG and d[0] not in ERROR_DIALOG_TITLES):
            hint = "; ".join(f"line {ln} calls {fn}(): {adv}" for ln, fn, adv in interactive_calls(text))
            what = f"'{title}'" + (f" ({body.splitlines()[0]})" if body else "")
            raise MacroError(
                f"the macro opened a dialog {what} that waits for a user, which cannot happen here "
                f"(no screen); it was closed and the macro stopped. "
                + (hint or "Give the command its options, e.g. run(\"Gaussian Blur...\", \"sigma=2\")."),
                None,
                name,
            )
        if timed_out:
            raise MacroError(f"the macro did not finish within {timeout:g} s and was stopped "
                             "(raise the timeout: run_macro(..., timeout=SECONDS))", None, name)
        message = None
        try:
            message = interp.getErrorMessage()
        except Exception:  # noqa: BLE001
            message = None
        if exc is not None:
            text_exc = str(exc)
            if "Macro canceled" in text_exc or "Macro canceled" in repr(exc):
                if nested:  # propagate cancellation to the outer macro
                    raise MacroError(str(message) if message else "macro canceled", None, name)
                return  # exit() / exit("...") : a normal end of a macro
            first = text_exc.splitlines()[0] if text_exc else type(exc).__name__
            raise MacroError(f"ImageJ failed: {first}", None, name)


def _with_args(text: str, args: Mapping[str, Any] | None) -> str:
    """Define ``args`` as macro variables, all on the first line so that line numbers stay those of the file."""
    if not args:
        return text
    parts = []
    for key, value in args.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise MacroError(f"macro argument name {key!r} is not a valid macro variable name")
        if isinstance(value, bool):
            parts.append(f"{key} = {'true' if value else 'false'};")
        elif isinstance(value, (int, float)):
            parts.append(f"{key} = {value!r};")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{key} = "{escaped}";')
    return " ".join(parts) + " " + text


def results_table():
    """ImageJ's "Results" table as a pandas DataFrame."""
    import numpy as np
    import pandas as pd
    from jpype import JClass

    rt = JClass("ij.measure.ResultsTable").getResultsTable()
    if rt is None or int(rt.size()) == 0:
        return pd.DataFrame()
    columns: dict[str, Any] = {}
    n = int(rt.size())
    if rt.getLabel(0) is not None:
        columns["Label"] = [str(rt.getLabel(i)) for i in range(n)]
    for heading in rt.getHeadings():
        heading = str(heading)
        if heading in ("Label", " ") or not heading:
            continue
        idx = int(rt.getColumnIndex(heading))
        if idx < 0:
            continue
        values = np.asarray(rt.getColumnAsDoubles(idx), dtype=np.float64)
        if np.isnan(values).all():
            strings = [str(rt.getStringValue(heading, i)) for i in range(n)]
            columns[heading] = strings
        else:
            columns[heading] = values
    return pd.DataFrame(columns)
