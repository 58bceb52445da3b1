"""Images larger than memory: lazy inputs, outputs streamed to OME-Zarr / zarr / TIFF, and Dask.

The model is a small PyTorch network built by the tests (tests/bundle_factory.py: two inputs,
two outputs, ``zero_mean_unit_variance`` and ``scale_range`` percentile pre-processing), run
through ONNX so that 4096x4096 images take seconds. Dask runs use real ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bundle_factory
import numpy as np
import pytest
import tifffile

from deepimagej import predict, stores
from deepimagej.bundle import load_bundle
from deepimagej.errors import DeepImageJError

pytest.importorskip("zarr")
pytest.importorskip("distributed")
pytest.importorskip("onnx")

SIZE = 4096
BUDGET = "900M"


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    return bundle_factory.two_in_two_out_bundle(tmp_path_factory.mktemp("two_io") / "bundle").parent


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory):
    """A 4096x4096 raw image and its 2-channel auxiliary, as tiled TIFFs (read block by block)."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(7)
    raw = (rng.gamma(2.0, 40.0, (SIZE, SIZE))).astype(np.float32)
    aux = (rng.random((2, SIZE, SIZE)) * 100).astype(np.float32)
    tifffile.imwrite(folder / "raw.tif", raw, tile=(256, 256))
    tifffile.imwrite(folder / "aux.tif", aux, tile=(256, 256), metadata={"axes": "CYX"})
    return folder, raw, aux


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    code = (
        "import sys, json\n"
        "from deepimagej.cli import main\n"
        "from deepimagej.memory import peak_rss_bytes\n"
        "code = 0\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "print(json.dumps({'peak': peak_rss_bytes(), 'code': code}))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )


def _peak(proc: subprocess.CompletedProcess) -> int:
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak"]


