"""Separating a batch on a Dask LocalCluster of two worker processes, with real MIR-1K songs:
the stems of a local run byte for byte; a worker killed mid-song; skipping and rerunning; an
unreachable scheduler."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("distributed")

from vocalsep.batch import Job, run_batch  # noqa: E402
from vocalsep.cluster import ClusterError, parse_local, run_on_cluster  # noqa: E402

from conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def songs(tmp_path_factory, mir1k_dir) -> list[str]:
    """Four 30-s songs, each a MIR-1K test clip's mixture repeated (stereo: a channel each of
    the clip's accompaniment and voice would be odd; both channels get the mixture)."""
    folder = tmp_path_factory.mktemp("songs")
    paths = []
    for clip in sorted((mir1k_dir / "test").glob("*.flac"))[:4]:
        x, rate = sf.read(clip, dtype="float32")
        mix = x.sum(axis=1) * 0.5
        song = np.tile(mix, int(np.ceil(30 * rate / len(mix))))[: 30 * rate]
        path = folder / f"{clip.stem}.flac"
        sf.write(path, np.stack([song, song[::-1]], axis=1), rate)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=50, env={"VOCALSEP_THREADS": "1", "OMP_NUM_THREADS": "1"})
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _job(out: Path) -> Job:
    return Job(model=None, options={}, out=str(out), stems=("vocals", "accompaniment"), threads=1)


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, songs) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local")
    results = list(run_batch(songs, _job(out), jobs=1))
    assert all(r.written for r in results)
    return _outputs(out)


def test_cluster_stems_equal_a_local_run_and_a_rerun_skips(tmp_path, songs, client, local_run):
    out = tmp_path / "out"
    results = list(run_on_cluster(songs, _job(out), client=client))
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert all(r.written and not r.error for r in results)
    assert _outputs(out) == local_run
    # each worker loaded the model once and kept it
    loaded = client.run(lambda: len(__import__("vocalsep.cluster").cluster._SEPARATORS))
    assert set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1

    # everything done: skipped here, and no scheduler is contacted (this one does not exist)
    again = list(run_on_cluster(songs, _job(out), scheduler="tcp://127.0.0.1:9"))
    assert [r.skipped for r in again] == [True] * 4


def test_a_worker_killed_mid_song_loses_nothing(tmp_path, songs, client, local_run):
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                time.sleep(0.7)  # into the song: the model is loaded, stems are being written
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    import threading

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    results = list(run_on_cluster(songs, _job(out), client=client))
    killer.join()
    assert killed, "no worker was ever busy"
    assert all(r.written and not r.error for r in results), [r.error for r in results]
    assert _outputs(out) == local_run  # every stem complete, no temporary left anywhere


def test_a_bad_file_fails_alone(tmp_path, songs, client):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(100))
    results = list(run_on_cluster([songs[0], str(bad)], _job(tmp_path / "out"), client=client))
    by_index = {r.index: r for r in results}
    assert by_index[0].written and not by_index[0].error
    assert by_index[1].error and str(bad) in by_index[1].error and "\n" not in by_index[1].error


def test_cli_refuses_what_cannot_work(tmp_path, songs):
    r = run_cli("separate", songs[0], "-o", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vocalsep: error: cannot reach the Dask scheduler "
                                                   "at tcp://127.0.0.1:9 ("), lines
    assert not (tmp_path / "o").exists()
    r = run_cli("separate", songs[0], "-o", tmp_path / "o", "--cluster", "local:2", "-j", "2")
    assert r.returncode == 1 and "one or the other" in r.stderr
    for bad in ("local:0", "local", "remote:2"):
        with pytest.raises(ValueError):
            parse_local(bad)


def test_cli_separates_on_a_local_cluster(tmp_path, songs, local_run):
    r = run_cli("separate", *songs[:2], "-o", tmp_path / "out", "--cluster", "local:2", timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 files: 2 separated, 0 skipped, 0 failed" in r.stdout
    got = _outputs(tmp_path / "out")
    assert set(got) == {k for k in local_run if k.split("/")[0] in {Path(s).stem for s in songs[:2]}}


def test_the_web_server_separates_on_the_cluster(tmp_path, songs, client, local_run):
    """``serve --scheduler``: a job uploaded to the page's API is separated by a cluster worker
    into the jobs' folder; the stems are the local run's."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vocalsep.server.app import create_app

    app = create_app(tmp_path / "jobs", scheduler=client.scheduler.address, threads=1)
    with TestClient(app, base_url="http://localhost") as http, open(songs[0], "rb") as f:
        r = http.post("/api/jobs", files={"file": (Path(songs[0]).name, f)})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (job := http.get(f"/api/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "done", job
        stem = Path(songs[0]).stem
        for name in ("vocals", "accompaniment"):
            assert http.get(f"/api/jobs/{job_id}/{name}").content == local_run[f"{stem}/{name}.wav"], name


def test_a_lost_scheduler_stops_the_batch_in_one_line_and_a_rerun_finishes(tmp_path, songs, local_run):
    """The scheduler goes away after the first song: ClusterError saying to run again; the
    song written is kept, and a rerun on a new cluster separates only the rest."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=50, env={"VOCALSEP_THREADS": "1", "OMP_NUM_THREADS": "1"})
    client = Client(cluster)
    out = tmp_path / "out"
    got = []
    try:
        with pytest.raises(ClusterError, match="run the same command again"):
            for result in run_on_cluster(songs, _job(out), client=client):
                got.append(result)
                if len(got) == 1:
                    cluster.sync(cluster.scheduler.close)  # the next wait finds it gone
    finally:
        client.close()
        cluster.close()
    assert len(got) >= 1 and all(r.written for r in got)
    rerun = list(run_on_cluster(songs, _job(out), local=1, threads=1))
    # the songs reported, and any a worker finished after the scheduler left, are skipped
    assert sum(r.skipped for r in rerun) >= len(got) and all(r.written or r.skipped for r in rerun)
    assert any(r.written for r in rerun)
    assert _outputs(out) == local_run
