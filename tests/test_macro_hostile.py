"""Hostile and broken macros, hostile bundles, signals: each case with its expected outcome.

Real ImageJ, real macros. A bundle's macro runs confined (``run_bundle_macro``): the static
audit refuses what it can see, the Java guard refuses at run time what the macro computes
(paths built with ``replace(...)`` below, so that the audit cannot know them). Every case
checks that nothing outside the allowed folders was touched. The command-line cases run in
fresh processes with a time limit and check the exit status, the one-line message, that no
traceback was printed and that no process of theirs (Xvfb, java) is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from deepimagej.errors import BundleError, MacroError, UntrustedBundleError

pytestmark = pytest.mark.imagej
REPO = Path(__file__).resolve().parents[1]
PANCREATIC = REPO / "bundles" / "unet-pancreatic"


def dyn(path: Path | str) -> str:
    """A macro expression whose value is ``path`` but which the audit cannot compute (a function call)."""
    text = str(path)
    return f'replace("{text[:1]}@{text[1:]}", "@", "")'


@pytest.fixture
def place(tmp_path):
    """A bundle folder, an input image, and files outside that must stay untouched."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "notes.txt").write_text("bundle notes\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    secret = outside / "secret.txt"
    secret.write_text("password\n")
    image = tmp_path / "input.tif"
    import tifffile

    tifffile.imwrite(image, np.arange(32 * 32, dtype=np.uint8).reshape(32, 32))
    (bundle / "link.txt").symlink_to(secret)
    return {
        "bundle": bundle,
        "outside": outside,
        "victim": victim,
        "secret": secret,
        "image": image,
        "before": _snapshot(outside),
    }


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


def _run_confined(ij, place, text: str, *, trusted: bool = False, timeout: float = 60):
    from deepimagej.imagej.macro import run_bundle_macro

    macro = place["bundle"] / "preprocessing.txt"
    macro.write_text(text)
    imp = ij.open(place["image"])
    return run_bundle_macro(
        ij.runner,
        macro,
        imp,
        bundle_root=place["bundle"],
        images=[place["image"]],
        trusted=trusted,
        timeout=timeout,
    )


# ------------------------------------------------------------------ refused at run time (paths computed)
RUNTIME_REFUSED = [
    # (case, macro with {victim} {secret} {outside} {bundle} placeholders, expected words, line)
    ("delete outside", "x = 1;\nok = File.delete({victim});\nprint(ok);", "delete", 2),
    ("write outside", 'File.saveString("pwned", {outside_new});', "write", 1),
    ("saveAs outside", 'newImage("a", "8-bit ramp", 8, 8, 1);\nsaveAs("Tiff", {outside_new});', "write", 2),
    ("read outside", "s = File.openAsString({secret});\nprint(s);", "read", 1),
    ("open image outside", "open({secret});", "read", 1),
    ("mkdir outside", "File.makeDirectory({outside_new});", "write", 1),
    ("rename out of the bundle", 'File.rename("{bundle}/notes.txt", {outside_new});', "write", 1),
    ("exec inside eval", 'eval("exec(\\"touch {outside}/marker\\")");', "run the program", 1),
    ("IJ call writing outside", 'call("ij.IJ.saveString", "pwned", {outside_new});', "write", 1),
    ("network", 's = call("ij.IJ.openUrlAsString", {url});', "network", 1),
    ("Quit computed", 'c = replace("Qu@it", "@", "");\nrun(c);\nprint("still here");', 'command "Quit"', 2),
    ("link in the bundle leading out", "s = File.openAsString({bundle_link});", "read", 1),
    ("exists outside", "print(File.exists({secret}));", "read", 1),
    ("list a folder outside", "files = getFileList({outside_dir});", "read", 1),
    (
        "U-Net Train through runPlugIn",
        'call("ij.IJ.runPlugIn", "deepimagej.ij.Command", "train");',
        'command "U-Net Train"',
        1,
    ),
    (
        "the guard turned off",
        'eval("call(\\"deepimagej.ij.DialogGuard.disarm\\")");',
        "turn off the dialog guard",
        1,
    ),
    ("native code", 'eval("call(\\"java.lang.System.load\\", \\"{outside}/x.so\\")");', "native library", 1),
]


