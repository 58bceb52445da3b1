"""Run ImageJ macros without a user: every failure is a :class:`MacroError`, nothing waits forever.

A macro runs in ImageJ batch mode (``Interpreter.runBatchMacro``) on a macro thread named as
ImageJ names its own (``..._Macro$``), so that ImageJ aborts it on an error as it would in
Fiji. Before it runs, the text is checked for the slips ImageJ runs through silently (an
unterminated string, unbalanced brackets). While it runs, the Java ``DialogGuard`` closes any
dialog that opens (nobody can click under Xvfb): a "Macro Error" dialog is read for its
message and line; an error message (``IJ.error``) or ImageJ's "Exception" window becomes the
error; any other dialog (``waitForUser``, ``getNumber``, a command run without its options...)
stops the macro with a message naming it. A syntax error ImageJ notices only at the end of the
file is read from the interpreter. A timeout stops a macro that runs too long, naming the line.

Macros from a bundle run *confined* (:func:`run_bundle_macro`): checked before they run
(:mod:`deepimagej.audit.macros`) and kept at run time, by the Java ``Confinement`` guard, to
the bundle folder, a temporary work folder and their images.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepimagej.audit.macro_language import calls, syntax_errors, tokenize
from deepimagej.audit.macros import REFUSED_COMMANDS, audit_macro_file, macro_location
from deepimagej.errors import DeepImageJError, MacroError, UntrustedBundleError

if TYPE_CHECKING:
    import pandas as pd

#: default limit, in seconds, for a macro run from the command line or Python (0 or None: none);
#: time spent inside DeepImageJ commands (a model running) does not count
DEFAULT_TIMEOUT_S = 300.0
#: default limit for each pre- or post-processing macro of a bundle
BUNDLE_MACRO_TIMEOUT_S = 120.0
#: how often the runner looks at a running macro (timeouts are kept to this precision)
POLL_S = 0.1
#: how long a stopped macro gets to end before its error is reported (its thread may still finish a Java call)
ABORT_GRACE_S = 1.0
#: how long a new macro waits for a stopped one still finishing a Java call (ImageJ runs one macro at a time)
BUSY_WAIT_S = 60.0

#: macro functions that wait for a user, with what to do instead
INTERACTIVE_FUNCTIONS = {
    "waitForUser": 'remove it, or guard it with if (!is("Batch Mode"))',
    "getNumber": "replace it with a fixed value or an argument (getArgument())",
    "getString": "replace it with a fixed value or an argument (getArgument())",
    "getBoolean": "replace it with a fixed value",
    "Dialog.show": "give the values in the macro or as arguments",
    "showMessageWithCancel": "remove it",
    "File.openDialog": "pass the file path instead",
    "getDirectory": "pass the folder path instead",
    "getDir": "pass the folder path instead",
}
_KNOWN_DIRS = {
    "home",
    "startup",
    "imagej",
    "plugins",
    "macros",
    "luts",
    "image",
    "file",
    "temp",
    "current",
    "default",
    "cwd",
    "downloads",
    "preferences",
}

MESSAGE_DIALOG = "ij.gui.MessageDialog"
EXCEPTION_WINDOW = "Exception"
#: titles of ImageJ's own macro error dialogs ("No Image" is used for "There are no images open")
ERROR_DIALOG_TITLES = ("Macro Error", "No Image")
#: what a confined macro was refused, by the Java guard's kind of refusal
_REFUSALS = {
    "read": "read {target}",
    "write": "write {target}",
    "delete": "delete {target}",
    "execute": "run the program {target}",
    "network": "connect to {target} (network access)",
    "clipboard": "use the system clipboard",
    "property": "set the Java property {target}",
    "exit": "exit Java (and ImageJ)",
    "security": "replace Java's security manager",
    "native": "load the native library {target}",
    "control": "turn off {target}",
    "command": 'run the ImageJ command "{target}"',
}


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


@dataclass(frozen=True)
class ConfinedTo:
    """Where a confined macro may go (see :func:`run_bundle_macro`).

    Attributes:
        name: the macro, in messages.
        read_write: folders it may read and write (the bundle folder, its work folder).
        read_only: files or folders it may read (its input images).
        work: its work folder: ImageJ's default folder while it runs (``getDirectory("current")``).
    """

    name: str
    read_write: tuple[Path, ...]
    read_only: tuple[Path, ...] = ()
    work: Path | None = None


def interactive_calls(text: str) -> list[tuple[int, str, str]]:
    """Calls in a macro that open a dialog and wait for a user: ``(line, function, advice)``."""
    found = []
    tokens, _ = tokenize(text)
    for call in calls(tokens):
        advice = INTERACTIVE_FUNCTIONS.get(call.name)
        if advice is None:
            continue
        if call.name in ("getDirectory", "getDir"):
            word = (call.literal(0) or "").lower()
            if word in _KNOWN_DIRS or word.startswith(("imagej", "image")):
                continue
        found.append((call.line, call.name, advice))
    return found


def read_macro(text_or_file: str | Path) -> tuple[str, str | None]:
    """``(macro text, file name or None)`` for a macro given as text or as a file path."""
    if isinstance(text_or_file, Path) or (
        isinstance(text_or_file, str)
        and "\n" not in text_or_file
        and text_or_file.rstrip().endswith((".ijm", ".txt", ".py"))
    ):
        path = Path(text_or_file)
        if not path.is_file():
            raise MacroError(f"macro file not found: {path}")
        return path.read_text(encoding="utf-8", errors="replace"), path.name
    return str(text_or_file), None


def check_syntax(text: str, name: str | None = None) -> None:
    """Raise :class:`MacroError` for a slip ImageJ would run through (see :func:`syntax_errors`)."""
    errors = syntax_errors(text)
    if errors:
        line, message = errors[0]
        raise MacroError(message, line, name)


def _rows(java_rows, thread_id: int | None = None) -> list[tuple[str, str, str, int | None]]:
    """Guard rows ``{title, text, class, line, thread}`` as ``(title, text, class, line)`` (line ``None`` when unknown).

    With ``thread_id``, rows of windows another (known) thread showed are dropped: a macro thread
    given up after a timeout may still open a dialog while the next macro runs.
    """
    out = []
    for r in java_rows:
        line, shown_by = int(str(r[3])), int(str(r[4]))
        if thread_id is not None and shown_by >= 0 and shown_by != thread_id:
            continue
        out.append((str(r[0]), str(r[1]), str(r[2]), line if line > 0 else None))
    return out


_ERROR_LINE = re.compile(r"^(?P<msg>.*?)\s+in line (?P<line>\d+)", re.DOTALL)
_JAVA_EXCEPTION = re.compile(r"^(?:[\w$]+\.)*(?P<cls>\w*(?:Exception|Error))(?::\s*(?P<msg>.*))?$")


def _parse_macro_error(text: str) -> tuple[str, int | None]:
    """Message and line from the text of ImageJ's "Macro Error" dialog."""
    first = text.partition("\n")[0]
    m = _ERROR_LINE.match(first)
    if m:
        return m.group("msg").strip(), int(m.group("line"))
    m = re.search(r"in line (\d+)", text)
    return first.strip() or "macro error", int(m.group(1)) if m else None


