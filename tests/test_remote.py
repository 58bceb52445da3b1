"""Remote jobs over a real OpenSSH server (tests/sshd_server.py): hosts, runs, trainings, faults, safety.

The server is OpenSSH's sshd on 127.0.0.1 with throw-away keys; the "remote" deepimagej is this
installation reached only through SSH. Jobs run there detached under their supervisor, as on a
GPU server. Clients are the CLI in this process (click's runner) or in a child process when a test
kills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import deepimagej
from deepimagej import remote
from deepimagej.cli import main
from deepimagej.errors import RemoteError
from deepimagej.remote import protocol as P

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet-pancreatic"
WEIRD = "a;touch owned;b $(touch owned2).tif"  # a file name that a shell would run


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The error a command printed: one line on stderr, exit status 2 (stdout may say what it did before)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.stderr  # stdout may show the server's log, as a local run would
    return lines[0]


def client(*args, cwd: Path) -> subprocess.Popen:
    """``deepimagej ARGS`` in a child process (the code under test, the session's table and SSH config)."""
    env = dict(os.environ, PYTHONPATH=str(Path(deepimagej.__file__).resolve().parents[1]))
    log = cwd / f"client-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deepimagej", *map(str, args)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.log = log
    return proc


def output_of(proc: subprocess.Popen) -> str:
    return proc.log.read_text(encoding="utf-8", errors="replace")


def wait_for(condition, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def last_job() -> remote.Job:
    return remote.jobs(refresh=False)[-1]


def job_folder(sshd, job: remote.Job) -> Path:
    return sshd.workdir / P.JOBS / job.remote_id


def server_log(sshd, job: remote.Job) -> str:
    path = job_folder(sshd, job) / P.LOG_FILE
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def bundle_bytes() -> int:
    return sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pancreatic():
    if not (BUNDLE / "rdf.yaml").is_file():
        pytest.skip(f"{BUNDLE} not built (scripts/build_models.py makes it)")
    pytest.importorskip("tensorflow")
    return BUNDLE


@pytest.fixture(scope="module")
def first_run(sshd, pancreatic, tmp_path_factory):
    """The pancreatic example image under a shell-hostile name, run here and then on the server (first upload)."""
    folder = tmp_path_factory.mktemp("remote-run")
    image = folder / WEIRD
    shutil.copyfile(pancreatic / "exampleImage.tif", image)
    cwd = os.getcwd()
    os.chdir(folder)  # where "touch owned" would land if a name were ever run as shell code
    try:
        start = time.perf_counter()
        local = cli("run", pancreatic, WEIRD, "-o", folder / "local.tif", "--quiet")
        local_s = time.perf_counter() - start
        assert local.exit_code == 0, local.output
        start = time.perf_counter()
        result = cli("run", pancreatic, WEIRD, "-o", folder / "remote.tif", "--host", "local")
        remote_s = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    print(
        f"\npancreatic example: local run {local_s:.1f} s, remote run {remote_s:.1f} s "
        f"(first job: {last_job().uploaded_bytes} bytes uploaded)"
    )
    return {
        "folder": folder,
        "image": image,
        "job": last_job(),
        "output": result.output,
        "local": tifffile.imread(folder / "local.tif"),
    }


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Two tiny annotated images (bright disks, instance masks) for short trainings."""
    from skimage.draw import disk

    folder = tmp_path_factory.mktemp("cells")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image, labels = rng.normal(60, 15, (96, 96)), np.zeros((96, 96), np.uint16)
        for k in range(6):
            rr, cc = disk(tuple(rng.integers(12, 84, 2)), 7, shape=image.shape)
            image[rr, cc] += 120
            labels[rr, cc] = k + 1
        tifffile.imwrite(folder / "images" / f"c{i}.tif", np.clip(image, 0, 255).astype(np.uint8))
        tifffile.imwrite(folder / "masks" / f"c{i}.tif", labels)
    return folder


TINY = ["--tile", "64", "--depth", "2", "--features", "4"]


# ----------------------------------------------------------------------------- hosts


def test_host_keys_unknown_accepted_changed_and_wrong_keys(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPIMAGEJ_CONFIG", str(tmp_path / "config"))
    known = tmp_path / "known_hosts"
    (tmp_path / "ssh_config").write_text(f"Host *\n  UserKnownHostsFile {known}\n  IdentitiesOnly yes\n")
    monkeypatch.setenv("DEEPIMAGEJ_SSH_CONFIG", str(tmp_path / "ssh_config"))
    common = ["--workdir", sshd.workdir, "--deepimagej", sshd.deepimagej]
    assert cli("remote", "add", "srv", sshd.address, "--key", sshd.user_key, *common).exit_code == 0

    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    error = one_line_error(cli("remote", "test", "srv"))
    assert "unknown host key" in error and fingerprint in error and "--accept-host-key" in error
    assert not known.exists()  # nothing trusted without the user's word

    accepted = cli("remote", "test", "srv", "--accept-host-key")
    assert accepted.exit_code == 0, accepted.output
    assert re.search(r"cores \d+, memory [\d.]+ GB", accepted.output) and "GPUs:" in accepted.output
    assert "engines:" in accepted.output and "ready" in accepted.output
    assert f"[127.0.0.1]:{sshd.port}" in known.read_text()
    assert cli("remote", "test", "srv").exit_code == 0  # known now

    trusted = known.read_text()
    impostor = Path(f"{sshd.other_key}.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(impostor)}\n")
    error = one_line_error(
        cli("remote", "test", "srv", "--accept-host-key")
    )  # a changed key is never accepted
    assert "HOST KEY CHANGED" in error and fingerprint in error and "ssh-keygen -R" in error
    known.write_text(trusted)

    cli("remote", "add", "wrongkey", sshd.address, "--key", sshd.other_key, *common)
    error = one_line_error(cli("remote", "test", "wrongkey"))
    assert "refused the key" in error and str(sshd.other_key) in error
    cli("remote", "add", "wronguser", f"nobody@127.0.0.1:{sshd.port}", "--key", sshd.user_key, *common)
    assert "refused the key for user 'nobody'" in one_line_error(cli("remote", "test", "wronguser"))
    (tmp_path / "ssh_config").write_text(  # an alias reached through a jump host (here the same server)
        f"Host behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  ProxyJump {sshd.address}\n"
        f"Host *\n  UserKnownHostsFile {known}\n  IdentitiesOnly yes\n"
    )
    cli("remote", "add", "jumped", f"{sshd.user}@behind", "--key", sshd.user_key, *common)
    assert "reached" in cli("remote", "test", "jumped").output
    listed = cli("remote", "list").output
    assert "srv" in listed and "wrongkey" in listed and str(sshd.user_key) in listed
    assert "a host named 'srv' exists" in one_line_error(cli("remote", "add", "srv", sshd.address))
    assert sshd.user_key.read_text() not in (tmp_path / "config" / "remote.sqlite").read_bytes().decode(
        "latin-1"
    )


def test_dead_silent_and_unfit_servers_fail_in_seconds(sshd, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts TCP, never says a word of SSH: a hung host
    try:
        for name, port, extra in (
            ("down", closed.getsockname()[1], []),
            ("hung", silent.getsockname()[1], ["--timeout", "2"]),
        ):
            cli("remote", "add", name, f"{sshd.user}@127.0.0.1:{port}", "--key", sshd.user_key, *extra)
            start = time.perf_counter()
            error = one_line_error(cli("remote", "test", name))
            took = time.perf_counter() - start
            print(f"\n{name} host detected in {took:.2f} s")
            assert took < (2.0 if name == "down" else 5.0), took
            assert ("connection refused" if name == "down" else "no SSH answer within 2 s") in error
    finally:
        closed.close()
        silent.close()

    cli(
        "remote",
        "add",
        "nodij",
        sshd.address,
        "--key",
        sshd.user_key,
        "--deepimagej",
        "/opt/nowhere/deepimagej",
    )
    error = one_line_error(cli("remote", "test", "nodij"))
    assert "no deepimagej on the server" in error and "--deepimagej" in error
    old = tmp_path / "deepimagej-0.0.1"  # what a deepimagej without remote jobs answers
    old.write_text(
        '#!/bin/sh\necho "Usage: deepimagej [OPTIONS] COMMAND [ARGS]..." >&2\n'
        "echo \"Error: No such command 'remote'.\" >&2\nexit 2\n"
    )
    old.chmod(0o755)
    cli("remote", "add", "old", sshd.address, "--key", sshd.user_key, "--deepimagej", old)
    assert "too old for remote jobs" in one_line_error(cli("remote", "test", "old"))
    assert "no host named 'nohost'" in one_line_error(
        cli("run", BUNDLE, "x.tif", "-o", "y.tif", "--host", "nohost")
    )


# ----------------------------------------------------------------------------- runs


def test_remote_run_equals_local_and_file_names_stay_data(sshd, first_run):
    folder, job = first_run["folder"], first_run["job"]
    result = tifffile.imread(folder / "remote.tif")
    assert result.shape == first_run["local"].shape == (576, 720)
    assert np.abs(result.astype(np.float64) - first_run["local"]).max() == 0
    assert job.state == "done" and job.fetched and job.uploaded_bytes >= bundle_bytes()
    assert WEIRD in (job_folder(sshd, job) / P.JOB_FILE).read_text()  # the name travelled as data
    for where in (folder, sshd.root):  # the client's and the server's folders, and the login folder
        assert not list(where.rglob("owned*")), where
    assert not (Path.home() / "owned").exists() and not (Path.home() / "owned2").exists()
    assert not list(folder.glob(".*part*"))  # the atomic download left nothing behind


def test_second_job_uploads_nothing_and_survives_a_dropped_connection(sshd, first_run):
    folder = first_run["folder"]
    proc = client(
        "run", BUNDLE, WEIRD, "-o", folder / "again.tif", "--host", "local", "--tile", "256,256", cwd=folder
    )
    job = wait_for(
        lambda: (j := last_job()).remote_id != first_run["job"].remote_id and j.submitted and j,
        60,
        "the second job to start",
    )
    assert sshd.drop_connections() >= 1  # the network fails in the middle of the job
    assert proc.wait(timeout=120) == 0, output_of(proc)
    assert "reconnecting" in output_of(proc)
    job = remote.job(job.id)
    print(f"\nsecond identical job: {job.uploaded_bytes} bytes uploaded, {job.present_bytes} already there")
    assert (
        job.state == "done"
        and job.uploaded_bytes == 0
        and job.present_bytes == job.total_bytes >= bundle_bytes()
    )
    assert np.array_equal(tifffile.imread(folder / "again.tif"), first_run["local"])


def test_killed_client_the_job_finishes_and_jobs_fetch_brings_it(sshd, first_run, tmp_path):
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(first_run["image"])[:256, :256])
    reference = cli("run", BUNDLE, crop, "-o", tmp_path / "local.tif", "--quiet")
    assert reference.exit_code == 0, reference.output
    proc = client("run", BUNDLE, crop, "-o", tmp_path / "remote.tif", "--host", "local", cwd=tmp_path)
    job = wait_for(
        lambda: (j := last_job()).local["outputs"] == [str(tmp_path / "remote.tif")] and j.submitted and j,
        60,
        "the job to reach the server",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = cli("jobs")
    assert listed.exit_code == 0 and re.search(
        rf"^\s*{job.id}\s+local\s+run\s+(running|queued|done)", listed.output, re.MULTILINE
    ), listed.output
    wait_for(lambda: remote.job(job.id).finished_state, 90, "the job to finish on the server", poll=0.5)
    assert not (tmp_path / "remote.tif").exists()
    fetched = cli("jobs", "fetch", job.id)
    assert fetched.exit_code == 0, fetched.output
    assert np.array_equal(tifffile.imread(tmp_path / "remote.tif"), tifffile.imread(tmp_path / "local.tif"))
    shown = cli("jobs", "show", job.id).output
    assert "done" in shown and "fetched" in shown and "deepimagej run" in shown


def test_cancelling_a_finished_job_is_refused(first_run):
    error = one_line_error(cli("jobs", "cancel", first_run["job"].id))
    assert "already finished (done)" in error
    assert "only a done job" not in one_line_error(
        cli("jobs", "cancel", 99999)
    )  # no such job: its own message


def test_a_job_whose_process_is_killed_fails_with_the_reason(sshd, first_run, tmp_path):
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(first_run["image"])[:96, :96])
    job = remote.run("local", BUNDLE, crop, tmp_path / "out.tif", detach=True)
    status = job_folder(sshd, job) / P.STATUS_FILE
    worker = wait_for(lambda: json.loads(status.read_text()).get("worker"), 60, "the job's process to start")
    os.kill(worker["pid"], signal.SIGKILL)  # as the kernel's OOM killer would
    ended = remote.follow(job.id)
    assert ended.state == "failed" and "killed by SIGKILL (out of memory" in ended.error
    assert "killed by SIGKILL" in one_line_error(cli("jobs", "fetch", job.id))
    assert not (tmp_path / "out.tif").exists()


# ----------------------------------------------------------------------------- trainings


def test_training_killed_on_the_server_resumes_from_its_checkpoint(sshd, cells, tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "blobs-unet"
    started = cli(
        "train",
        "--images",
        cells / "images",
        "--labels",
        cells / "masks",
        "--out",
        out,
        "--epochs",
        3,
        "--steps",
        150,
        *TINY,
        "--host",
        "local",
        "--detach",
    )
    assert started.exit_code == 0, started.output
    job = last_job()
    wait_for(lambda: re.search(r"epoch\s+1\s*/\s*3", server_log(sshd, job)), 120, "epoch 1 (its checkpoint)")
    status = json.loads((job_folder(sshd, job) / P.STATUS_FILE).read_text())
    for info in (
        status["supervisor"],
        status["worker"],
    ):  # the server's processes die (a reboot, the OOM killer)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info["pid"], signal.SIGKILL)
    listed = cli("jobs")
    assert re.search(rf"^\s*{job.id}\s+local\s+train\s+failed", listed.output, re.MULTILINE), listed.output
    assert "ended unexpectedly" in remote.job(job.id).error
    assert "is failed" in one_line_error(cli("jobs", "fetch", job.id))

    resumed = cli("jobs", "resume", job.id)
    assert resumed.exit_code == 0, resumed.output
    after = resumed.output
    assert re.search(r"epoch\s+3\s*/\s*3", after) and not re.search(
        r"epoch\s+1\s*/\s*3", after
    )  # from epoch 2 on
    assert (out / "rdf.yaml").is_file() and remote.job(job.id).state == "done"
    tested = cli("test", out)
    assert tested.exit_code == 0 and "PASS" in tested.output, tested.output


def test_cancelling_a_running_training_leaves_no_process(sshd, cells, tmp_path):
    pytest.importorskip("tensorflow")
    started = cli(
        "train",
        "--images",
        cells / "images",
        "--labels",
        cells / "masks",
        "--out",
        tmp_path / "never",
        "--epochs",
        100,
        "--steps",
        30,
        *TINY,
        "--host",
        "local",
        "--detach",
    )
    assert started.exit_code == 0, started.output
    job = last_job()
    folder = job_folder(sshd, job)
    wait_for(lambda: re.search(r"epoch\s+1\s*/", server_log(sshd, job)), 120, "the training to run")
    assert len(sshd.job_processes(folder)) >= 2  # its supervisor and the training
    cancelled = cli("jobs", "cancel", job.id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
    assert sshd.job_processes(folder) == []
    assert remote.job(job.id).state == "cancelled" and not (tmp_path / "never").exists()
    assert "already finished (cancelled)" in one_line_error(cli("jobs", "cancel", job.id))


# ----------------------------------------------------------------------------- faults


def test_interrupted_upload_continues_where_it_stopped(sshd, pancreatic, tmp_path):
    bundle = tmp_path / "pancreatic-with-notes"
    shutil.copytree(pancreatic, bundle)
    size = 64 * 2**20
    (bundle / "notes.bin").write_bytes(np.random.default_rng(1).bytes(size))  # big, new to the server
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(pancreatic / "exampleImage.tif")[:128, :128])
    proc = client("run", bundle, crop, "-o", tmp_path / "out.tif", "--host", "local", cwd=tmp_path)
    job = wait_for(
        lambda: (j := last_job()).local["uploads"][0] == str(bundle) and j.uploaded_bytes > 8 * 2**20 and j,
        60,
        "the upload to be under way",
        poll=0.02,
    )
    proc.send_signal(signal.SIGKILL)  # the client dies (a laptop closed) in the middle of the upload
    proc.wait()
    assert remote.jobs()[-1].state == "failed"
    job = remote.job(job.id, refresh=False)
    assert "upload interrupted" in job.error and f"jobs resume {job.id}" in job.error
    before = job.uploaded_bytes
    resumed = cli("jobs", "resume", job.id)
    assert resumed.exit_code == 0, resumed.output
    job = remote.job(job.id)
    sent_on_resume = job.uploaded_bytes - before
    print(
        f"\ninterrupted upload: {before} bytes recorded before the kill, {sent_on_resume} sent on resume "
        f"({size} to send)"
    )
    assert job.state == "done" and 0 < sent_on_resume < size  # the rest only, not everything again
    assert tifffile.imread(tmp_path / "out.tif").shape == (128, 128)


def test_a_full_disk_on_the_server_is_refused_or_reported(sshd, pancreatic, tmp_path):
    disks = {}
    for name, size in (("tiny", "2m"), ("small", "8m")):  # the bundle does not fit / fits, its results do not
        disks[name] = tmp_path / f"{name}-disk"
        disks[name].mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disks[name])],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
        cli(
            "remote",
            "add",
            name,
            sshd.address,
            "--key",
            sshd.user_key,
            "--workdir",
            disks[name],
            "--deepimagej",
            sshd.deepimagej,
        )
    try:
        image = pancreatic / "exampleImage.tif"
        error = one_line_error(cli("run", pancreatic, image, "-o", tmp_path / "o.tif", "--host", "tiny"))
        assert "not enough disk space" in error and "MB needed" in error
        job = last_job()
        assert job.state == "failed" and "not enough disk space" in job.error and job.uploaded_bytes == 0
        error = one_line_error(cli("run", pancreatic, image, "-o", tmp_path / "o.tif", "--host", "small"))
        assert f"job {last_job().id} failed on small" in error and "the server's disk is full" in error
        assert "jobs resume" in error and last_job().state == "failed"
        assert not (tmp_path / "o.tif").exists() and image.is_file()
    finally:
        for disk in disks.values():
            subprocess.run(["umount", str(disk)], check=False)


def test_job_folders_names_and_paths_cannot_escape(sshd, first_run):
    from deepimagej.remote.ssh import connect

    with connect(remote.host("local")) as conn:
        with pytest.raises(RemoteError, match="job id"):
            conn.server("status", "../../etc")
        spec = json.loads((job_folder(sshd, first_run["job"]) / P.JOB_FILE).read_text())
        for field, value, match in (
            ("uploads", [{**spec["uploads"][1], "name": "../../x.tif"}], "file name"),
            ("outputs", [{"name": ".."}], "file name"),
            ("command", ["run", "--out", "/etc/cron.d/x"], "paths are uploaded"),
            ("command", ["sh", "-c", "touch owned"], "a job runs one of"),
            ("id", "../jobs2", "job id"),
        ):
            with pytest.raises(RemoteError, match=match):
                conn.server("submit", payload={**spec, field: value})
        result = job_folder(sshd, first_run["job"]) / P.OUTPUTS / "0" / "remote.tif"
        result.rename(result.with_name("kept.tif"))
        result.symlink_to("/etc/passwd")  # a result that leads outside is not a result
        try:
            assert conn.server("outputs", first_run["job"].remote_id) == [
                {"name": "remote.tif", "type": "missing"}
            ]
        finally:
            result.unlink()
            result.with_name("kept.tif").rename(result)
    root = sshd.root / "dl"
    root.mkdir(exist_ok=True)
    (root / "up").symlink_to(sshd.root)
    for rel in ("../x", "a/../../x", "/etc/passwd", "up/x", ""):
        with pytest.raises(RemoteError):
            P.safe_join(root, rel)
    assert P.safe_join(root, "sub/x.tif") == root / "sub" / "x.tif"


def test_logs_table_and_job_files_hold_no_key(sshd, first_run):
    body = "".join(sshd.user_key.read_text().splitlines()[1:-1])
    pieces = [body[len(body) // 2 : len(body) // 2 + 40], body[-70:-40]]  # the private part of the key
    places = [p for p in sshd.workdir.rglob("*") if p.is_file() and not {P.BLOBS, P.INPUTS} & set(p.parts)]
    places += [p for p in Path(os.environ["DEEPIMAGEJ_CONFIG"]).rglob("*") if p.is_file()]
    assert places
    for path in places:
        text = path.read_bytes().decode("latin-1")
        assert not any(piece in text for piece in pieces), path
    assert not any(piece in first_run["output"] for piece in pieces)


def test_python_api_detach_follow_and_jobs(sshd, first_run, tmp_path):
    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(first_run["image"])[:96, :96])
    job = remote.run("local", BUNDLE, crop, tmp_path / "out.npy", detach=True, no_postprocessing=True)
    assert job.submitted and job.state in ("queued", "running")
    lines = []
    done = remote.follow(job.id, echo=lines.append)
    assert done.state == "done" and done.fetched and any("Pancreatic" in line for line in lines)
    probabilities = np.load(tmp_path / "out.npy")
    assert probabilities.dtype == np.float32 and probabilities.min() >= 0 and probabilities.max() <= 1
    assert done.id in [j.id for j in remote.jobs()] and "--no-postprocessing" in done.local["argv"]
    with pytest.raises(RemoteError, match="is done: nothing to resume"):
        remote.resume(done.id)
    remote.remove(done.id)
    assert not job_folder(sshd, done).exists() and done.id not in [j.id for j in remote.jobs(refresh=False)]


def test_several_inputs_and_outputs_run_remotely_as_here(sshd, tmp_path):
    pytest.importorskip("torch")
    import bundle_factory

    from deepimagej.io import ImageData, read_image, write_image

    bundle = bundle_factory.two_in_two_out_bundle(tmp_path / "two_io" / "bundle").parent
    rng = np.random.default_rng(2)
    write_image(tmp_path / "raw.tif", ImageData((rng.random((70, 90)) * 255).astype(np.uint8), "yx"))
    write_image(tmp_path / "aux.tif", ImageData(rng.random((2, 70, 90)).astype(np.float32), "cyx"))
    args = [
        "run",
        bundle,
        "--input",
        f"raw={tmp_path / 'raw.tif'}",
        "--input",
        f"aux={tmp_path / 'aux.tif'}",
        "--tile",
        "32",
        "--weights",
        "torchscript",
    ]
    here = cli(*args, "-o", tmp_path / "here", "--quiet")
    assert here.exit_code == 0, here.output
    there = cli(*args, "-o", tmp_path / "there", "-o", f"score={tmp_path / 'score.tif'}", "--host", "local")
    assert there.exit_code == 0, there.output
    assert "--input raw=" in " ".join(last_job().local["argv"])
    assert np.array_equal(
        read_image(tmp_path / "there" / "raw_seg.tif").array,
        read_image(tmp_path / "here" / "raw_seg.tif").array,
    )
    assert np.array_equal(
        read_image(tmp_path / "score.tif").array, read_image(tmp_path / "here" / "raw_score.tif").array
    )