@pytest.mark.parametrize(
    ("case", "macro", "words", "line"), RUNTIME_REFUSED, ids=[c[0] for c in RUNTIME_REFUSED]
)
def test_confined_macro_is_refused_at_run_time(ij, place, case, macro, words, line):
    text = macro.format(
        victim=dyn(place["victim"]),
        secret=dyn(place["secret"]),
        outside=place["outside"],
        outside_new=dyn(place["outside"] / "new.txt"),
        bundle=place["bundle"],
        url=dyn("http://127.0.0.1:9/x.tif"),
        bundle_link=dyn(place["bundle"] / "link.txt"),
        outside_dir=dyn(place["outside"]),
    )
    log_before = ij.log()
    with pytest.raises(MacroError, match="refused: the macro tried to") as err:
        _run_confined(ij, place, text)
    assert words in str(err.value) and err.value.line == line, str(err.value)
    assert err.value.macro == "preprocessing.txt"
    assert _snapshot(place["outside"]) == place["before"]  # nothing outside touched, nothing created
    assert (place["bundle"] / "notes.txt").read_text() == "bundle notes\n"
    assert "still here" not in ij.log().removeprefix(log_before)
    from deepimagej.imagej.java_classes import jc

    assert jc.IJ.getInstance() is not None  # ImageJ did not quit


def test_the_guard_is_what_stops_them(ij, place):
    # the same macro, trusted: it deletes (so the refusal above is the guard's doing, not a broken macro)
    _run_confined(ij, place, f"ok = File.delete({dyn(place['victim'])});", trusted=True)
    assert not place["victim"].exists()


def test_confined_macro_may_use_its_bundle_work_folder_and_images(ij, place):
    text = (
        f"open({dyn(place['image'])});\n"
        'work = getDirectory("current");\n'
        'saveAs("Tiff", work + "step.tif");\n'
        'File.saveString("tmp", work + "note.txt");\n'
        f's = File.openAsString("{place["bundle"]}/notes.txt");\n'
        f'File.saveString(s + "more", "{place["bundle"]}/written.txt");\n'
        'print("work=" + work);'
    )
    out = _run_confined(ij, place, text)
    assert out is not None and (place["bundle"] / "written.txt").read_text() == "bundle notes\nmore"
    work = Path(next(ln for ln in ij.log().splitlines() if ln.startswith("work=")).removeprefix("work="))
    assert work.name.startswith("deepimagej-macro-") and not work.exists()  # the work folder is removed after
    assert _snapshot(place["outside"]) == place["before"]


# ------------------------------------------------------------------ refused before running (the audit)
STATIC_REFUSED = [
    ("literal delete", 'print("ran");\nFile.delete("{victim}");', "File.delete", 2),
    ("exec", 'print("ran");\nexec("touch", "{outside}/marker");', "exec", 2),
    ("script", 'eval("script", "java.lang.System.exit(0)");', 'eval("script")', 1),
    ("Java outside ImageJ", 'call("java.lang.System.exit", "0");', 'call("java.lang.System.exit")', 1),
    ("Quit", 'run("Quit");', 'run("Quit")', 1),
    ("network", 's = File.openUrlAsString("http://127.0.0.1:9/");', "File.openUrlAsString", 1),
    ("link in the bundle leading out", 's = File.openAsString("{bundle}/link.txt");', "File.openAsString", 1),
]


@pytest.mark.parametrize(
    ("case", "macro", "what", "line"), STATIC_REFUSED, ids=[c[0] for c in STATIC_REFUSED]
)
def test_hostile_macro_is_refused_before_it_runs(ij, place, case, macro, what, line):
    before_log = ij.log()
    with pytest.raises(UntrustedBundleError, match="preprocessing.txt: refused before running") as err:
        _run_confined(
            ij, place, macro.format(victim=place["victim"], outside=place["outside"], bundle=place["bundle"])
        )
    assert f"{what}: line {line}:" in str(err.value)
    assert ij.log() == before_log  # not a statement ran
    assert _snapshot(place["outside"]) == place["before"]