def _java_exception(text: str) -> str:
    """``"NumberFormatException: For input string: ..."`` from the text of ImageJ's Exception window."""
    for line in text.splitlines():
        m = _JAVA_EXCEPTION.match(line.strip())
        if m:
            return m.group("cls") + (f": {m.group('msg').strip()}" if m.group("msg") else "")
    return text.strip().splitlines()[0] if text.strip() else "an exception"


class _MacroThread:
    """The thread macros run on: one long-lived Java-attached thread, one macro at a time."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="deepimagej-macro", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                job()
            finally:
                done.set()

    def submit(self, job: Callable[[], None]) -> threading.Event:
        done = threading.Event()
        self._jobs.put((job, done))
        return done


class _Clock:
    """Time a macro has run, less the time spent inside DeepImageJ commands (the model)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.paused = 0.0
        self.paused_since: float | None = None

    def elapsed(self) -> float:
        now = time.monotonic()
        held = (now - self.paused_since) if self.paused_since is not None else 0.0
        return now - self.start - self.paused - held

    def pause(self) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused_since is not None:
            self.paused += time.monotonic() - self.paused_since
            self.paused_since = None


@dataclass
class _NestedLimit:
    """The timeout of a macro running nested in another (a bundle's macro inside DeepImageJ Run)."""

    interp: Any
    deadline: float
    fired: bool = False
    line: int | None = None


