"""Stress: a macro syntax error, run again and again under CPU load, must never stall (``make stress``).

The stall it guards against: ImageJ shows a macro error in a modal dialog from the macro's
thread; the guard that closes it (nobody can click under Xvfb) could close it before the
dialog's modal loop had started, and the macro then waited for its timeout (300 s in the
test suite). CPU load makes that order of events likely, so ``--load`` busy-loop processes
run meanwhile.

Two loops: ``--runs`` macros in one ImageJ (one JVM), and ``--runs`` ``deepimagej macro``
commands, each a fresh process. A run counts as a stall when it takes longer than
``--stall`` seconds or does not end in the expected one-line error; each command is also
checked for processes left behind (still running 5 s after it ended). Prints one summary line per loop and a JSON line; exits 1
on any stall.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACRO = "x = 1;\ny = ;\nz = 2;\n"
EXPECTED = "Number or numeric function expected"


def busy_loops(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` processes that keep a core busy for ``seconds`` (or until killed)."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def summary(name: str, durations: list[float], stalls: list[str]) -> dict:
    ordered = sorted(durations)
    result = {
        "loop": name,
        "runs": len(durations),
        "stalls": len(stalls),
        "median_s": round(statistics.median(ordered), 3) if ordered else None,
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3) if ordered else None,
        "max_s": round(ordered[-1], 3) if ordered else None,
    }
    print(
        f"{name}: {result['runs']} runs, {result['stalls']} stalls, median {result['median_s']} s, "
        f"p99 {result['p99_s']} s, max {result['max_s']} s",
        flush=True,
    )
    for s in stalls[:10]:
        print(f"  stall: {s}", flush=True)
    return result


def in_one_jvm(runs: int, stall: float) -> dict:
    from deepimagej.errors import MacroError
    from deepimagej.imagej import start

    ij = start(timeout=stall * 4)
    durations, stalls = [], []
    for i in range(runs):
        t0 = time.monotonic()
        try:
            ij.run_macro(MACRO)
            outcome = "no error"
        except MacroError as exc:
            outcome = "ok" if EXPECTED in str(exc) and exc.line == 2 else f"wrong error: {exc}"
        dt = time.monotonic() - t0
        durations.append(dt)
        if dt > stall or outcome != "ok":
            stalls.append(f"run {i}: {dt:.1f} s, {outcome}")
    return summary("one JVM", durations, stalls)


def _marked(mark: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and f"DEEPIMAGEJ_STRESS={mark}".encode() in (proc / "environ").read_bytes()
                and ") Z " not in (proc / "stat").read_text()
            ):
                found.append((proc / "comm").read_text().strip())
        except OSError:
            continue
    return found


def _leftovers(mark: str, grace: float) -> tuple[list[str], float]:
    """Processes of a finished command still running after ``grace`` s, and how long the last one lingered.

    Its private Xvfb gets SIGTERM from the kernel when the command ends (parent-death signal)
    and takes a moment to exit, longer under load.
    """
    t0 = time.monotonic()
    while True:
        found = _marked(mark)
        waited = time.monotonic() - t0
        if not found or waited > grace:
            return found, waited
        time.sleep(0.05)


def in_fresh_processes(runs: int, stall: float, startup: float) -> dict:
    durations, stalls, linger = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        macro = Path(tmp) / "syntax_error.ijm"
        macro.write_text(MACRO)
        for i in range(runs):
            mark = uuid.uuid4().hex
            env = dict(os.environ, PYTHONPATH=str(REPO / "python"), DEEPIMAGEJ_STRESS=mark)
            env.pop("DISPLAY", None)
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "deepimagej", "macro", str(macro)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=stall * 4 + startup,
                    check=False,
                )
                ok = (
                    proc.returncode == 2
                    and f"{EXPECTED} (line 2)" in proc.stderr
                    and "Traceback" not in proc.stderr
                )
                outcome = "ok" if ok else f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
            except subprocess.TimeoutExpired:
                outcome = "did not end"
            dt = time.monotonic() - t0
            left, lingered = _leftovers(mark, grace=5.0)
            linger.append(lingered)
            durations.append(dt)
            if dt > stall + startup or outcome != "ok" or left:
                stalls.append(f"run {i}: {dt:.1f} s, {outcome}" + (f", left behind: {left}" if left else ""))
    result = summary("fresh processes", durations, stalls)
    result["xvfb_gone_within_s"] = round(max(linger), 3) if linger else None
    print(
        f"  a command's processes were all gone within {result['xvfb_gone_within_s']} s of its end",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per loop (default 200)")
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes meanwhile (default 2)")
    parser.add_argument(
        "--stall", type=float, default=5.0, help="seconds of macro time that count as a stall"
    )
    parser.add_argument(
        "--startup", type=float, default=20.0, help="seconds a fresh process may take to start"
    )
    parser.add_argument("--only", choices=("jvm", "processes"), help="run one loop only")
    args = parser.parse_args(argv)
    results = []
    load = busy_loops(args.load, 3600)
    try:
        if args.only in (None, "jvm"):
            results.append(in_one_jvm(args.runs, args.stall))
        if args.only in (None, "processes"):
            results.append(in_fresh_processes(args.runs, args.stall, args.startup))
    finally:
        for p in load:
            p.kill()
            p.wait()
    print(json.dumps({"load": args.load, "loops": results}), flush=True)
    return 1 if any(r["stalls"] for r in results) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the embedded JVM's shutdown is not part of the measurement
