"""The audit of a bundle's ImageJ macros: what they would do that a model's macro should not.

A bundle's ``preprocessing.txt`` / ``postprocessing.txt`` / ``.ijm`` files run in the user's
ImageJ with the user's rights. Read with the ImageJ macro tokenizer
(:mod:`deepimagej.audit.macro_language`), every call is checked before anything runs:

- refused outright: ``exec`` (a shell command), ``eval("script"|"js"|"bsh"|"python", ...)``
  (code in another language), ``call`` of Java outside ImageJ, ``doCommand`` (a command in
  another thread, outside the confinement), network reads (``File.openUrlAsString``,
  ``open("http...")``) and the commands in :data:`REFUSED_COMMANDS` (``run("Quit")``,
  ``run("URL...")``...);
- file access (``open``, ``saveAs``, ``File.delete``, ``File.saveString``, ...): a path written
  in the macro must lie in the bundle folder; a path the macro computes is checked when it
  runs, by the ImageJ-side guard (:mod:`deepimagej.imagej.macro`), which keeps the macro to
  the bundle folder, a temporary work folder and the images given to it.

A trusted bundle's macros run without these limits; the trust decision is made by the caller
(:mod:`deepimagej.audit`). :func:`audit_macro` checks one macro text, :func:`audit_macro_file`
one file of a bundle (its path included: a macro listed as ``../../x.txt`` is refused), and
:func:`audit_bundle_macros` every macro a bundle lists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

from deepimagej.audit.findings import Finding
from deepimagej.audit.macro_language import Call, calls, tokenize
from deepimagej.bundle.spec import ModelSpec

#: ImageJ commands a bundle's macro may not run, with the reason. The ImageJ-side guard
#: refuses the same commands when a confined macro computes their name at run time.
REFUSED_COMMANDS: dict[str, str] = {
    "Quit": "quits ImageJ",
    "URL...": "opens a URL (network access)",
    "Update ImageJ...": "downloads and installs ImageJ (network access)",
    "Install...": "installs macros or plugins",
    "Install Plugin...": "installs a plugin",
    "Run...": "runs a macro or script file chosen at run time",
    "Compile and Run...": "compiles and runs Java code",
    "Startup Macros...": "edits ImageJ's startup macros",
    "Refresh Menus": "reloads ImageJ's plugins",
    "DeepImageJ Build Bundled Model": "writes a bundle, from inside a bundle's macro",
    "U-Net Train": "trains and saves a model, from inside a bundle's macro",
}

#: ``eval(language, code)`` languages that run code other than ImageJ macro code
SCRIPT_LANGUAGES = {
    "script": "JavaScript",
    "js": "JavaScript",
    "bsh": "BeanShell",
    "python": "Python (Jython)",
}

#: calls refused whatever their arguments
REFUSED_FUNCTIONS: dict[str, str] = {
    "exec": "runs a program or shell command",
    "doCommand": "runs an ImageJ command in another thread, outside the macro's confinement",
    "File.openUrlAsString": "reads from the network",
}

#: file functions: name -> ((argument index, "read" | "write"), ...)
FILE_ARGUMENTS: dict[str, tuple[tuple[int, str], ...]] = {
    "open": ((0, "read"),),
    "saveAs": ((1, "write"),),
    "save": ((0, "write"),),
    "getFileList": ((0, "read"),),
    "runMacro": ((0, "read"),),
    "File.open": ((0, "write"),),
    "File.openAsString": ((0, "read"),),
    "File.openAsRawString": ((0, "read"),),
    "File.openSequence": ((0, "read"),),
    "File.exists": ((0, "read"),),
    "File.isDirectory": ((0, "read"),),
    "File.isFile": ((0, "read"),),
    "File.getLength": ((0, "read"),),
    "File.length": ((0, "read"),),
    "File.lastModified": ((0, "read"),),
    "File.dateLastModified": ((0, "read"),),
    "File.saveString": ((1, "write"),),
    "File.append": ((1, "write"),),
    "File.delete": ((0, "write"),),
    "File.rename": ((0, "write"), (1, "write")),
    "File.makeDirectory": ((0, "write"),),
    "File.mkdir": ((0, "write"),),
    "File.copy": ((0, "read"), (1, "write")),
    "Table.open": ((0, "read"),),
    "Table.save": ((0, "write"),),
}

#: ``roiManager(action, path)`` actions that touch a file
ROI_MANAGER_FILE_ACTIONS = {"open": "read", "save": "write", "save selected": "write"}
#: keys of ``run(command, options)`` whose value is a file or folder
PATH_OPTION_KEYS = {"open", "save", "path", "dir", "directory", "file", "filepath", "filename", "folder"}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OPTION = re.compile(r"(\w+)=(\[[^\]]*\]|\S+)")
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "~")) or bool(_WINDOWS_ABSOLUTE.match(path))


def _leaves_folder(path: str) -> bool:
    parts = PureWindowsPath(path).parts if "\\" in path else PurePosixPath(path).parts
    return ".." in parts


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` (resolved, links followed) lies in ``folder`` (resolved)."""
    try:
        Path(path).expanduser().resolve().relative_to(Path(folder).expanduser().resolve())
    except ValueError:
        return False
    return True


