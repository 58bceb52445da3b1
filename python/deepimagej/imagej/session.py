"""One ImageJ per Python process: start it, move images in and out, run macros and commands.

>>> from deepimagej.imagej import start
>>> ij = start()                                              # doctest: +SKIP
>>> res = ij.run_macro('run("Gaussian Blur...", "sigma=2");', image)   # doctest: +SKIP
>>> res.image, res.log, res.results                           # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import DeepImageJError, ImageJError, InputImageError
from deepimagej.imagej import convert, jvm, shim, xvfb
from deepimagej.imagej.java_classes import jc
from deepimagej.imagej.macro import DEFAULT_TIMEOUT_S, MacroResult, MacroRunner, read_macro, results_table
from deepimagej.imagej.plugin.install import imagej_home

#: ImageJ menu command -> argument passed to the Java shim (deepimagej.ij.Command)
COMMANDS = {
    "DeepImageJ Run": "run",
    "DeepImageJ Explore": "explore",
    "DeepImageJ Install Model": "install",
    "DeepImageJ Build Bundled Model": "build",
    "U-Net Train": "train",
    "DeepImageJ Jobs": "jobs",
}

#: commands a confined macro (a bundle's) may run: they read and write through ImageJ, which the guard checks
CONFINED_MACRO_COMMANDS = ("run", "explore")

_session: ImageJ | None = None
_session_lock = threading.Lock()


class ImageJ:
    """The embedded ImageJ 1.x (use :func:`start`, not this constructor).

    Attributes:
        runner: the :class:`~deepimagej.imagej.macro.MacroRunner` (timeout, nesting).
        display: the X display ImageJ uses (a private Xvfb unless one was given).
        version: ImageJ's version, e.g. ``"1.53t"``.
    """

    def __init__(self, display: str, timeout: float | None, home: Path | None = None) -> None:
        self.display = display
        self._IJ = jc.IJ
        self._ImageJ = jc.ImageJ
        if home is not None:
            self._show_window(home)
        elif self._IJ.getInstance() is None:
            self._ImageJ(self._ImageJ.NO_SHOW)  # a hidden ImageJ: Log window, Results, menus
        self.version = str(self._IJ.getVersion())
        jc.Shutdown.prepare()  # ImageJ's thread pool must not keep Python alive
        self.runner = MacroRunner(timeout)
        self.current = None  # the ImagePlus the next macro starts from
        self._handlers: dict[str, Callable[[ImageJ, str | None], None]] = {}
        self._register_commands()

    def _show_window(self, home: Path) -> None:
        """Show ImageJ's window with the menus of the plugins in ``home`` (a hidden ImageJ is replaced).

        ImageJ reads ``plugins.dir`` when it builds its menus; the window is ImageJ's embedded
        mode: closing it does not end Python.
        """
        jc.System.setProperty("plugins.dir", str(home / "plugins"))
        instance = self._IJ.getInstance()
        if instance is not None and instance.isShowing():
            return
        if instance is not None:  # started hidden, without the plugins' menus
            instance.dispose()
        self._ImageJ(self._ImageJ.EMBEDDED)
        if hasattr(self, "_java_handler"):  # the new menus' command table: this session's commands again
            self._register_commands()
        self._add_menu_items()

    def _add_menu_items(self) -> None:
        """This session's commands that the plugin's menus lack, into their submenu (a jar of an older
        version installed in ``home`` may lack some; today's has them all)."""
        plugins = jc.Menus.getImageJMenu("Plugins")
        items = [plugins.getItem(i) for i in range(plugins.getItemCount())]
        submenus = {str(m.getLabel()): m for m in items if isinstance(m, jc.Menu)}
        for label in COMMANDS:
            menu = submenus.get(label.split(" ")[0])
            if menu is None or label in [str(menu.getItem(i).getLabel()) for i in range(menu.getItemCount())]:
                continue
            item = jc.MenuItem(label)
            item.addActionListener(self._IJ.getInstance())  # ImageJ runs a menu item's command by its label
            menu.add(item)

    # ---------------------------------------------------------------- commands
    def _register_commands(self) -> None:
        from jpype import JImplements, JOverride

        from deepimagej.imagej.commands import HANDLERS

        self._handlers.update(HANDLERS)
        session = self

        @JImplements(jc.CommandHandler)
        class Handler:
            @JOverride
            def run(self, command, options):
                session._dispatch(str(command), None if options is None else str(options))

        self._java_handler = Handler()  # keep a reference: Java only holds a weak proxy
        jc.Command.setHandler(self._java_handler)
        table = jc.Menus.getCommands()
        for label, arg in COMMANDS.items():
            table.put(label, f'deepimagej.ij.Command("{arg}")')

    def _dispatch(self, command: str, options: str | None) -> None:
        """Run a command for ImageJ; errors never leave as Java exceptions (no stack traces)."""
        try:
            handler = self._handlers[command]
            if command not in CONFINED_MACRO_COMMANDS:  # their Python work is beyond the confinement's checks
                jc.Confinement.checkCommand(_label(command))
            with self.runner.clock_paused():  # a model's run does not count against the macro's timeout
                handler(self, options)
        except DeepImageJError as exc:
            self._fail(exc)
        except Exception as exc:  # anything else still must not surface as a Java trace
            if "Macro canceled" in str(
                exc
            ):  # ImageJ cancelling the macro (a dialog closed by the guard): let it
                raise
            self._fail(ImageJError(f"DeepImageJ {command} failed: {type(exc).__name__}: {exc}"))

    def _fail(self, exc: DeepImageJError) -> None:
        if self.runner.running:
            interp = jc.Interpreter.getInstance()
            line = int(interp.getLineNumber()) if interp is not None else None
            if getattr(exc, "line", None) is None and hasattr(exc, "line"):
                exc.line = line
            self.runner.pending_error = _with_line(exc, line)
            self.runner.stop_all()  # each running macro ends at its next statement
        else:
            self._IJ.log(f"DeepImageJ error: {exc}")
            self._IJ.error("DeepImageJ", str(exc))

    def add_command(self, label: str, handler: Callable[[ImageJ, str | None], None]) -> None:
        """Register an extra ImageJ command implemented in Python: ``handler(ij, macro_options)``."""
        key = label.lower().replace(" ", "_")
        self._handlers[key] = handler
        jc.Menus.getCommands().put(label, f'deepimagej.ij.Command("{key}")')

    # ---------------------------------------------------------------- images
    def open(self, path: str | Path):
        """Open an image file with ImageJ (TIFF, PNG, ...) and make it the current image."""
        path = Path(path)
        if not path.is_file():
            raise InputImageError(f"image file not found: {path}")
        imp = self._IJ.openImage(str(path))
        if imp is None:
            raise InputImageError(f"ImageJ cannot open {path}")
        self.current = imp
        return imp

    def show(self, image: Any, title: str = "image", axes: str | None = None, **kwargs: Any):
        """Put a numpy/xarray image into ImageJ (an ImagePlus), make it the current image."""
        imp = image if _is_imageplus(image) else convert.to_imageplus(image, title, axes, **kwargs)
        self.current = imp
        return imp

    def to_imageplus(self, image: Any, title: str = "image", axes: str | None = None, **kwargs: Any):
        return convert.to_imageplus(image, title, axes, **kwargs)

    def from_imageplus(self, imp, as_xarray: bool = False):
        return convert.from_imageplus(imp, as_xarray)

    # ---------------------------------------------------------------- macros
    def run_macro(
        self,
        macro: str | Path,
        image: Any = None,
        args: Mapping[str, Any] | None = None,
        *,
        axes: str | None = None,
        timeout: float | None = None,
        as_xarray: bool = False,
    ) -> MacroResult:
        """Run an ImageJ macro (text or ``.ijm``/``.txt`` file) and collect what it leaves.

        Args:
            macro: the macro text, or a path to a macro file.
            image: the image the macro starts on: numpy/xarray (``axes`` names a numpy array's
                axes), an ImagePlus, an image file path, or ``None`` for the current image.
            args: values defined as macro variables before the macro runs, e.g. ``{"sigma": 2}``.
            timeout: seconds before the macro is stopped (default: the session's, 600 s).
            as_xarray: return the image as an ``xarray.DataArray`` with calibrated coordinates.

        Returns:
            :class:`~deepimagej.imagej.macro.MacroResult` with ``image`` (the active image at
            the end), ``log`` (what it printed) and ``results`` (the Results table).

        Raises:
            MacroError: the macro failed (message and line), waited for a user, or timed out.
        """
        text, name = read_macro(macro)
        imp = self._as_imageplus(image, axes)
        log_before = str(self._IJ.getLog() or "")
        out = self.runner.run(text, imp, args, name=name, timeout=timeout)
        log_after = str(self._IJ.getLog() or "")
        log = log_after.removeprefix(log_before)
        log += "".join(m + "\n" for m in self.runner.messages)
        result = MacroResult(log=log, results=results_table())
        if out is not None:
            self.current = out
            result.imageplus = out
            result.axes = convert.imageplus_axes(out)
            result.image = convert.from_imageplus(out, as_xarray)
        return result

    def _as_imageplus(self, image: Any, axes: str | None):
        if image is None:
            return self.current
        if _is_imageplus(image):
            return image
        if isinstance(image, (str, Path)):
            return self.open(image)
        if isinstance(image, np.ndarray) or convert._is_xarray(image):
            return convert.to_imageplus(image, "image", axes)
        raise InputImageError(f"cannot use a {type(image).__name__} as an ImageJ image")

    def results(self):
        """ImageJ's Results table as a pandas DataFrame."""
        return results_table()

    def log(self) -> str:
        """The text of ImageJ's Log window."""
        return str(self._IJ.getLog() or "")

    def run_bundle(
        self,
        model: str | Path,
        image: Any = None,
        options: str = "",
        *,
        axes: str | None = None,
        as_xarray: bool = False,
    ) -> MacroResult:
        """``run("DeepImageJ Run", "model=[model] " + options)`` on ``image``, from Python."""
        name = str(model)
        return self.run_macro(
            f'run("DeepImageJ Run", "model=[{name}] {options}");', image, axes=axes, as_xarray=as_xarray
        )

    def close(self) -> None:
        """Forget the current image and close ImageJ's windows (the JVM stays: one per process)."""
        _dispose_windows()
        self.current = None


def _label(command: str) -> str:
    """The ImageJ menu label of a command key (``"train"`` -> ``"U-Net Train"``)."""
    return next((label for label, key in COMMANDS.items() if key == command), command)


def _with_line(exc: DeepImageJError, line: int | None) -> DeepImageJError:
    from deepimagej.errors import MacroError

    if isinstance(exc, MacroError) or line is None:
        return exc
    text = str(exc)
    new = type(exc)(f"{text} (macro line {line})")
    new.__cause__ = exc
    return new


def _is_imageplus(obj: Any) -> bool:
    cls = getattr(obj, "getClass", None)
    if cls is None:
        return False
    try:
        return bool(jc.ImagePlus.class_.isInstance(obj))
    except Exception:  # noqa: BLE001
        return False


def _dispose_windows() -> None:
    try:
        for w in jc.Window.getWindows():
            w.dispose()
    except Exception:  # noqa: BLE001, S110 - best effort at shutdown
        pass


def _shutdown_imagej() -> None:
    """At exit, before JPype stops the JVM: close ImageJ's windows so its threads end."""
    try:
        if jvm.jvm_started():
            jc.Shutdown.closeAll()
    except Exception:  # noqa: BLE001, S110 - best effort at exit
        pass


def start(
    ij: str | Path | None = None,
    display: str | None = None,
    max_memory: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    *,
    show: bool = False,
    folder: str | Path | None = None,
) -> ImageJ:
    """Start ImageJ in this process (once) and return it; later calls return the same one.

    With ``show=True`` (Python, Jupyter) ImageJ's window opens with the menus of
    ``deepimagej imagej`` (Plugins › DeepImageJ, Plugins › U-Net) and start returns at once:
    the commands clicked there run in this Python process, on the window's current image, and
    are recorded by ImageJ's Macro Recorder. A session started hidden gets its window then.

    Args:
        ij: ``None`` for the embedded ImageJ 1.x (``ij.jar`` from ``$DEEPIMAGEJ_IJ_JAR`` or the
            system, e.g. Debian's ``libij-java``), or a Fiji.app folder: its ``ij-1.x.jar`` is
            used the same way (for the full Fiji with ImageJ2, use
            :func:`deepimagej.imagej.fiji.start_fiji`).
        display: X display; ``None`` uses ``$DISPLAY`` or starts a private Xvfb; ``"xvfb"``
            always starts one.
        max_memory: Java heap limit, e.g. ``"8g"`` (default 4g).
        timeout: default macro timeout in seconds (``None``: no limit).
        show: open ImageJ's window (needs a display: ``$DISPLAY``, or ``display``).
        folder: ImageJ's home folder for the window's plugins (default: as ``deepimagej imagej``).

    Raises:
        ImageJError: no ij.jar, no Java, no javac for the shim, no display and no Xvfb; with
            ``show``, no display.
    """
    global _session
    with _session_lock:
        home = None
        if show:
            if display is None:
                xvfb.require_display("`start(show=True)`")
            home, _ = imagej_home(folder)
        if _session is not None:
            if timeout != DEFAULT_TIMEOUT_S:
                _session.runner.timeout = timeout
            if home is not None:
                _session._show_window(home)
            return _session
        ij_jar = jvm.find_ij_jar(ij)
        shim_jar = shim.find_jar() or shim.build(ij_jar)
        used_display = os_display = None
        if not jvm.jvm_started():
            used_display = xvfb.ensure_display(display)
        else:
            import os

            os_display = os.environ.get("DISPLAY", "")
        jvm.start_jvm([ij_jar, shim_jar], max_memory)
        import atexit

        atexit.register(_shutdown_imagej)  # registered after JPype's own: runs before it
        try:
            _session = ImageJ(used_display or os_display or "", timeout, home)
        except DeepImageJError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. HeadlessException, AWTError: no display
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageJError(f"ImageJ could not start: {first}") from None
        return _session