class MacroRunner:
    """Runs macros in the started ImageJ, one at a time, never blocking on a dialog."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        from deepimagej.imagej.java_classes import jc

        self.timeout = timeout
        self._Interpreter = jc.Interpreter
        self._Guard = jc.DialogGuard
        self._Confinement = jc.Confinement
        self._Thread = jc.Thread
        self._IJ = jc.IJ
        self._WindowManager = jc.WindowManager
        self._Guard.install()
        self._lock = threading.RLock()
        self._worker = _MacroThread()
        self._last_done: threading.Event | None = None
        self._clock: _Clock | None = None
        self._nested_limits: list[_NestedLimit] = []
        self._top_interp = None
        #: error raised by a DeepImageJ command inside the running macro (see commands)
        self.pending_error: DeepImageJError | None = None
        self._depth = 0
        #: texts of message dialogs (showMessage) the last macro opened; they go to the result's log
        self.messages: list[str] = []
        self._can_confine: bool | None = None

    @property
    def running(self) -> bool:
        return self._depth > 0

    # ---------------------------------------------------------------- confinement
    @property
    def can_confine(self) -> bool:
        """Whether this Java lets the ImageJ-side guard check a confined macro's paths as it runs."""
        if self._can_confine is None:
            with (
                _stderr_silenced()
            ):  # Java 17 warns there that security managers are deprecated: not for users
                self._can_confine = bool(
                    self._Confinement.install(list(REFUSED_COMMANDS), _system_readable())
                )
        return self._can_confine

    @contextmanager
    def _confined(self, confine: ConfinedTo | None) -> Iterator[list[tuple[str, str, int | None, str]]]:
        """Confine the current thread while the block runs; the list receives what was refused."""
        refusals: list[tuple[str, str, int | None, str]] = []
        if confine is None:
            yield refusals
            return
        if not self.can_confine:
            raise MacroError(
                f"cannot confine the macro: {self._Confinement.unavailableReason()}", None, confine.name
            )
        from deepimagej.imagej.java_classes import jc

        open_dialog = jc.OpenDialog
        default_dir = open_dialog.getDefaultDirectory()
        if confine.work is not None:
            open_dialog.setDefaultDirectory(str(confine.work))
        token = self._Confinement.enter(
            confine.name, [str(p) for p in confine.read_write], [str(p) for p in confine.read_only]
        )
        try:
            yield refusals
        finally:
            for what, target, line, _name in self._Confinement.leave(token):
                number = int(str(line))
                refusals.append((str(what), str(target), number if number > 0 else None, confine.name))
            open_dialog.setDefaultDirectory(default_dir)

    def _interpreters(self) -> list[Any]:
        return [
            self._Interpreter.getInstance(),
            *(limit.interp for limit in self._nested_limits),
            self._top_interp,
        ]

    def stop_all(self) -> None:
        """Stop the running macro and any macro running nested in it, each at its next statement."""
        for interp in self._interpreters():
            self._Guard.stop(interp)

    def _stop(self, done: threading.Event, java_thread) -> None:
        """Stop the running macros (timeout, dialog): at the next statement, else by their loop flag, else the thread.

        A macro inside a long Java call ends after that call; the next macro waits for it.
        """
        self.stop_all()
        if done.wait(ABORT_GRACE_S / 2):
            return
        for interp in self._interpreters():  # while (true); : no statement starts in there
            self._Guard.shutdown(interp)
        if done.wait(ABORT_GRACE_S / 2) or java_thread is None:
            return
        self._Guard.kill(java_thread)  # for (;;); : only the thread's end stops it (Java 19 and earlier)
        done.wait(ABORT_GRACE_S)

    # ---------------------------------------------------------------- time
    @contextmanager
    def clock_paused(self) -> Iterator[None]:
        """Time inside the block (a DeepImageJ command running a model) does not count against the timeout."""
        clock = self._clock
        if clock is None:
            yield
            return
        was_paused = clock.paused_since is not None
        clock.pause()
        try:
            yield
        finally:
            if not was_paused:
                clock.resume()

    @contextmanager
    def _clock_running(self) -> Iterator[None]:
        clock = self._clock
        was_paused = clock is not None and clock.paused_since is not None
        if clock is not None:
            clock.resume()
        try:
            yield
        finally:
            if clock is not None and was_paused:
                clock.pause()

    # ---------------------------------------------------------------- running
    def run(
        self,
        text: str,
        image=None,
        args: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        timeout: float | None = None,
        confine: ConfinedTo | None = None,
    ):
        """Run macro ``text`` on ``image`` (an ImagePlus, made current) and return the active image.

        Inside a running macro (a DeepImageJ command running a bundle's macros) the macro
        runs nested, in the same batch-mode session, like ``runMacro`` in ImageJ.

        Args:
            timeout: seconds (``None``: the runner's; 0: none) of macro time, not counting time
                inside DeepImageJ commands.
            confine: run the macro confined to these folders (see :func:`run_bundle_macro`).

        Raises:
            MacroError: a syntax slip, the macro failed (message and line), opened a dialog,
                was refused something by its confinement, or ran past the timeout.
        """
        check_syntax(text, name)
        if self.running:
            return self._run_nested(text, image, args, name, confine, timeout)
        with self._lock:
            limit = self.timeout if timeout is None else timeout
            return self._run_top(text, image, args, name, limit or None, confine)

    def _run_top(
        self,
        text: str,
        image,
        args: Mapping[str, Any] | None,
        name: str | None,
        timeout: float | None,
        confine: ConfinedTo | None,
    ):
        if self._last_done is not None and not self._last_done.wait(BUSY_WAIT_S):
            raise MacroError(
                f"ImageJ is still finishing a macro stopped more than {BUSY_WAIT_S:g} s ago (a Java call "
                "that does not return); wait, or restart Python",
                None,
                name,
            )
        interp = self._Interpreter()
        outcome: dict[str, Any] = {}
        self.pending_error = None
        refusals: list[tuple[str, str, int | None, str]] = []

        def job() -> None:
            java_thread = self._Thread.currentThread()
            # "Run$_": ImageJ gives macro options to such threads only; "Macro$": it ends their macros on errors
            java_thread.setName("Run$_deepimagej_Macro$")
            outcome["thread"] = int(java_thread.getId())
            outcome["java_thread"] = java_thread
            try:
                with self._confined(confine) as refused:
                    # the macro's first image, in this thread; else an image window on screen (ImageJ's
                    # window: start(show=True)) would be the current image
                    self._WindowManager.setTempCurrentImage(image)
                    try:
                        outcome["image"] = interp.runBatchMacro(_with_args(text, args), image)
                    except Exception as exc:  # noqa: BLE001 - Java exceptions (Macro canceled, plugin errors)
                        outcome["exception"] = exc
                    finally:
                        outcome["ij_error"] = self._IJ.getErrorMessage()  # IJ.error()'s or "out of memory"
                        self._WindowManager.setTempCurrentImage(None)
                refusals.extend(refused)
            except DeepImageJError as exc:
                outcome["error"] = exc
            finally:
                java_thread.setName("deepimagej-macro-idle")  # not a macro thread for ImageJ in between

        self._IJ.getErrorMessage()  # forget an earlier macro's error
        self._top_interp = interp
        self._Guard.arm(interp)
        self._depth += 1
        self._clock = _Clock()
        forced: list[tuple[str, str, str, int | None]] = []
        timed_out = False
        stopped_at: int | None = None
        try:
            done = self._last_done = self._worker.submit(job)
            try:
                forced, timed_out = self._wait(done, timeout)
            except BaseException:  # Ctrl-C (KeyboardInterrupt) in Python: the macro stops too
                self._Guard.closeAll()
                self._stop(done, outcome.get("java_thread"))
                raise
            if timed_out:
                stopped_at = int(self._Guard.currentLine())
                forced = _rows(
                    self._Guard.closeAll()
                )  # a waitForUser dialog is cancelled before the abort wakes it
            if forced or timed_out:
                self._stop(done, outcome.get("java_thread"))
        finally:
            self._depth -= 1
            self._clock = None
            dialogs = _rows(self._Guard.disarm(), outcome.get("thread")) + forced
        if "error" in outcome:
            raise outcome["error"]
        self._raise_for(text, name, dialogs, outcome, interp, refusals, timed_out, timeout, stopped_at)
        self.messages = [f"[{t}] {b}" for t, b, c, _ in dialogs if c == MESSAGE_DIALOG]
        return outcome.get("image")

    def _wait(
        self, done: threading.Event, timeout: float | None
    ) -> tuple[list[tuple[str, str, str, int | None]], bool]:
        """Wait for the macro; ``(dialogs closed here, timed out)``.

        Polls every :data:`POLL_S`: a modal dialog (or ImageJ's non-modal "Action Required"
        window) still showing one second after it was first seen waits for a user who is not
        there; it is closed and returned, and the macro is stopped. This backs up the AWT event
        guard, whose WINDOW_OPENED event can be missed, so that no macro waits until its timeout.
        """
        from deepimagej.imagej.java_classes import jc

        window_class, dialog_class = jc.Window, jc.Dialog
        wait_class = jc.WaitForUserDialog
        first_seen: dict[int, float] = {}
        polls = 0
        while not done.wait(POLL_S):
            elapsed = self._clock.elapsed() if self._clock is not None else 0.0
            if timeout is not None and elapsed > timeout:
                return [], True
            for limit in list(self._nested_limits):
                if not limit.fired and elapsed > limit.deadline:
                    limit.line, limit.fired = int(self._Guard.currentLine()), True
                    self._Guard.stop(limit.interp)
            polls += 1
            if polls % 5:
                continue
            now = time.monotonic()
            showing = [
                w
                for w in window_class.getWindows()
                if isinstance(w, dialog_class)
                and w.isShowing()
                and (w.isModal() or isinstance(w, wait_class))
            ]
            for w in showing:
                first_seen.setdefault(int(w.hashCode()), now)
            if any(now - first_seen[int(w.hashCode())] >= 1.0 for w in showing):
                return _rows(self._Guard.closeAll()), False
        return [], False

    def _run_nested(
        self,
        text: str,
        image,
        args: Mapping[str, Any] | None,
        name: str | None,
        confine: ConfinedTo | None,
        timeout: float | None,
    ):
        from deepimagej.imagej.java_classes import jc

        if image is not None:
            image.show()  # batch mode: becomes the current image
        interp = self._Interpreter()
        outcome: dict[str, Any] = {}
        self._Guard.drain()
        self._IJ.getErrorMessage()
        limit = None
        with self._clock_running(), self._confined(confine) as refusals:
            if timeout and self._clock is not None:  # watched by the top macro's _wait
                limit = _NestedLimit(interp, self._clock.elapsed() + timeout)
                self._nested_limits.append(limit)
            try:
                interp.run(_with_args(text, args), "")  # with an argument: a "called" macro, batch mode kept
            except Exception as exc:  # noqa: BLE001
                outcome["exception"] = exc
            finally:
                outcome["ij_error"] = self._IJ.getErrorMessage()
                if limit is not None:
                    self._nested_limits.remove(limit)
        dialogs = _rows(self._Guard.drain())
        timed_out = limit is not None and limit.fired
        self._raise_for(
            text,
            name,
            dialogs,
            outcome,
            interp,
            refusals,
            timed_out,
            timeout,
            limit.line if limit is not None else None,
            nested=True,
        )
        return jc.WindowManager.getCurrentImage()

    def _raise_for(
        self,
        text: str,
        name: str | None,
        dialogs: list[tuple[str, str, str, int | None]],
        outcome: dict[str, Any],
        interp,
        refusals: list[tuple[str, str, int | None, str]],
        timed_out: bool,
        timeout: float | None,
        stopped_at: int | None,
        nested: bool = False,
    ) -> None:
        from deepimagej.imagej.java_classes import jc

        if refusals:
            what, target, line, macro = refusals[0]
            raise MacroError(
                f"refused: the macro tried to {_REFUSALS.get(what, what + ' {target}').format(target=target)}; "
                "a bundle's macro may only use the bundle folder, a temporary work folder and its images "
                "(deepimagej trust BUNDLE lifts this for a bundle you trust)",
                line,
                name or macro,
            )
        if self.pending_error is not None:  # a DeepImageJ command failed inside the macro
            err = self.pending_error
            if not nested:
                self.pending_error = None
            raise err
        for title, body, _cls, dialog_line in dialogs:
            if title in ERROR_DIALOG_TITLES:
                msg, line = _parse_macro_error(body)
                raise MacroError(_one_line(msg), line or dialog_line, name)
        for title, body, _cls, line in dialogs:
            if title == EXCEPTION_WINDOW:
                raise MacroError(f"Java error in ImageJ: {_java_exception(body)}", line, name)
        exc = outcome.get("exception")
        canceled = exc is not None and "Macro canceled" in f"{exc}{exc!r}"
        ij_error = outcome.get("ij_error")
        ij_error = _one_line(str(ij_error)) if ij_error is not None and str(ij_error).strip() else None
        for title, body, cls, line in reversed(dialogs):
            # exit("why") ends a macro with a message; IJ.error(...) (a command's or ImageJ's error) is one
            if cls == MESSAGE_DIALOG and ((canceled and title == "Macro") or _one_line(body) == ij_error):
                body = _one_line(body)
                raise MacroError(
                    f"{title}: {body}" if title not in ("Macro", "Message", "ImageJ") else body, line, name
                )
        if ij_error == "out of memory":
            raise MacroError(
                "ImageJ ran out of memory (Java heap "
                f"{int(jc.Runtime.getRuntime().maxMemory()) // 2**20} MB): use a smaller "
                'image, or start ImageJ with more (start(max_memory="16g"))',
                _line_number(interp),
                name,
            )
        if ij_error is not None:
            raise MacroError(ij_error, _line_number(interp), name)
        for title, body, _cls, line in (
            d for d in dialogs if d[2] != MESSAGE_DIALOG and d[0] not in ERROR_DIALOG_TITLES
        ):
            hint = "; ".join(f"line {ln} calls {fn}(): {adv}" for ln, fn, adv in interactive_calls(text))
            what = f"'{title}'" + (f" ({body.splitlines()[0]})" if body else "")
            raise MacroError(
                f"the macro opened a dialog {what} that waits for a user, which cannot happen here "
                f"(no screen); it was closed and the macro stopped. "
                + (hint or 'Give the command its options, e.g. run("Gaussian Blur...", "sigma=2").'),
                line,
                name,
            )
        if timed_out:
            raise MacroError(
                f"the macro was still running after {timeout:g} s and was stopped"
                + (f" at line {stopped_at}" if stopped_at and stopped_at > 0 else "")
                + " (an endless loop? If it needs longer, give it more time: "
                "deepimagej macro --timeout SECONDS, or timeout=SECONDS; 0 means no limit)",
                None,
                name,
            )
        message = _error_message(interp)
        if exc is not None:
            text_exc = str(exc)
            if "Macro canceled" in text_exc or "Macro canceled" in repr(exc):
                if nested:  # propagate cancellation to the outer macro
                    raise MacroError(message or "macro canceled", None, name)
                return  # exit() / exit("...") : a normal end of a macro
            first = text_exc.splitlines()[0] if text_exc else type(exc).__name__
            raise MacroError(f"ImageJ failed: {first}", None, name)
        if message:  # a syntax error ImageJ found only at the end of the macro (no dialog then)
            raise MacroError(message, _line_number(interp), name)