class _Checker:
    """Turns the calls of one macro into findings."""

    def __init__(self, source: str, bundle_root: Path | None, runtime_guard: bool) -> None:
        self.source = source
        self.bundle_root = bundle_root
        self.runtime_guard = runtime_guard
        self.findings: list[Finding] = []

    def add(self, call: Call, detail: str, refused: bool = True, what: str | None = None) -> None:
        self.findings.append(Finding(self.source, what or call.name, f"line {call.line}: {detail}", refused))

    def at_run_time(self, call: Call, detail: str, what: str | None = None) -> None:
        """Something only the ImageJ-side guard can check: a note with it, refused without it."""
        if self.runtime_guard:
            self.add(call, f"{detail}: checked when it runs", refused=False, what=what)
        else:
            self.add(
                call,
                f"{detail}: refused, as this Java cannot confine a macro as it runs (Java 24 and "
                "later have no SecurityManager)",
                what=what,
            )

    def check(self, call: Call) -> None:
        handler: Callable[[Call], None] | None = {
            "eval": self._eval,
            "call": self._call,
            "run": self._run,
            "roiManager": self._roi_manager,
        }.get(call.name)
        if call.name in REFUSED_FUNCTIONS:
            self.add(call, REFUSED_FUNCTIONS[call.name])
        elif handler is not None:
            handler(call)
        for index, mode in FILE_ARGUMENTS.get(call.name, ()):
            if index < len(call.args):
                self._path(call, call.literal(index), mode)

    def _path(self, call: Call, path: str | None, mode: str, what: str | None = None) -> None:
        verb = "reads" if mode == "read" else "writes"
        if path is None:
            self.at_run_time(call, f"{verb} a file whose path the macro computes", what=what)
        elif _URL.match(path) and not path.lower().startswith("file://"):
            self.add(call, f"{verb} {path}: network access", what=what)
        elif _is_absolute(path):
            if self.bundle_root is not None and not path.startswith("~") and inside(path, self.bundle_root):
                return
            self.add(call, f"{verb} {path}, outside the bundle folder", what=what)
        elif _leaves_folder(path):
            self.add(call, f"{verb} {path}, a path that leaves its folder ('..')", what=what)

    def _eval(self, call: Call) -> None:
        if len(call.args) < 2:
            self.at_run_time(call, "runs macro code built when the macro runs")
            return
        language = call.literal(0)
        if language is None:
            self.add(
                call,
                "runs code in a language chosen when the macro runs (JavaScript, BeanShell or Python "
                "would run outside ImageJ's macro language)",
            )
        elif language in SCRIPT_LANGUAGES:
            self.add(call, f"runs {SCRIPT_LANGUAGES[language]} code", what=f'eval("{language}")')

    def _call(self, call: Call) -> None:
        target = call.literal(0)
        if target is None:
            self.add(call, "calls a Java method chosen when the macro runs")
        elif not target.startswith("ij."):
            self.add(call, f"calls the Java method {target}, outside ImageJ", what=f'call("{target}")')

    def _run(self, call: Call) -> None:
        command = call.literal(0)
        if command is None:
            self.at_run_time(call, "runs an ImageJ command chosen when the macro runs")
            return
        name = command.strip()
        if name in REFUSED_COMMANDS:
            self.add(call, REFUSED_COMMANDS[name], what=f'run("{name}")')
            return
        options = call.literal(1)
        if options is None:
            return
        for key, value in _OPTION.findall(options):
            value = value[1:-1] if value.startswith("[") else value
            if (
                key.lower() in PATH_OPTION_KEYS
                and value
                and (_URL.match(value) or "/" in value or "\\" in value)
            ):
                self._path(call, value, "write" if key.lower() == "save" else "read", what=f'run("{name}")')

    def _roi_manager(self, call: Call) -> None:
        action = (call.literal(0) or "").lower()
        if action in ROI_MANAGER_FILE_ACTIONS and len(call.args) > 1:
            self._path(
                call, call.literal(1), ROI_MANAGER_FILE_ACTIONS[action], what=f'roiManager("{action}")'
            )


