"""One hostile case, and how it is run and judged (in a fresh process, with a time limit)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("pyharness.py")

#: Expected outcomes.
ERROR = "error"  # exit 2, one `error: ...` line naming the problem
REFUSED = "refused"  # exit 2, the audit refused an untrusted bundle
OK = "ok"  # exit 0: handled (the input is valid, or the tool copes and says so)
INTERRUPTED = "interrupted"  # a signal stops it: exit 130 (or killed), nothing partial left
KILLED = "killed"  # SIGKILL: nothing can clean up, but no partial file under the real name

Setup = Callable[[Path, Path], None]  # (case folder, materials folder)
Check = Callable[
    [Path, Path, "Outcome"], "str | None"
]  # (case folder, materials, outcome) -> a problem or None


@dataclass
class Case:
    """A hostile input and the promised outcome.

    Attributes:
        id: short unique name.
        argv: ``deepimagej`` arguments; ``{C}`` is the case folder, ``{M}`` the materials folder.
        python: instead of ``argv``: Python code run by ``pyharness.py`` (a DeepImageJError
            becomes ``error: ...`` and exit 2, as in the CLI).
        expect: :data:`ERROR`, :data:`REFUSED`, :data:`OK`, :data:`INTERRUPTED` or :data:`KILLED`.
        says: substrings the error line (or, for OK, the output) must contain.
        setup: makes the case's files in its folder.
        check: an extra check after the run.
        before: commands run first in the same folder and configuration (each must exit 0).
        trusted: for REFUSED: then run again with ``--trust`` (or ``trust=True``) and expect OK.
        forbid: paths (formatted like ``argv``) the run must not create (a hostile side effect);
            with ``trusted``, the trusted run must create them (proof that the code is hostile).
        may_change: files of the case folder the run may rewrite (everything else is hashed).
        signal: ``(signal number, seconds after the model started loading)``.
        timeout: seconds before the run counts as a hang.
        cold_cache: audit and unpack in a cache of its own (the shared one holds the audits made
            while the materials were built, so that most cases need not import TensorFlow).
        requires: returns why the case cannot run here (e.g. mounting needs root), or None.
        teardown: undoes what ``setup`` did outside the folder (e.g. unmounts).
    """

    id: str
    expect: str
    argv: tuple[str, ...] = ()
    python: str = ""
    says: tuple[str, ...] = ()
    setup: Setup | None = None
    check: Check | None = None
    before: tuple[tuple[str, ...], ...] = ()
    trusted: bool = False
    forbid: tuple[str, ...] = ()
    may_change: tuple[str, ...] = ()
    signal: tuple[int, float] | None = None
    timeout: float = 90.0
    cold_cache: bool = False
    requires: Callable[[], str | None] | None = None
    teardown: Callable[[Path], None] | None = None


@dataclass
class Outcome:
    """What one process did."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    hung: bool = False
    leftover: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """The judgement of one case."""

    case: Case
    problems: list[str]
    seconds: float
    summary: str
    skipped: str = ""


def _format(text: str, case_dir: Path, materials: Path) -> str:
    return text.replace("{C}", str(case_dir)).replace("{M}", str(materials)).replace("{REPO}", str(REPO))


def _hash_tree(folder: Path, skip: set[Path]) -> dict[Path, str]:
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path not in skip:
            hashes[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _env(case_dir: Path, materials: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "python"), env.get("PYTHONPATH", "")) if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["XDG_CONFIG_HOME"] = str(case_dir / ".config")  # trust records: per case
    env["XDG_CACHE_HOME"] = str(materials / "cache")  # unpacked weights and audits: shared
    env.pop("DEEPIMAGEJ_CACHE", None)
    env.pop("DEEPIMAGEJ_CONFIG", None)
    env["HOME"] = str(case_dir)
    env["COLUMNS"] = "200"
    return env


