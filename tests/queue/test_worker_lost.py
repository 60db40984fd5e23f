"""A worker killed with ``kill -9`` in the middle of a run: the run is never stuck."""

from __future__ import annotations

from tests.helpers import post_async, run_of, runs_folder, studies_zip
from tests.queue.conftest import wait_for
from tests.queue.gated_model import predictions_started


def test_killed_worker_fails_its_run_and_its_folder_goes(client, app, tmp_path, start_worker):
    worker = start_worker()  # the only worker of this module
    worker.wait_ready()
    run_id = post_async(client, studies_zip(tmp_path, 2)).get_json()["id"]
    wait_for(
        lambda: run_of(client, run_id)["progress"]["total"] == 2 and predictions_started() == 1,
        "the first study to start",
        [worker],
    )
    assert (runs_folder(app) / run_id / "unpacked").is_dir()
    worker.kill()
    # Its heartbeat stops; after MEDSCAN_RUN_LOST_S the API's own reaping (on any bulk-runs
    # request) fails the run.
    run = wait_for(
        lambda: (r := run_of(client, run_id))["status"] != "running" and r, "the run to fail"
    )
    assert (run["status"], run["error"]) == ("failed", "worker lost")
    assert not (runs_folder(app) / run_id).exists()