# ------------------------------------------------------------------ through DeepImageJ Run
@pytest.fixture
def hostile_bundle(tmp_path):
    """A copy of the pancreatic bundle (weights linked) whose macros a test replaces."""
    if not (PANCREATIC / "config.xml").is_file():
        pytest.skip(f"{PANCREATIC} not built (scripts/build_models.py makes it)")
    bundle = tmp_path / "hostile-bundle"
    bundle.mkdir()
    for item in PANCREATIC.iterdir():
        if item.suffix in (".txt", ".xml", ".yaml", ".md"):
            (bundle / item.name).write_bytes(item.read_bytes())
        else:
            (bundle / item.name).symlink_to(item)
    return bundle


def test_bundle_macro_deleting_a_file_is_refused_inside_deepimagej_run(ij, hostile_bundle, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (hostile_bundle / "preprocessing.txt").write_text(f'print("pre");\nFile.delete({dyn(victim)});\n')
    log_before = ij.log()
    with pytest.raises(MacroError, match="refused: the macro tried to delete") as err:
        ij.run_macro(
            f'run("DeepImageJ Run", "model=[{hostile_bundle}] format=Tensorflow");\nprint("after");',
            np.zeros((64, 64), np.uint8),
        )
    assert err.value.macro == "preprocessing.txt" and err.value.line == 2
    assert (
        victim.read_text() == "precious\n" and "after" not in ij.log().removeprefix(log_before).splitlines()
    )


def test_macro_path_outside_the_bundle_is_refused(ij, hostile_bundle, tmp_path):
    evil = tmp_path / "somewhere.txt"
    evil.write_text('print("evil ran");\n')
    config = hostile_bundle / "config.xml"
    config.write_text(config.read_text().replace("preprocessing.txt", "../somewhere.txt"))
    (hostile_bundle / "rdf.yaml").unlink()
    with pytest.raises(BundleError, match="outside the bundle folder"):  # UntrustedBundleError is one
        ij.run_bundle(hostile_bundle, np.zeros((64, 64), np.uint8))
    assert "evil ran" not in ij.log()


# ------------------------------------------------------------------ every macro failure is an error
@pytest.mark.parametrize(
    ("macro", "message", "line"),
    [
        ('x = "abc;\nprint(x);', "unterminated string", 1),
        ("if (true) {\nprint(1);\n", "'}' expected", 1),
        ("x = 1;\n}\nprint(2);", "unexpected '}'", 2),
        ("x = 1;\ny = x +", "Number or numeric function expected", 2),
        (
            'call("java.lang.Integer.parseInt", "abc");\nprint("after");',
            "Java error in ImageJ: NumberFormatException",
            1,
        ),
        ('open("/nonexistent/x.tif");\nprint("after");', "File not found: /nonexistent/x.tif", 1),
        ('newImage("a", "32-bit black", 30000, 30000, 10);\nprint("after");', "not enough free memory", 1),
        ('eval("script", "1");\nprint("after");', "JavaScript", 1),
        ('print("x");\nexit("Please open an image first");', "Please open an image first", 2),
    ],
)
def test_every_macro_failure_is_an_error_with_its_line(ij, macro, message, line):
    log_before = ij.log()
    with pytest.raises(MacroError) as err:
        ij.run_macro(macro, timeout=60)
    assert message in str(err.value) and err.value.line == line, str(err.value)
    assert "There are no images open" not in str(err.value) and "\tat " not in str(err.value)
    assert "after" not in ij.log().removeprefix(log_before).splitlines()


# ------------------------------------------------------------------ time limits
@pytest.mark.parametrize(
    ("macro", "lines"),
    [
        ("x = 0;\nwhile (true) { x++; }", "2"),
        ("do { x = 1; } while (true);", "1"),
        ("for (i = 0; i < 1e15; i++) {\n  y = i;\n}", "[12]"),  # the loop's head or its body
        ("while (true);", "1"),  # no statement starts in there: the interpreter's flag ends it
        ("function f() {\n  for (;;) { }\n}\nf();", "[24]"),
    ],
)
def test_endless_loop_stops_within_the_limit_and_names_its_line(ij, macro, lines):
    t0 = time.monotonic()
    with pytest.raises(MacroError, match=f"still running after 2 s and was stopped at line {lines}"):
        ij.run_macro(macro, timeout=2)
    assert time.monotonic() - t0 < 3.5
    assert ij.run_macro('print("alive");').log.strip() == "alive"


def test_ctrl_c_in_python_stops_the_macro_too(ij):
    import _thread

    threading.Timer(1.0, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        ij.run_macro("while (true) { x = 1; }", timeout=60)
    t0 = time.monotonic()
    assert ij.run_macro('print("alive");').log.strip() == "alive"  # not waiting for the old macro
    assert time.monotonic() - t0 < 2


def test_bundle_macro_has_its_own_limit(ij, place):
    t0 = time.monotonic()
    with pytest.raises(MacroError, match="still running after 1 s"):
        _run_confined(ij, place, "while (true) { }", timeout=1)
    assert time.monotonic() - t0 < 3


def test_time_inside_deepimagej_commands_does_not_count(ij):
    ij.add_command("Slow Python Step", lambda session, options: time.sleep(1.5))
    res = ij.run_macro('run("Slow Python Step");\nprint("done");', timeout=1)
    assert res.log.strip() == "done"
    with pytest.raises(
        MacroError, match="still running after 1 s"
    ):  # the same time spent in the macro counts
        ij.run_macro("t = getTime();\nwhile (getTime() - t < 1500) { }", timeout=1)


def test_no_stall_on_a_syntax_error_under_cpu_load(ij):
    # the stall: the guard closed ImageJ's error dialog before its modal loop started (an event thread
    # quicker than the macro thread), leaving the macro waiting for the 300 s timeout. Load makes it likely.
    stop = time.monotonic() + 60
    busy = [
        subprocess.Popen([sys.executable, "-c", f"import time\nwhile time.time() < {time.time() + 60}: pass"])
        for _ in range(2)
    ]
    try:
        worst = 0.0
        for _ in range(30):
            t0 = time.monotonic()
            with pytest.raises(MacroError, match="Number or numeric function expected") as err:
                ij.run_macro("x = 1;\ny = ;\nz = 2;", timeout=20)
            assert err.value.line == 2
            worst = max(worst, time.monotonic() - t0)
            assert time.monotonic() < stop
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert worst < 5, worst


# ------------------------------------------------------------------ the command line, in fresh processes
def _cli(args: list[str], mark: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), DEEPIMAGEJ_TEST_MARK=mark)
    env.pop("DISPLAY", None)  # a private Xvfb, as on a server
    return subprocess.run(
        [sys.executable, "-m", "deepimagej", "macro", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        **kw,
    )


def _marked(mark: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            marked = f"DEEPIMAGEJ_TEST_MARK={mark}".encode() in (proc / "environ").read_bytes()
            if marked and ") Z " not in (proc / "stat").read_text():
                found.append(f"{proc.name} {(proc / 'comm').read_text().strip()}")
        except OSError:
            continue
    return found


def _leftovers(mark: str, grace: float = 5.0) -> list[str]:
    """Processes with this test's mark in their environment (Xvfb, java...) still running ``grace`` s after.

    The private Xvfb gets its SIGTERM from the kernel when the command's process ends and needs
    a moment to exit (longer under load).
    """
    end = time.monotonic() + grace
    while True:
        found = _marked(mark)
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.1)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr and "\tat " not in proc.stderr + proc.stdout, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("macro", "needle"),
    [
        ("x = 1;\ny = ;\n", "Number or numeric function expected (line 2)"),
        ('x = "abc;\nprint(x);\n', "unterminated string"),
        ('call("java.lang.Integer.parseInt", "abc");\n', "NumberFormatException"),
        ('open("/nonexistent/in.tif");\n', "File not found: /nonexistent/in.tif (line 1)"),
    ],
)
def test_cli_macro_errors_exit_2_with_one_line(tmp_path, macro, needle):
    mark = uuid.uuid4().hex
    path = tmp_path / "m.ijm"
    path.write_text(macro)
    proc = _cli([str(path)], mark)
    assert proc.returncode == 2 and needle in _one_line_error(proc)
    assert _leftovers(mark) == []


def test_cli_refuses_to_overwrite_its_input(tmp_path):
    import tifffile

    image = tmp_path / "in.tif"
    tifffile.imwrite(image, np.full((16, 16), 7, np.uint8))
    before = image.read_bytes()
    macro = tmp_path / "m.ijm"
    macro.write_text('run("Add...", "value=5");\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.tif").symlink_to(image)
    for out in (image, tmp_path / "sub" / ".." / "in.tif", tmp_path / "alias.tif", macro):
        proc = _cli([str(macro), "--image", str(image), "-o", str(out)], uuid.uuid4().hex)
        assert proc.returncode == 2 and "is an input of this run" in _one_line_error(proc), out
    assert image.read_bytes() == before and macro.read_text() == 'run("Add...", "value=5");\n'


def test_cli_results_into_a_missing_folder_is_refused_before_running(tmp_path):
    macro = tmp_path / "m.ijm"
    macro.write_text('print("ran");\n')
    proc = _cli([str(macro), "--results", str(tmp_path / "missing" / "r.csv")], uuid.uuid4().hex)
    assert proc.returncode == 2 and "does not exist" in _one_line_error(proc) and "ran" not in proc.stdout


def test_cli_writes_outputs_atomically(tmp_path):
    import tifffile

    macro = tmp_path / "m.ijm"
    macro.write_text('newImage("a", "16-bit ramp", 40, 30, 3);\nrun("Measure");\n')
    out, results = tmp_path / "out.tif", tmp_path / "r.csv"
    proc = _cli([str(macro), "-o", str(out), "--results", str(results)], uuid.uuid4().hex)
    assert proc.returncode == 0, proc.stderr
    assert tifffile.imread(out).shape == (3, 30, 40) and results.read_text().startswith("Area")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ijm", "out.tif", "r.csv"]  # no temporary left


def test_cli_timeout_stops_an_endless_loop(tmp_path):
    mark = uuid.uuid4().hex
    macro = tmp_path / "loop.ijm"
    macro.write_text("while (true) { x = 1; }\n")
    t0 = time.monotonic()
    proc = _cli([str(macro), "--timeout", "2"], mark)
    assert proc.returncode == 2 and "still running after 2 s" in _one_line_error(proc)
    assert time.monotonic() - t0 < 2 + 12  # start-up (Java, ImageJ, Xvfb) is the rest
    assert _leftovers(mark) == []


def _signal_cli(
    tmp_path: Path, signum: int, wait_for: str | None, delay: float, macro: str, extra: list[str] = ()
) -> tuple[int, float, str, str]:
    mark = uuid.uuid4().hex
    path = tmp_path / "m.ijm"
    path.write_text(macro)
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), DEEPIMAGEJ_TEST_MARK=mark, PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepimagej", "macro", str(path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: list[str] = []
    seen = threading.Event()

    def reader() -> None:
        for line in proc.stdout:
            out.append(line)
            if wait_for and wait_for in line:
                seen.set()

    threading.Thread(target=reader, daemon=True).start()
    if wait_for:
        assert seen.wait(120), "".join(out)
    time.sleep(delay)
    t0 = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    elapsed = time.monotonic() - t0
    return code, elapsed, proc.stderr.read(), mark


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 4.0])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_signal_at_any_point_stops_within_a_second(tmp_path, signum, delay):
    # 0.3 s: Python loading the commands; 0.8 s: Xvfb and Java starting; 1.5 s: ImageJ starting; 4 s: in the macro
    code, elapsed, stderr, mark = _signal_cli(tmp_path, signum, None, delay, "while (true) { x = 1; }\n")
    assert code in (128 + signum, -signum) and elapsed < 1.0, (code, elapsed, stderr)
    assert "Traceback" not in stderr and "JVMNotRunning" not in stderr
    assert _leftovers(mark) == []


def test_cli_signal_while_saving_leaves_no_partial_output(tmp_path):
    out = tmp_path / "big.tif"
    code, elapsed, stderr, mark = _signal_cli(
        tmp_path,
        signal.SIGTERM,
        "saving now",
        0.05,
        'newImage("big", "32-bit random", 2000, 2000, 40);\nprint("saving now");\n',
        ["-o", str(out)],
    )
    assert code == 128 + signal.SIGTERM and elapsed < 1.0, (code, elapsed, stderr)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.ijm"]
    assert _leftovers(mark) == []


def test_cli_killed_leaves_no_x_server(tmp_path):
    code, _, _, mark = _signal_cli(tmp_path, signal.SIGKILL, None, 5.0, "while (true) { x = 1; }\n")
    assert code == -signal.SIGKILL
    assert _leftovers(mark) == []  # the kernel ends Xvfb with its parent (parent-death signal)
