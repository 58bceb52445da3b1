"""Running a model on a Dask cluster (dask.distributed): batches of blocks as tasks.

The run is planned in the client as for one process (:func:`deepimagej.predict.plan_run`):
the same batches (:func:`deepimagej.tiling.batches`), the same pre-processing statistics; each
batch becomes one task. A worker loads the model once (the engines' per-process cache), opens
the inputs itself -- files and stores every worker can reach: a TIFF, an OME-Zarr, a zarr array;
an in-memory image is sent to the cluster once -- and writes its blocks straight into the output
store, whose chunks are the blocks, so no two tasks write the same chunk and a task that runs
again (its worker died) writes the same bytes. The output is identical to a one-process run.

The cluster is a local one (:func:`local_cluster`, ``--workers N``: N worker processes with
one thread each) or an existing scheduler (``--scheduler tcp://HOST:PORT``). Each worker runs its
model with as many threads as it has (``DEEPIMAGEJ_THREADS``), so N workers on N cores do not
fight over them.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej import blocks, tiling
from deepimagej.bundle.spec import ModelSpec
from deepimagej.errors import DeepImageJError
from deepimagej.layout import Layout, OutputAxes, UserOrder

__all__ = ["ClusterError", "InputRef", "OutputRef", "connect", "run_distributed"]

#: Seconds to wait for a scheduler before saying it does not answer.
#: Seconds an interrupted run waits for the tasks already running on the workers.
STOP_TIMEOUT = 120
CONNECT_TIMEOUT = 5


class ClusterError(DeepImageJError):
    """The Dask cluster cannot be reached or cannot run the model."""


@dataclass(frozen=True)
class InputRef:
    """How a worker gets an input: a file or store it opens itself, or an array sent with the run.

    Attributes:
        path: an image file or store every worker can read (:func:`deepimagej.stores.open_image`).
        layout: the user's axes -> the model's (:class:`~deepimagej.layout.Layout`).
        axes: the axes of the image in the file, as the user bound them.
        array: an in-memory input (model layout), sent to the cluster (``path`` is then ``None``).
    """

    layout: Layout
    axes: str
    path: Path | None = None
    array: Any = None


@dataclass(frozen=True)
class OutputRef:
    """Where a worker writes an output: a zarr array (its path) laid out as the user gets it."""

    path: Path
    mapping: OutputAxes
    model_shape: tuple[int, ...]
    batch_shape: tuple[int, ...]
    maps: dict[str, tiling.AxisMap | None] = field(default_factory=dict)
    post: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class RunSpec:
    """Everything a task needs besides its jobs (sent to the cluster once per run)."""

    spec: ModelSpec
    weights_format: str
    trust_code: bool
    plan: tiling.TilePlan
    fixed_batch: int | None
    transforms: dict[str, Callable[[np.ndarray, int], np.ndarray]]


def connect(scheduler: str | None = None, workers: int | None = None) -> Any:
    """A ``distributed.Client``: to ``scheduler`` (``tcp://HOST:PORT``), or to a local cluster of ``workers``.

    Raises:
        ClusterError: the scheduler does not answer within :data:`CONNECT_TIMEOUT` seconds, or
            its workers lack deepimagej.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError(
            "running on a Dask cluster needs dask.distributed: pip install 'deepimagej[dask]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"the Dask scheduler {scheduler} does not answer ({type(exc).__name__}); start it with "
                "`dask scheduler` and check the address"
            ) from None
    else:
        cluster = LocalCluster(
            n_workers=max(1, int(workers or 1)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"DEEPIMAGEJ_THREADS": "1"},
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    _check_workers(client)
    return client


def _worker_versions() -> str:
    import deepimagej

    os.environ.setdefault("DEEPIMAGEJ_THREADS", str(_worker_threads()))
    return deepimagej.__version__


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):
        return 1


def _check_workers(client: Any) -> None:
    import deepimagej

    try:
        versions = client.run(_worker_versions)
    except Exception as exc:  # noqa: BLE001 - a worker that cannot unpickle the function lacks the package
        raise ClusterError(
            f"a Dask worker cannot run deepimagej ({type(exc).__name__}: {exc}); install the same deepimagej "
            "on every worker"
        ) from None
    if not versions:
        raise ClusterError("the Dask cluster has no workers; start some with `dask worker SCHEDULER_ADDRESS`")
    wrong = {w: v for w, v in versions.items() if v != deepimagej.__version__}
    if wrong:
        worker, version = next(iter(wrong.items()))
        raise ClusterError(
            f"the Dask worker {worker} runs deepimagej {version}, this client {deepimagej.__version__}; "
            "install the same version on every worker"
        )


# --------------------------------------------------------------------------------------------
# what runs on a worker
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _opened(path: Path) -> Any:
    from deepimagej.stores import open_image

    return open_image(path)


def _sources(run: RunSpec, inputs: Mapping[str, InputRef]) -> dict[str, tuple[Any, str]]:
    sources = {}
    for name, ref in inputs.items():
        if ref.path is not None:
            sources[name] = (ref.layout.to_model(_opened(ref.path).array), ref.layout.model_axes)
        else:
            sources[name] = (ref.array, ref.layout.model_axes)
    return sources


def _engine(run: RunSpec) -> Any:
    from deepimagej.engines import load_engine

    spec = run.spec
    return load_engine(
        spec.weights[run.weights_format],
        [t.name for t in spec.inputs],
        [t.name for t in spec.outputs],
        trust_code=run.trust_code,
    )


def compute_batch(run: RunSpec, inputs: Mapping[str, InputRef], jobs: list[tuple[int, tiling.Tile]]) -> Any:
    """Task: cut and run one batch; returns ``(batch, results)`` (kept on the worker until written)."""
    import dask

    with dask.config.set(scheduler="synchronous"):  # lazy inputs are read here, not scheduled
        batch = tiling.stack_batch(
            run.plan, jobs, _sources(run, inputs), fill_to=run.fixed_batch, transforms=run.transforms
        )
    return batch, blocks.call_model(run.spec, _engine(run), batch)


def write_results(run: RunSpec, outputs: Mapping[str, OutputRef], computed: Any) -> int:
    """Task: write a computed batch's blocks into the output store; returns the blocks written."""
    import zarr

    batch, results = computed
    stitchers = {}
    for name, ref in outputs.items():
        target = UserOrder(
            zarr.open_array(str(ref.path), mode="r+"), ref.mapping, ref.model_shape, ref.batch_shape
        )
        stitchers[name] = tiling.Stitcher(run.plan, target, ref.mapping.out_axes, ref.maps, ref.post)
    blocks.write_batch(stitchers, batch, results)
    return len(batch.jobs)


# --------------------------------------------------------------------------------------------
# the client side
# --------------------------------------------------------------------------------------------


def run_distributed(
    client: Any,
    run: RunSpec,
    inputs: Mapping[str, InputRef],
    batches: list[list[tuple[int, tiling.Tile]]],
    make_outputs: Callable[
        [Mapping[str, tuple[np.ndarray, str]]], dict[str, tuple[OutputRef, tiling.Stitcher]]
    ],
    progress: blocks.ProgressCallback | None = None,
) -> None:
    """Run every batch on the cluster; ``make_outputs(first_results)`` creates the output arrays.

    Every batch is computed at once, as the workers take them. The first one's results come back
    to the client, which creates the store's arrays from them (shapes, data types) and writes that
    batch; each other batch is then written by a second task, placed where its results are and
    run before further batches (higher priority), so that a worker holds at most a batch or two
    of results. A worker that dies loses only results not yet written: Dask computes them again.

    Raises:
        ClusterError: a task failed (its one-line reason).
    """
    from distributed import as_completed

    total = sum(len(b) for b in batches)
    start = time.perf_counter()
    shared_run = client.scatter(run, broadcast=True)
    shared_inputs = {
        name: client.scatter(ref, broadcast=True) if ref.array is not None else ref
        for name, ref in inputs.items()
    }
    computed = [client.submit(compute_batch, shared_run, shared_inputs, jobs, pure=False) for jobs in batches]
    futures = list(computed)
    try:
        batch, results = _result(computed[0])
        computed[0].release()
        made = make_outputs(results)
        blocks.write_batch({name: s for name, (_, s) in made.items()}, batch, results)
        del batch, results
        refs = {name: ref for name, (ref, _) in made.items()}
        done = len(batches[0])
        if progress is not None:
            progress(done, total, time.perf_counter() - start, 0)
        writes = {
            client.submit(write_results, shared_run, refs, future, pure=False, priority=1): i
            for i, future in enumerate(computed[1:], start=1)
        }
        futures += list(writes)
        for future in as_completed(list(writes)):
            done += _result(future)
            computed[writes.pop(future)].release()  # its results are written: free them on the worker
            if progress is not None:
                progress(done, total, time.perf_counter() - start, 0)
    except BaseException:
        _stop(client, futures)
        raise


def _stop(client: Any, futures: list[Any]) -> None:
    """Cancel a run's tasks and wait until no worker still runs one, so that nothing writes into
    the store once the caller removes it (a cancelled task's thread runs to its end)."""
    try:
        client.cancel(futures)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            busy = client.run(_executing)
            if not any(busy.values()):
                return
            time.sleep(0.1)
    except Exception:  # noqa: BLE001 - the cluster is gone already: nothing of it writes any more
        return


def _executing(dask_worker: Any) -> int:
    return len(dask_worker.state.executing)


def _result(future: Any) -> Any:
    try:
        return future.result()
    except DeepImageJError:
        raise
    except Exception as exc:  # noqa: BLE001 - a task's exception, re-raised by dask in the client
        raise ClusterError(f"a Dask task failed: {type(exc).__name__}: {exc}") from None