def _model_started(pid: int) -> bool:
    """Whether the process has loaded TensorFlow or PyTorch (the model is being loaded or run)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return False
    return "_pywrap_tensorflow" in maps or "libtorch_cpu" in maps


def run_process(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float, sig: tuple[int, float] | None = None
) -> Outcome:
    """Run ``command`` in its own process group; kill the group on timeout; report leftovers."""
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    hung = False
    try:
        if sig is not None:
            number, delay = sig
            while proc.poll() is None and not _model_started(proc.pid) and time.monotonic() - start < timeout:
                time.sleep(0.05)
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, number)
                sent = time.monotonic()
                timeout = min(timeout, sent - start + 15)  # it must stop promptly once told
        stdout, stderr = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - start
    leftover = []
    try:
        os.killpg(proc.pid, 0)  # anything still alive in the group?
        leftover.append(f"process group {proc.pid} still has processes")
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return Outcome(proc.returncode, stdout, stderr, seconds, hung, leftover)


def _command(case: Case, case_dir: Path, materials: Path, trusted: bool) -> list[str]:
    if case.python:
        code = _format(case.python, case_dir, materials)
        return [sys.executable, str(HARNESS), code, "trust" if trusted else ""]
    argv = [_format(a, case_dir, materials) for a in case.argv]
    if trusted:
        argv.append("--trust")
    return [sys.executable, "-m", "deepimagej", *argv]


def _error_lines(outcome: Outcome) -> list[str]:
    """``error: ...`` lines (``Error: ...`` from click's usage errors count too)."""
    return [line for line in outcome.stderr.splitlines() if line.lower().startswith("error:")]


def judge(case: Case, outcome: Outcome, expect: str) -> list[str]:
    """Problems of one run against the expected outcome (empty when all is as promised)."""
    problems = []
    text = outcome.stdout + outcome.stderr
    tail = " | ".join(outcome.stderr.strip().splitlines()[-3:])[:400]
    if outcome.hung:
        problems.append(f"hang: still running after {outcome.seconds:.0f} s")
    if "Traceback (most recent call last)" in text:
        problems.append(f"traceback: {tail}")
    problems += outcome.leftover
    errors = _error_lines(outcome)
    code = outcome.returncode
    if expect in (ERROR, REFUSED):
        if code == 0:
            problems.append("silent acceptance: exit 0 where an error was promised")
        elif code != 2:
            problems.append(f"exit status {code}, expected 2 ({tail})")
        if len(errors) != 1:
            problems.append(f"{len(errors)} 'error:' lines, expected exactly one ({tail})")
        if expect == REFUSED and errors and "refused to run untrusted bundle" not in errors[0]:
            problems.append(f"not refused by the audit: {errors[0][:300]}")
        for needle in case.says:
            if errors and needle.lower() not in errors[0].lower():
                problems.append(f"message lacks {needle!r}: {errors[0][:300]}")
    elif expect == OK:
        if code != 0:
            problems.append(f"exit status {code}, expected 0 ({tail})")
        for needle in case.says:
            if needle.lower() not in text.lower():
                problems.append(f"output lacks {needle!r}: {tail}")
    elif expect == INTERRUPTED:
        if code not in (130, -signal.SIGINT, -signal.SIGTERM):
            problems.append(f"exit status {code} after the signal, expected 130 ({tail})")
    elif expect == KILLED and code != -signal.SIGKILL:
        problems.append(f"exit status {code}, expected death by SIGKILL")
    return problems


def run_case(case: Case, case_dir: Path, materials: Path) -> Verdict:
    """Set up, run (and, for trusted cases, run again trusted), and judge one case."""
    if case.requires is not None:
        why = case.requires()
        if why:
            return Verdict(case, [], 0.0, "skipped", skipped=why)
    case_dir.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(case_dir, materials)
    env = _env(case_dir, materials)
    if case.cold_cache:
        env["XDG_CACHE_HOME"] = str(case_dir / ".cache")
    problems: list[str] = []
    start = time.monotonic()
    try:
        for argv in case.before:
            pre = Case(case.id, OK, argv=argv)
            outcome = run_process(_command(pre, case_dir, materials, False), env, case_dir, case.timeout)
            if outcome.returncode != 0:
                problems.append(f"step {' '.join(argv)[:80]} failed: {outcome.stderr.strip()[-300:]}")
        skip = {Path(_format(p, case_dir, materials)) for p in case.may_change}
        before = _hash_tree(case_dir, skip)
        shared = _hash_tree(materials / "inputs", set()) if (materials / "inputs").is_dir() else {}
        command = _command(case, case_dir, materials, False)
        outcome = run_process(command, env, case_dir, case.timeout, case.signal)
        problems += judge(case, outcome, case.expect)
        for path in case.forbid:
            target = Path(_format(path, case_dir, materials))
            if target.exists():
                problems.append(f"side effect: {target} was created")
        after = _hash_tree(case_dir, skip)
        for path, digest in before.items():
            if path not in after:
                problems.append(f"data loss: {path.name} was deleted")
            elif after[path] != digest:
                problems.append(f"data loss: {path.name} was modified")
        if shared and _hash_tree(materials / "inputs", set()) != shared:
            problems.append("data loss: a shared input file changed")
        parts = list(case_dir.rglob("*.part")) if case.expect != KILLED else []
        if parts:
            problems.append(f"temporary file left: {parts[0].name}")
        if case.check is not None:
            extra = case.check(case_dir, materials, outcome)
            if extra:
                problems.append(extra)
        summary = (_error_lines(outcome) or [f"exit {outcome.returncode}"])[0][:160]
        if case.trusted:
            trusted = run_process(_command(case, case_dir, materials, True), env, case_dir, case.timeout)
            problems += [f"with --trust: {p}" for p in judge(Case(case.id, OK), trusted, OK)]
            for path in case.forbid:
                if not Path(_format(path, case_dir, materials)).exists():
                    problems.append(f"with --trust: the model's code did not run (no {path})")
            summary += f"; with --trust: exit {trusted.returncode}"
    finally:
        if case.teardown is not None:
            case.teardown(case_dir)
    return Verdict(case, problems, time.monotonic() - start, summary)