def audit_macro(
    text: str, source: str, *, bundle_root: str | Path | None = None, runtime_guard: bool = True
) -> list[Finding]:
    """What an ImageJ macro of a bundle would do that a bundle's macro should not.

    Args:
        text: the macro.
        source: its name in the findings (the file, relative to the bundle).
        bundle_root: the bundle folder: paths written in the macro may lie there.
        runtime_guard: whether the macro will run under the ImageJ-side guard, which checks
            the paths a macro computes as it runs; without it such file access is refused.

    Returns:
        One :class:`Finding` per call at fault, in the order of the macro. ``refused`` ones stop
        an untrusted bundle; the others are shown (``deepimagej info``).
    """
    tokens, _ = tokenize(text)
    checker = _Checker(source, Path(bundle_root) if bundle_root is not None else None, runtime_guard)
    for call in calls(tokens):
        checker.check(call)
    return checker.findings


def macro_location(path: str | Path, bundle_root: str | Path) -> Path:
    """Where a bundle's macro file is: ``bundle_root / path`` for a name in the bundle
    (``postprocessing.txt``); ``path`` itself when absolute, or a path from the current folder (a
    bundle given as a relative folder, ``bundles/x``, lists ``bundles/x/postprocessing.txt``)."""
    path, root = Path(path), Path(bundle_root)
    if path.is_absolute() or (path.is_file() and not (root / path).is_file()):
        return path
    return root / path


def audit_macro_file(
    path: str | Path, bundle_root: str | Path, *, runtime_guard: bool = True
) -> list[Finding]:
    """:func:`audit_macro` of a bundle's macro file, with the file's own place checked first.

    A macro file outside the bundle folder (``../../somewhere.txt`` in a descriptor, or a link
    leading out) is refused without being read; a missing or unreadable one is refused too.
    """
    root = Path(bundle_root)
    full = macro_location(path, root)
    if not inside(full, root):
        shown = (
            os.path.relpath(full, root)
            if not Path(path).is_absolute() or str(path).startswith(str(root))
            else str(path)
        )
        return [Finding(shown, "macro file", f"{path} lies outside the bundle folder {root}")]
    name = full.resolve().relative_to(root.resolve()).as_posix()
    try:
        text = full.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [Finding(name, "macro file", f"cannot be read ({exc.strerror or exc})")]
    return audit_macro(text, name, bundle_root=root, runtime_guard=runtime_guard)


def audit_bundle_macros(spec: ModelSpec, *, runtime_guard: bool = True) -> list[Finding]:
    """The findings of every pre- and post-processing macro a bundle (a ``ModelSpec``) lists."""
    findings: list[Finding] = []
    for path in (*spec.preprocessing_macros, *spec.postprocessing_macros):
        findings.extend(audit_macro_file(path, spec.root, runtime_guard=runtime_guard))
    return findings
