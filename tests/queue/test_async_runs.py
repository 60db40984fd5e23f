"""Asynchronous bulk runs on real Celery workers and Redis (CONTRACT.md, Run status, progress,
asynchronous runs and cancel)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from medscan.analysis import ANALYSIS_EXTENSION
from medscan.extensions import db
from medscan.models import BulkRun
from tests.helpers import BULK_URL, post_async, run_of, runs_folder, studies_zip
from tests.queue.conftest import wait_for
from tests.queue.gated_model import folder, let_through, open_gate, predictions_started


def test_run_is_accepted_at_once_then_done_by_a_worker(client, app, tmp_path, workers):
    response = post_async(client, studies_zip(tmp_path, 3), **{"X-Request-ID": "client-7"})
    assert response.status_code == 202
    run_id = response.get_json()["id"]
    assert response.headers["Location"] == f"{BULK_URL}/{run_id}"
    assert response.headers["Preference-Applied"] == "respond-async"
    assert run_of(client, run_id)["request_id"] == "client-7"
    # The first study waits at the gate: the run is running, its total known.
    run = wait_for(lambda: (r := run_of(client, run_id))["progress"]["total"] and r, "the unpack")
    assert (run["status"], run["progress"], run["finished_at"]) == (
        "running",
        {"done": 0, "total": 3},
        None,
    )
    assert run["model"] == {"name": "gated", "version": "1", "threshold": 0.5}
    for report in ("report.xlsx", "report.csv"):
        answer = client.get(f"{BULK_URL}/{run_id}/{report}")
        assert answer.status_code == 409 and answer.get_json() == {"error": "Run not finished"}
        assert int(answer.headers["Retry-After"]) > 0
    assert (runs_folder(app) / run_id / "archive.zip").is_file()

    open_gate()
    run = wait_for(
        lambda: (r := run_of(client, run_id))["status"] == "succeeded" and r, "the run", workers
    )
    assert (run["studies"], run["succeeded"], run["progress"]) == (3, 3, {"done": 3, "total": 3})
    assert [item["probability_of_pathology"] for item in run["items"]] == [0.7] * 3
    csv = client.get(f"{BULK_URL}/{run_id}/report.csv")
    assert csv.status_code == 200 and len(csv.get_data(as_text=True).splitlines()) == 4
    # The worker removes the folder after the commit that makes the run succeeded.
    wait_for(lambda: not (runs_folder(app) / run_id).exists(), "the run's folder to go", workers)
    assert not app.extensions[ANALYSIS_EXTENSION].model_loaded  # the API never loaded the model


def test_cancel_midway_stops_at_the_next_study_and_keeps_no_files(client, app, tmp_path, workers):
    let_through(2)  # studies 1 and 2 pass, study 3 waits
    run_id = post_async(client, studies_zip(tmp_path, 5)).get_json()["id"]
    wait_for(
        lambda: (
            run_of(client, run_id)["progress"] == {"done": 2, "total": 5}
            and predictions_started() == 3
        ),
        "study 3 to start",
        workers,
    )
    assert client.delete(f"{BULK_URL}/{run_id}").status_code == 204
    run = run_of(client, run_id)
    assert run["status"] == "cancelled" and run["finished_at"] is not None
    assert not (runs_folder(app) / run_id).exists()
    open_gate()  # study 3 ends; the worker must stop there
    stopped = f"bulk run {run_id}: stopped (cancelled)"
    wait_for(lambda: any(stopped in line for w in workers for line in w.lines), "the stop")
    assert predictions_started() == 3  # studies 4 and 5 never started
    run = run_of(client, run_id)
    assert (run["status"], run["progress"], run["items"]) == (
        "cancelled",
        {"done": 2, "total": 5},
        [],
    )
    assert not (runs_folder(app) / run_id).exists()
    assert client.get(f"{BULK_URL}/{run_id}/report.csv").status_code == 409
    assert client.delete(f"{BULK_URL}/{run_id}").status_code == 204  # a finished run: deleted
    assert client.get(f"{BULK_URL}/{run_id}").status_code == 404


def test_two_workers_drain_a_queue_in_parallel(client, app, tmp_path, workers):
    ids = [post_async(client, studies_zip(tmp_path / str(n), 1)).get_json()["id"] for n in range(4)]
    # Each worker takes one run at a time: two run at once, two wait their turn.
    wait_for(lambda: predictions_started() == 2, "two runs to start", workers)
    statuses = sorted(run_of(client, run_id)["status"] for run_id in ids)
    assert statuses == ["queued", "queued", "running", "running"]
    queued = next(run_of(client, i) for i in ids if run_of(client, i)["status"] == "queued")
    assert (queued["progress"], queued["model"]) == ({"done": 0, "total": None}, None)
    assert worker_pids() == {str(worker.process.pid) for worker in workers}
    open_gate()
    wait_for(
        lambda: all(run_of(client, run_id)["status"] == "succeeded" for run_id in ids),
        "every run",
        workers,
    )
    assert worker_pids() == {str(worker.process.pid) for worker in workers}
    # Each worker removes a run's folder after the commit that makes it succeeded.
    wait_for(lambda: not any(runs_folder(app).iterdir()), "the runs' folders to go", workers)


def worker_pids() -> set[str]:
    """The processes that have made predictions."""
    return {marker.name.split("-")[1] for marker in folder().glob("predict-*")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestBrokerDown:
    @pytest.fixture
    def app_config(self, app_config: dict) -> dict:
        return {**app_config, "MEDSCAN_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}

    def test_post_is_503_and_leaves_neither_row_nor_file(self, client, app, tmp_path):
        response = post_async(client, studies_zip(tmp_path, 1))
        assert response.status_code == 503
        assert response.get_json() == {"error": "Queue unavailable"}
        assert int(response.headers["Retry-After"]) > 0
        with app.app_context():
            assert db.session.query(BulkRun).count() == 0
        assert not any(runs_folder(app).iterdir())
        work = Path(app.config["MEDSCAN_WORK_DIR"])
        assert list(work.iterdir()) == []  # nor the spooled upload