def _one_line(text: str) -> str:
    """ImageJ's multi-line messages on one line."""
    return " ".join(text.split())


def _error_message(interp) -> str | None:
    try:
        message = interp.getErrorMessage()
    except Exception:  # noqa: BLE001 - an interpreter that never ran
        return None
    return str(message) if message is not None and str(message).strip() else None


def _line_number(interp) -> int | None:
    try:
        line = int(interp.getLineNumber())
    except Exception:  # noqa: BLE001
        return None
    return line if line > 0 else None


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Standard error (file descriptor 2, which Java writes to directly) goes nowhere inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _system_readable() -> list[str]:
    """Folders every confined macro may read: the Java runtime, its class path, ImageJ's own folders, fonts.

    Java canonicalizes some of its own paths (``conf/net.properties``), so the folders its
    configuration links lead to (Debian: ``/etc/java-17-openjdk``) are added as well.
    """
    from deepimagej.imagej.java_classes import jc

    System = jc.System
    Prefs = jc.Prefs
    home = Path(str(System.getProperty("java.home")))
    folders = {str(home)}
    for sub in ("conf", "lib"):
        for item in (home / sub).rglob("*"):
            if item.is_symlink():
                folders.add(str(Path(os.path.realpath(item)).parent))
    folders.update(p for p in str(System.getProperty("java.class.path")).split(os.pathsep) if p)
    for folder in (Prefs.getImageJDir(), Prefs.getPrefsDir()):
        if folder is not None:
            folders.add(str(folder))
    folders.update(
        [
            "/usr/share/fonts",
            "/usr/share/java",
            "/etc/fonts",
            "/usr/share/zoneinfo",
            "/dev/random",
            "/dev/urandom",
            "/dev/null",
        ]
    )
    return sorted(folders)


