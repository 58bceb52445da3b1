"""The memory budget: sizes, the tile/batch choice, the measured memory model, and a budget held for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bundle_factory
import numpy as np
import pytest

from deepimagej import memory
from deepimagej.bundle import load_bundle
from deepimagej.bundle.spec import AxisSpec, ModelSpec, TensorSpec
from deepimagej.errors import DeepImageJError


def test_parse_size():
    assert memory.parse_size("1.5G") == int(1.5 * 2**30)
    assert memory.parse_size("800M") == 800 * 2**20
    assert memory.parse_size("2GiB") == 2 * 2**30
    assert memory.parse_size("512mb") == 512 * 2**20
    assert memory.parse_size(1e9) == 10**9
    for bad in ("lots", "-1G", "0", "1.5X"):
        with pytest.raises(DeepImageJError, match="not a size|positive"):
            memory.parse_size(bad)


def _spec(halo: int = 16, step: int = 8) -> ModelSpec:
    inp = TensorSpec(
        "in",
        (
            AxisSpec("b"),
            AxisSpec("y", min=step, step=step),
            AxisSpec("x", min=step, step=step),
            AxisSpec("c", size=1),
        ),
    )
    out = TensorSpec(
        "out",
        (
            AxisSpec("b"),
            AxisSpec("y", reference=("in", "y"), halo=halo),
            AxisSpec("x", reference=("in", "x"), halo=halo),
            AxisSpec("c", size=1),
        ),
    )
    return ModelSpec("m", Path("rdf.yaml"), "bioimageio", "0.4.10", (inp,), (out,))


MODEL = memory.MemoryModel(per_pixel=400.0, fixed=20e6, source="measured")


@pytest.mark.parametrize("budget_mib", [2000, 1000, 700, 600])
def test_choice_fits_the_budget_and_smaller_budgets_give_smaller_tiles(budget_mib):
    spec = _spec()
    baseline = 500 * 2**20
    budget = budget_mib * 2**20
    choice = memory.choose(spec, {"y": 3000, "x": 2000}, MODEL, budget=budget, baseline=baseline, strict=True)
    assert choice.estimated_peak <= budget
    call = MODEL.call_bytes(choice.tile["y"] * choice.tile["x"] * choice.batch)
    assert baseline + call <= budget
    bigger = memory.choose(
        spec, {"y": 3000, "x": 2000}, MODEL, budget=budget * 2, baseline=baseline, strict=True
    )
    assert bigger.tile["y"] * bigger.tile["x"] >= choice.tile["y"] * choice.tile["x"]


def test_a_budget_too_small_is_a_clear_error_unless_it_is_the_default():
    spec = _spec()
    with pytest.raises(DeepImageJError, match="too small.*--max-memory"):
        memory.choose(
            spec, {"y": 3000, "x": 2000}, MODEL, budget=510 * 2**20, baseline=500 * 2**20, strict=True
        )
    smallest = memory.choose(spec, {"y": 3000, "x": 2000}, MODEL, budget=510 * 2**20, baseline=500 * 2**20)
    assert smallest.n_tiles > 100  # the smallest tiles that work


def test_default_call_limit_and_batches_of_small_tiles():
    spec = _spec()
    limited = memory.choose(
        spec,
        {"y": 4000, "x": 4000},
        MODEL,
        budget=64 * 2**30,
        baseline=0,
        call_limit=memory.DEFAULT_CALL_BYTES,
    )
    assert MODEL.call_bytes(limited.tile["y"] * limited.tile["x"]) <= memory.DEFAULT_CALL_BYTES
    assert limited.n_tiles > 1
    small = memory.choose(
        spec, {"y": 4000, "x": 4000}, MODEL, budget=64 * 2**30, baseline=0, tile={"y": 64, "x": 64}
    )
    assert small.tile == {"y": 64, "x": 64} and small.batch > 1
    assert small.batch * 64 * 64 <= memory.BATCH_PIXELS
    one = memory.choose(
        spec,
        {"y": 4000, "x": 4000},
        MODEL,
        budget=64 * 2**30,
        baseline=0,
        tile={"y": 64, "x": 64},
        fixed_batch=1,
    )
    assert one.batch == 1


def test_reusable_runtime_memory_is_not_counted_twice():
    spec = _spec()
    args = {"budget": int(1.8 * 2**30), "baseline": 1500 * 2**20}
    fresh = memory.choose(spec, {"y": 2000, "x": 2000}, MODEL, **args)
    warm = memory.choose(spec, {"y": 2000, "x": 2000}, MODEL, reusable=600 * 2**20, **args)
    assert warm.tile["y"] * warm.tile["x"] > fresh.tile["y"] * fresh.tile["x"]
    assert warm.estimated_peak <= args["budget"] and fresh.estimated_peak <= args["budget"]


def test_measured_memory_model_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPIMAGEJ_CACHE", str(tmp_path / "cache"))
    rdf = bundle_factory.resampling_bundle(tmp_path / "b", "up2")
    spec = load_bundle(rdf)
    weights = spec.weights["onnx"]
    assert memory.estimate(spec, weights).source == "default"
    model = memory.measure(spec, weights)
    assert model.source == "measured" and model.per_pixel > 0 and model.loaded > 0
    assert list((tmp_path / "cache" / "memory").glob("onnx-*.json"))
    assert memory.estimate(spec, weights) == model


def test_max_memory_holds_for_a_real_run(pancreatic_bundle, tmp_path):
    """A child process runs the U-Net on a 1536x1536 image under a budget; its peak RSS stays below it."""
    from deepimagej.io import ImageData, write_image

    image = (np.random.default_rng(0).random((1536, 1536)) * 255).astype(np.uint8)
    write_image(tmp_path / "in.tif", ImageData(image, "yx"))
    budget = "900M"
    # VmHWM: the peak of this process's own memory (ru_maxrss would carry the forking parent's over exec)
    code = (
        "import sys, json\n"
        "from deepimagej.cli import main\n"
        "from deepimagej.memory import peak_rss_bytes\n"
        "try:\n"
        f"    main(['run', {str(pancreatic_bundle.root)!r}, {str(tmp_path / 'in.tif')!r}, '-o', "
        f"{str(tmp_path / 'out.tif')!r}, '--max-memory', {budget!r}, '-v'])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps({'peak': peak_rss_bytes()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (tmp_path / "out.tif").is_file(), proc.stdout + proc.stderr
    assert "estimated peak" in proc.stdout
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
    assert peak <= memory.parse_size(budget), (
        f"peak {peak / 2**20:.0f} MiB over the {budget} budget: {proc.stdout}"
    )
