"""``deepimagej macro FILE.ijm [--image IN] [-o OUT] [--results CSV]``: run an ImageJ macro headlessly.

The macro runs in the embedded ImageJ with the DeepImageJ commands registered. ``--image``
opens an image first (the macro's current image); ``-o`` saves the macro's active image at
the end as an ImageJ TIFF; ``--results`` saves the Results table as CSV. Both are checked
before the macro runs (a missing folder, an input given as output are refused at once) and
written atomically. Errors are one line (``error: ...``, exit status 2), never a Java stack
trace.

Ctrl-C or SIGTERM at any moment stops the command within a second: partial outputs are
removed, the private X server is stopped and the Java VM ends with the process (exit status
130 / 143). The command ends with ``os._exit`` once its outputs are written, so a macro
stopped inside a Java call, or Java's own shutdown, cannot keep it alive.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

import click

from deepimagej.errors import DeepImageJError, first_line
from deepimagej.imagej.macro import DEFAULT_TIMEOUT_S
from deepimagej.outputs import atomic_file, check_output_path


class _Stopper:
    """Ends the command at once on SIGINT/SIGTERM, whatever the main thread is doing.

    Python runs a signal handler only between bytecodes of the main thread, which may be
    inside a long Java call; so the C-level handler's wake-up byte (``signal.set_wakeup_fd``)
    is read by a thread of its own, which removes the partial outputs, stops Xvfb and exits.
    """

    def __init__(self) -> None:
        self.partials: set[Path] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def install(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(
                sig, lambda signum, frame: None
            )  # the watcher acts; Python's default would not clean up
        threading.Thread(target=self._watch, args=(read_fd,), name="deepimagej-signals", daemon=True).start()

    def _watch(self, read_fd: int) -> None:
        data = os.read(read_fd, 1)
        signum = data[0] if data else signal.SIGTERM
        self.stop(signum)

    def add(self, path: Path) -> None:
        with self._lock:
            if self._stopping:
                path.unlink(missing_ok=True)
                return
            self.partials.add(path)

    def discard(self, path: Path) -> None:
        with self._lock:
            self.partials.discard(path)

    def stop(self, signum: int) -> None:
        with self._lock:
            self._stopping = True
            for path in self.partials:
                path.unlink(missing_ok=True)
        name = signal.Signals(signum).name
        finish(
            128 + signum, f"error: interrupted ({name}); the macro was stopped and no partial output was left"
        )


def finish(code: int, message: str | None = None) -> NoReturn:
    """Print ``message`` (stderr), stop the private Xvfb and end the process now (the JVM with it)."""
    from deepimagej.imagej import xvfb

    if message:
        sys.stderr.write(message + "\n")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        xvfb.stop_private_at_exit()
        os._exit(code)


@click.command("macro")
@click.argument("macro_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--image",
    "-i",
    "image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Image to open before the macro runs (its current image).",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the macro's active image at the end to this TIFF file.",
)
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save ImageJ's Results table at the end to this CSV file.",
)
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Define a macro variable before the macro runs (repeatable).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Stop the macro after this many seconds (time inside DeepImageJ commands not counted; 0: no limit).",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print the macro's Log output.")
def macro_command(
    macro_file: Path,
    image: Path | None,
    output: Path | None,
    results: Path | None,
    args: tuple[str, ...],
    timeout: float,
    quiet: bool,
) -> None:
    """Run an ImageJ macro (.ijm) in the embedded ImageJ with the DeepImageJ commands."""
    stopper = _Stopper()
    stopper.install()
    try:
        variables = dict(_parse_arg(a) for a in args)
        inputs = [macro_file] + ([image] if image is not None else [])
        if output is not None:
            check_output_path(output, inputs=inputs, image=False)
            if output.suffix.lower() not in (".tif", ".tiff"):
                raise click.BadParameter(
                    f"{output}: the macro's image is saved as an ImageJ TIFF; name it .tif", param_hint="-o"
                )
        if results is not None:
            check_output_path(results, inputs=inputs + ([output] if output is not None else []), image=False)
            _check_folder(results, "--results")
        if output is not None:
            _check_folder(output, "-o")
        from deepimagej.imagej import start

        ij = start(timeout=timeout or None)
        res = ij.run_macro(macro_file, image=image, args=variables, timeout=timeout)
        if res.log and not quiet:
            click.echo(res.log.rstrip("\n"))
        if output is not None:
            if res.imageplus is None:
                raise DeepImageJError("the macro left no image open; nothing to save with -o")
            with atomic_file(output) as tmp:
                stopper.add(tmp)
                save_tiff(res.imageplus, tmp, output)
            stopper.discard(tmp)
            click.echo(f"saved {output}", err=True)
        if results is not None:
            with atomic_file(results) as tmp:
                stopper.add(tmp)
                res.results.to_csv(tmp, index=False)
            stopper.discard(tmp)
            click.echo(f"saved {results}", err=True)
    except click.ClickException as exc:
        finish(2, f"error: {exc.format_message()}")
    except DeepImageJError as exc:
        finish(2, f"error: {first_line(exc)}")
    finish(0)


def _check_folder(path: Path, option: str) -> None:
    """Refuse, before the macro runs, an output whose folder does not exist."""
    folder = path.expanduser().absolute().parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"{path}: the folder {folder} does not exist; create it first", param_hint=option
        )


def _parse_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: use NAME=VALUE", param_hint="--arg")
    key, value = text.split("=", 1)
    for conv in (int, float):
        try:
            return key.strip(), conv(value)
        except ValueError:
            pass
    return key.strip(), value


def save_tiff(imp, path: Path, shown_as: Path | None = None) -> None:
    """Save an ImagePlus as an ImageJ TIFF at exactly ``path`` (calibration, overlays and LUTs kept).

    ImageJ reports a failed write in a dialog; the dialog guard closes it and its text
    becomes the error.

    Raises:
        ImageJError: ImageJ could not write the file.
    """
    from deepimagej.errors import ImageJError
    from deepimagej.imagej.java_classes import jc

    guard = jc.DialogGuard
    saver = jc.FileSaver(imp)
    guard.install()
    guard.arm(None)
    try:
        ok = bool(
            saver.saveAsTiffStack(str(path)) if int(imp.getStackSize()) > 1 else saver.saveAsTiff(str(path))
        )
    finally:
        dialogs = guard.disarm()
    if not ok:
        why = " ".join(str(dialogs[-1][1]).split()) if len(dialogs) else "no reason given"
        raise ImageJError(f"ImageJ could not write {shown_as or path}: {why}")


macro = macro_command

if __name__ == "__main__":  # pragma: no cover
    macro_command()