def run_bundle_macro(
    runner: MacroRunner,
    path: str | Path,
    image,
    *,
    bundle_root: str | Path,
    images: Sequence[str | Path] = (),
    trusted: bool = False,
    timeout: float | None = BUNDLE_MACRO_TIMEOUT_S,
):
    """Run one of a bundle's macro files on ``image``; confined unless the bundle is trusted.

    Untrusted (the default): the macro is audited first (:func:`deepimagej.audit.macros.audit_macro_file`;
    a refused finding stops it before it runs, and so does a macro file outside the bundle), then
    runs with its file access kept to the bundle folder, a new temporary work folder (deleted
    afterwards; ImageJ's default folder meanwhile) and ``images``; it may not run programs,
    reach the network or run the commands of :data:`deepimagej.audit.macros.REFUSED_COMMANDS`.
    Trusted: the macro runs like the user's own.

    Args:
        runner: the session's runner (``ij.runner``).
        path: the macro file, in ``bundle_root``.
        image: the ImagePlus it starts on.
        bundle_root: the bundle folder.
        images: image files the macro may read (the inputs it was given).
        trusted: run without the audit and the confinement.
        timeout: seconds of macro time (0 or ``None``: no limit).

    Returns:
        The macro's active image at the end (an ImagePlus), or ``None``.

    Raises:
        UntrustedBundleError: refused by the audit, before anything ran.
        MacroError: refused at run time (message, line), or failed like any macro.
    """
    root = Path(bundle_root)
    full = macro_location(path, root)
    if trusted:
        text, name = read_macro(full)
        return runner.run(text, image, name=name, timeout=timeout or 0)
    refused = [f for f in audit_macro_file(full, root, runtime_guard=runner.can_confine) if f.refused]
    if refused:
        first = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise UntrustedBundleError(
            f"{first.source}: refused before running: {first.what}: {first.detail}{more}; "
            f"a bundle's macro may not do this unless you trust the bundle "
            f"(deepimagej trust {root})"
        )
    text, name = read_macro(full)
    with tempfile.TemporaryDirectory(prefix="deepimagej-macro-") as work:
        confine = ConfinedTo(
            name or full.name, (root, Path(work)), tuple(Path(p) for p in images), Path(work)
        )
        # without the run-time guard (Java 24+), the audit above refused whatever only the guard could check
        return runner.run(
            text, image, name=name, timeout=timeout or 0, confine=confine if runner.can_confine else None
        )


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


def results_table() -> pd.DataFrame:
    """ImageJ's "Results" table as a pandas DataFrame."""
    import numpy as np
    import pandas as pd

    from deepimagej.imagej.java_classes import jc

    rt = jc.ResultsTable.getResultsTable()
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