def test_streamed_equals_in_memory_tiff_to_ome_zarr_to_tiff(two_io, big_inputs, tmp_path):
    """4096x4096 TIFFs -> OME-Zarr (both outputs) -> TIFF, with small tiles and a small memory budget."""
    folder, raw, aux = big_inputs
    spec = load_bundle(two_io)
    expected = predict.run(
        spec,
        {"raw": raw, "aux": aux},
        axes={"raw": "yx", "aux": "cyx"},
        weights_format="onnx",
        tile={"y": 512, "x": 512},
    )
    zarr_out = tmp_path / "result.ome.zarr"
    proc = _cli(
        "run",
        str(two_io),
        "--input",
        f"raw={folder / 'raw.tif'}",
        "--input",
        f"aux={folder / 'aux.tif'}",
        "--axes",
        "aux=cyx",
        "-o",
        str(zarr_out),
        "--tile",
        "512",
        "--weights",
        "onnx",
        "--max-memory",
        BUDGET,
        "-v",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _peak(proc) <= stores_budget(), f"peak {_peak(proc) / 2**20:.0f} MiB over {BUDGET}: {proc.stdout}"
    seg = stores.open_image(zarr_out / "seg")
    score = stores.open_image(zarr_out / "score")
    assert seg.axes == "cyx" and seg.shape == (3, SIZE, SIZE)  # NGFF order: channel before space
    assert seg.array.chunks[1] < SIZE  # block by block
    np.testing.assert_array_equal(np.moveaxis(np.asarray(seg.array[:]), 0, -1), expected["seg"])
    np.testing.assert_array_equal(np.asarray(score.array[:]), expected["score"])
    attrs = json.loads((zarr_out / "seg" / ".zattrs").read_text())
    assert [a["name"] for a in attrs["multiscales"][0]["axes"]] == ["c", "y", "x"]

    # OME-Zarr in, TIFF out: the score map through a second (down-sampling) model
    down = bundle_factory.resampling_bundle(tmp_path / "down", "down2").parent
    tif_out = tmp_path / "down.tif"
    proc = _cli(
        "run",
        str(down),
        str(zarr_out / "score"),
        "-o",
        str(tif_out),
        "--workers",
        "1",
        "--tile",
        "400",
        "--weights",
        "onnx",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected_down = predict.run(
        load_bundle(down), expected["score"], axes="yx", weights_format="onnx", tile={"y": 400, "x": 400}
    )
    back = tifffile.imread(tif_out)
    assert back.shape == (2, SIZE // 2, SIZE // 2)
    np.testing.assert_array_equal(np.moveaxis(back, 0, -1), expected_down)


def stores_budget() -> int:
    from deepimagej.memory import parse_size

    return parse_size(BUDGET)


@pytest.mark.parametrize("kind", ["zarr", "tif"])
def test_other_store_kinds(two_io, tmp_path, kind):
    rdf = bundle_factory.resampling_bundle(tmp_path / "up", "up2")
    image = np.random.default_rng(3).random((300, 260)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64))
    out = tmp_path / f"out.{kind}"
    spec = load_bundle(rdf)
    result = predict.predict(
        spec,
        predict.bind_inputs(spec, stores.open_image(tmp_path / "in.tif")),
        out=out,
        tile={"y": 96, "x": 96},
        weights_format="onnx",
    )
    expected = predict.run(spec, image, axes="yx", weights_format="onnx", tile={"y": 96, "x": 96})
    got = result.outputs["out"]
    assert got.axes == "yxc" if kind == "zarr" else got.axes in ("cyx", "yxc")
    array = np.asarray(got.array[:])
    array = array if got.axes == "yxc" else np.moveaxis(array, 0, -1)
    np.testing.assert_array_equal(array, expected)
    assert not list(tmp_path.glob(".out*"))  # nothing left of the temporary store


def test_existing_store_and_bad_targets_are_refused_before_any_work(two_io, big_inputs, tmp_path):
    folder, _, _ = big_inputs
    existing = tmp_path / "done.ome.zarr"
    existing.mkdir()
    start = time.perf_counter()
    proc = _cli(
        "run",
        str(two_io),
        "--input",
        f"raw={folder / 'raw.tif'}",
        "--input",
        f"aux={folder / 'aux.tif'}",
        "-o",
        str(existing),
    )
    assert proc.returncode == 2 and "exists already" in proc.stderr and "--overwrite" in proc.stderr
    assert time.perf_counter() - start < 30
    proc = _cli(
        "run",
        str(two_io),
        "--input",
        f"raw={folder / 'raw.tif'}",
        "--input",
        f"aux={folder / 'aux.tif'}",
        "-o",
        str(tmp_path / "missing" / "r.ome.zarr"),
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_tiff_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path, np.zeros((4, 32, 32), np.uint8), imagej=True, metadata={"axes": "ZYX", "slices": 4}
    )
    data = path.read_bytes()
    path.write_bytes(data.replace(b"slices=4", b"slices=9").replace(b"images=4", b"images=9"))
    with pytest.raises(DeepImageJError, match="declares 9 image planes"):
        stores.open_image(path)


# --------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real `dask scheduler` and two `dask worker` processes (one thread each) on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).with_name("dask")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path_factory.mktemp("dask")
    procs = [
        subprocess.Popen(
            [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=open(log / "scheduler.log", "w"),  # noqa: SIM115 - open while the process runs
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    workers = []
    for i in range(2):
        worker = subprocess.Popen(
            [
                str(dask),
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--name",
                f"w{i}",
                "--dashboard-address",
                ":0",
            ],
            stdout=open(log / f"worker{i}.log", "w"),  # noqa: SIM115 - as above
            stderr=subprocess.STDOUT,
            env=env,
        )
        workers.append(worker)
    procs += workers
    from distributed import Client

    client = Client(address, timeout=30)
    client.wait_for_workers(2, timeout=60)
    client.close()
    yield address, workers, log
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _medium(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    raw = (rng.random((768, 1024)) * 255).astype(np.float32)
    aux = (rng.random((2, 768, 1024)) * 9).astype(np.float32)
    tifffile.imwrite(tmp_path / "raw.tif", raw, tile=(128, 128))
    tifffile.imwrite(tmp_path / "aux.tif", aux, tile=(128, 128), metadata={"axes": "CYX"})
    return tmp_path / "raw.tif", tmp_path / "aux.tif", raw, aux


def _one_process(two_io: Path, raw: Path, aux: Path, out: Path) -> None:
    spec = load_bundle(two_io)
    images = {"raw": stores.open_image(raw), "aux": stores.open_image(aux)}
    predict.predict(
        spec,
        predict.bind_inputs(spec, images, {"raw": "yx", "aux": "cyx"}),
        out=out,
        tile={"y": 64, "x": 64},
        weights_format="onnx",
    )


def _read(out: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(stores.open_image(out / name).array[:]) for name in ("seg", "score")}


def test_local_workers_and_a_scheduler_equal_one_process(two_io, cluster, tmp_path):
    address, _, _ = cluster
    raw, aux, _, _ = _medium(tmp_path)
    _one_process(two_io, raw, aux, tmp_path / "one.ome.zarr")
    reference = _read(tmp_path / "one.ome.zarr")
    common = [
        "--input",
        f"raw={raw}",
        "--input",
        f"aux={aux}",
        "--axes",
        "aux=cyx",
        "--tile",
        "64",
        "--weights",
        "onnx",
    ]
    proc = _cli("run", str(two_io), *common, "-o", str(tmp_path / "local.ome.zarr"), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _cli("run", str(two_io), *common, "-o", str(tmp_path / "remote.ome.zarr"), "--scheduler", address)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from distributed import Client

    with Client(
        address, timeout=30
    ) as client:  # the Python API with the user's own client (a lazy TIFF input)
        spec = load_bundle(two_io)
        images = {"raw": stores.open_image(raw), "aux": stores.open_image(aux)}
        predict.predict(
            spec,
            predict.bind_inputs(spec, images, {"raw": "yx", "aux": "cyx"}),
            out=tmp_path / "client.ome.zarr",
            tile={"y": 64, "x": 64},
            weights_format="onnx",
            scheduler=client,
        )
    for name in ("local.ome.zarr", "remote.ome.zarr", "client.ome.zarr"):
        got = _read(tmp_path / name)
        for key in reference:
            assert np.array_equal(got[key], reference[key]), (name, key)


def test_a_worker_killed_mid_run_still_gives_the_complete_identical_result(two_io, cluster, tmp_path):
    from distributed import Client

    address, _, _ = cluster
    raw, aux, _, _ = _medium(tmp_path)
    _one_process(two_io, raw, aux, tmp_path / "one.ome.zarr")
    reference = _read(tmp_path / "one.ome.zarr")
    # a third worker, killed while the run goes on
    dask = Path(sys.executable).with_name("dask")
    victim = subprocess.Popen(
        [str(dask), "worker", address, "--nthreads", "1", "--no-nanny", "--name", "victim"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with Client(address, timeout=30) as client:
        client.wait_for_workers(3, timeout=60)
    out = tmp_path / "killed.ome.zarr"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepimagej",
            "run",
            str(two_io),
            "--input",
            f"raw={raw}",
            "--input",
            f"aux={aux}",
            "--axes",
            "aux=cyx",
            "--tile",
            "48",
            "--weights",
            "onnx",
            "-o",
            str(out),
            "--scheduler",
            address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    part = None
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:  # wait until blocks are being written
        parts = list(tmp_path.glob(".killed.ome.zarr.part-*"))
        chunks = list(parts[0].rglob("0.0.*")) if parts else []
        if len(chunks) > 20:
            part = parts[0]
            break
        time.sleep(0.05)
    assert part is not None and run.poll() is None, "the run ended before a worker could be killed"
    victim.kill()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stdout + stderr
    got = _read(out)
    for key in reference:
        assert np.array_equal(got[key], reference[key]), key


def test_a_scheduler_that_does_not_answer_is_a_quick_error(two_io, tmp_path):
    raw, aux, _, _ = _medium(tmp_path)
    start = time.perf_counter()
    proc = _cli(
        "run",
        str(two_io),
        "--input",
        f"raw={raw}",
        "--input",
        f"aux={aux}",
        "-o",
        str(tmp_path / "r.ome.zarr"),
        "--scheduler",
        f"tcp://127.0.0.1:{_free_port()}",
    )
    assert proc.returncode == 2 and "does not answer" in proc.stderr, proc.stderr
    assert time.perf_counter() - start < 40
    assert not list(tmp_path.glob("*.ome.zarr")) and not list(tmp_path.glob(".r.ome.zarr*"))


def test_a_worker_without_deepimagej_is_named(tmp_path):
    """A worker whose Python cannot import deepimagej (a broken copy shadows it) is refused with the fix."""
    from deepimagej.distributed import ClusterError, connect

    fake = tmp_path / "fake" / "deepimagej"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('this worker has no deepimagej')\n")
    port = _free_port()
    dask = Path(sys.executable).with_name("dask")
    scheduler = subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [str(dask), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny"],
        env={**os.environ, "PYTHONPATH": str(fake.parent)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        with pytest.raises(ClusterError, match="install the same deepimagej on every worker"):
            connect(f"tcp://127.0.0.1:{port}")
    finally:
        for p in (worker, scheduler):
            p.terminate()
            p.wait(timeout=10)


def test_interrupted_run_leaves_no_complete_store_and_no_processes(two_io, tmp_path):
    raw, aux, _, _ = _medium(tmp_path)
    out = tmp_path / "stopped.ome.zarr"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepimagej",
            "run",
            str(two_io),
            "--input",
            f"raw={raw}",
            "--input",
            f"aux={aux}",
            "--axes",
            "aux=cyx",
            "--tile",
            "48",
            "--weights",
            "onnx",
            "-o",
            str(out),
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:
        parts = list(tmp_path.glob(".stopped.ome.zarr.part-*"))
        if parts and len(list(parts[0].rglob("0.0.*"))) > 10:
            break
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be interrupted"
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0, err
    assert not out.exists()
    assert not list(tmp_path.glob(".stopped.ome.zarr*"))
    time.sleep(1)
    session = subprocess.run(
        ["ps", "-o", "pid=,stat=", "--sid", str(run.pid)], capture_output=True, text=True
    )
    # zombies are dead already: only an init that does not reap keeps them in the table
    children = [
        line.split()[0] for line in session.stdout.splitlines() if not line.split()[1].startswith("Z")
    ]
    detail = subprocess.run(
        ["ps", "-o", "pid,etime,args", "-p", ",".join(children or ["1"])], capture_output=True, text=True
    ).stdout
    assert not children, f"processes left behind: {children}\n{detail}"
