"""Hostile bundles: models whose code touches files or processes, and zip tricks.

Each hostile model writes a proof file into ``{M}/pwned`` when its code runs: an untrusted run
must be refused before that happens (``forbid``); with ``--trust`` it runs and the proof appears.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hostile.case import ERROR, OK, REFUSED, Case

SMALL = "{M}/inputs/small.npy"
BCYX = "{M}/inputs/bcyx.npy"


def run(model: str, image: str = SMALL, *extra: str) -> tuple[str, ...]:
    return ("run", f"{{M}}/models/{model}", image, "-o", "{C}/out.tif", *extra)


def _copies(*names: str, extra_comment: str = ""):
    """Copies of a model bundle in the case folder (the last one's rdf.yaml may differ by a comment)."""

    def setup(case: Path, materials: Path) -> None:
        for i, name in enumerate(names):
            target = case / f"b{i}"
            shutil.copytree(materials / "models" / name, target)
            if extra_comment and i == len(names) - 1:
                with open(target / "rdf.yaml", "a", encoding="utf-8") as fh:
                    fh.write(f"# {extra_comment}\n")

    return setup


def _no_big_files(case: Path, materials: Path, outcome) -> str | None:
    for root in (materials / "cache", case):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size > 100 * 2**20:
                return f"a {path.stat().st_size >> 20} MiB file was left at {path}"
    return None


def _nothing_escaped(name: str):
    def check(case: Path, materials: Path, outcome) -> str | None:
        found = [p for p in materials.parent.rglob(name) if p.is_file()]
        return f"zip entry extracted outside its folder: {found[0]}" if found else None

    return check


CASES = [
    # --- TensorFlow graphs -------------------------------------------------------------------------
    Case(
        "tf_writefile",
        REFUSED,
        argv=run("tf_writefile"),
        says=("WriteFile",),
        forbid=("{M}/pwned/tf_writefile.txt",),
        trusted=True,
        cold_cache=True,
    ),
    Case("tf_readfile", REFUSED, argv=run("tf_readfile"), says=("ReadFile",)),
    Case("tf_matchingfiles", REFUSED, argv=run("tf_matchingfiles"), says=("MatchingFiles",)),
    Case("tf_pyfunc", REFUSED, argv=run("tf_pyfunc"), says=("PyFunc", "Python")),
    Case("tf_dataset_reader", REFUSED, argv=run("tf_dataset"), says=("Dataset",)),
    Case(
        "tf_printv2_to_file",
        REFUSED,
        argv=run("tf_printv2"),
        says=("PrintV2",),
        forbid=("{M}/pwned/tf_print.txt",),
        trusted=True,
    ),
    Case(
        "tf_writefile_in_while_body",
        REFUSED,
        argv=run("tf_while"),
        says=("WriteFile", "while_body"),
        forbid=("{M}/pwned/tf_while.txt",),
        trusted=True,
    ),
    Case("tf_restorev2_in_model", REFUSED, argv=run("tf_restorev2"), says=("RestoreV2", "checkpoint")),
    Case("tf_unknown_op", REFUSED, argv=run("tf_unknown_op"), says=("DeepimagejEvilOp", "custom op")),
    Case(
        "tf_unknown_op_trusted",
        ERROR,
        argv=run("tf_unknown_op", SMALL, "--trust"),
        says=("cannot load SavedModel",),
    ),
    Case("tf_clean_runs", OK, argv=run("tf_clean"), says=("tf_clean",)),
    Case(
        "tf_info_shows_audit",
        OK,
        argv=("info", "{M}/models/tf_writefile"),
        says=(
            "refused: tensorflow_saved_model_bundle.zip: WriteFile",
            "not trusted",
            "layers      : not loaded",
        ),
    ),
    Case(
        "tf_info_trusted_loads_layers",
        OK,
        argv=("info", "{M}/models/tf_readfile", "--trust"),
        says=("ReadFile", "signature 'serving_default'"),
    ),
    Case(
        "tf_test_refused_then_trusted",
        REFUSED,
        argv=("test", "{M}/models/tf_readfile"),
        says=("ReadFile",),
        trusted=True,
    ),
    Case(
        "python_api_refused_then_trusted",
        REFUSED,
        python=(
            "import numpy as np, deepimagej\n"
            "out = deepimagej.run('{M}/models/tf_readfile', np.ones((16, 16), np.float32), trust=TRUST)\n"
            "assert out.shape == (16, 16)\n"
        ),
        says=("ReadFile",),
        trusted=True,
    ),
    # --- trust records ------------------------------------------------------------------------------
    Case(
        "trust_record_allows_run",
        OK,
        argv=("run", "{C}/b0", SMALL, "-o", "{C}/out.tif"),
        before=(("trust", "{C}/b0"),),
        setup=_copies("tf_trust_record"),
        says=("tf_trust_record",),
    ),
    Case(
        "trust_record_is_per_content",
        REFUSED,
        argv=("run", "{C}/b1", SMALL, "-o", "{C}/out.tif"),
        before=(("trust", "{C}/b0"),),
        setup=_copies("tf_trust_record", "tf_trust_record", extra_comment="changed"),
        says=("WriteFile",),
    ),
    Case(
        "trust_revoked",
        REFUSED,
        argv=("run", "{C}/b0", SMALL, "-o", "{C}/out.tif"),
        before=(("trust", "{C}/b0"), ("trust", "--revoke", "{C}/b0")),
        setup=_copies("tf_trust_record"),
        says=("WriteFile",),
    ),
    Case(
        "trust_list",
        OK,
        argv=("trust", "--list"),
        before=(("trust", "{C}/b0"),),
        setup=_copies("tf_trust_record"),
        says=("tf_trust_record",),
    ),
    Case("trust_without_bundle", ERROR, argv=("trust",), says=("BUNDLE",)),
    # --- Keras -----------------------------------------------------------------------------------
    Case(
        "keras_lambda_h5",
        REFUSED,
        argv=run("keras_lambda_h5"),
        says=("Lambda",),
        forbid=("{M}/pwned/keras_lambda.txt",),
        trusted=True,
        cold_cache=True,
    ),
    Case("keras_lambda_keras_v3", REFUSED, argv=run("keras_lambda_keras"), says=("Lambda",)),
    Case("keras_custom_object", REFUSED, argv=run("keras_custom"), says=("EvilConv2D", "custom object")),
    Case(
        "keras_custom_object_trusted",
        ERROR,
        argv=run("keras_custom", SMALL, "--trust"),
        says=("cannot load Keras",),
    ),
    # --- TorchScript --------------------------------------------------------------------------------
    Case(
        "ts_save_in_forward",
        REFUSED,
        argv=run("ts_save", BCYX, "--axes", "bcyx"),
        says=("aten::save",),
        forbid=("{M}/pwned/ts_save.pt",),
        trusted=True,
    ),
    Case(
        "ts_save_in_setstate",
        REFUSED,
        argv=run("ts_setstate", BCYX, "--axes", "bcyx"),
        says=("aten::save",),
        forbid=("{M}/pwned/ts_setstate.pt",),
        trusted=True,
        cold_cache=True,
    ),
    Case(
        "ts_from_file",
        REFUSED,
        argv=run("ts_from_file", BCYX, "--axes", "bcyx"),
        says=("aten::from_file",),
        trusted=True,
    ),
    Case(
        "ts_error_at_run_time",
        ERROR,
        argv=run("ts_error", BCYX, "--axes", "bcyx"),
        says=("needs 3 channels",),
    ),
    Case("ts_clean_runs", OK, argv=run("ts_clean", BCYX, "--axes", "bcyx"), says=("ts_clean",)),
    Case(
        "ts_info_does_not_load",
        OK,
        argv=("info", "{M}/models/ts_from_file"),
        says=("aten::from_file", "not loaded"),
    ),
    # --- zips ---------------------------------------------------------------------------------------
    Case("zip_bomb", ERROR, argv=run("zip_bomb"), says=("zip bomb",), check=_no_big_files, timeout=60),
    Case("zip_bomb_info", OK, argv=("info", "{M}/models/zip_bomb"), says=("zip bomb",), check=_no_big_files),
    Case(
        "zip_path_traversal",
        ERROR,
        argv=run("zip_traversal"),
        says=("outside the bundle folder",),
        check=_nothing_escaped("zip_traversal_escaped.txt"),
    ),
    Case(
        "zip_absolute_entry",
        ERROR,
        argv=run("zip_absolute"),
        says=("outside the bundle folder",),
        forbid=("/tmp/deepimagej_zip_absolute.txt",),
    ),
    Case("zip_symlink_entry", ERROR, argv=run("zip_symlink"), says=("symbolic link",)),
    Case("zip_not_a_zip", ERROR, argv=run("zip_garbage"), says=("not a valid zip",)),
    Case("zip_without_model", ERROR, argv=run("zip_no_model"), says=("no saved_model.pb",)),
]
