"""Run status and progress of synchronous runs, cancel and delete, unfinished reports, lost
runs (CONTRACT.md, Run status, progress, asynchronous runs and cancel). The queue's side is in
tests/queue."""

from __future__ import annotations

import io
import os
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from medscan.bulk.tracking import RUNNING, new_run, reap_lost_runs, run_folder
from medscan.extensions import db
from medscan.models import BulkRun, utcnow
from tests.helpers import assert_json_error, studies_zip
from tests.queue.conftest import GATED_MODEL, wait_for
from tests.queue.gated_model import let_through, open_gate, predictions_started

URL = "/api/bulk-runs"


def post(client, content: bytes, **headers: str):
    return client.post(URL, data={"file": (io.BytesIO(content), "b.zip")}, headers=headers)


def runs_of_request(client, request_id: str) -> list[dict]:
    return client.get(URL, query_string={"request_id": request_id}).get_json()["items"]


class TestSynchronousRunWatched:
    @pytest.fixture
    def gate(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        folder = tmp_path / "gate"
        folder.mkdir()
        monkeypatch.setenv("GATED_MODEL_DIR", str(folder))
        yield folder
        open_gate()

    @pytest.fixture
    def app_config(self, gate) -> dict:
        return {"MEDSCAN_MODEL": GATED_MODEL}

    def post_in_background(self, app, content: bytes, request_id: str) -> tuple:
        answers: list = []

        def send() -> None:
            answers.append(post(app.test_client(), content, **{"X-Request-ID": request_id}))

        thread = threading.Thread(target=send)
        thread.start()
        return thread, answers

    def test_is_visible_as_running_by_its_request_id(self, app, client, tmp_path):
        let_through(1)  # the other run's one study
        other = post(client, studies_zip(tmp_path / "o", 1), **{"X-Request-ID": "other"})
        assert other.status_code == 201 or pytest.fail(other.get_data(as_text=True))
        thread, answers = self.post_in_background(app, studies_zip(tmp_path, 2), "sync-42")
        try:
            wait_for(lambda: predictions_started() == 2, "the first study")  # 1 is "other"'s
            [run] = runs_of_request(client, "sync-42")
            assert (run["status"], run["progress"], run["request_id"]) == (
                "running",
                {"done": 0, "total": 2},
                "sync-42",
            )
            assert run["model"] == {"name": "gated", "version": "1", "threshold": 0.5}
            answer = client.get(f"{URL}/{run['id']}/report.xlsx")
            assert_json_error(answer, 409, "Run not finished")
            assert int(answer.headers["Retry-After"]) > 0
        finally:
            open_gate()
            thread.join()
        assert answers[0].status_code == 201 and answers[0].get_json() == {"id": run["id"]}
        assert "Preference-Applied" not in answers[0].headers
        done = client.get(f"{URL}/{run['id']}").get_json()
        assert (done["status"], done["progress"]) == ("succeeded", {"done": 2, "total": 2})
        assert [r["id"] for r in runs_of_request(client, "sync-42")] == [run["id"]]

    def test_cancel_stops_it_at_the_next_study(self, app, client, tmp_path):
        let_through(1)
        thread, answers = self.post_in_background(app, studies_zip(tmp_path, 4), "cancel-me")
        try:
            wait_for(lambda: predictions_started() == 2, "the second study")
            [run] = runs_of_request(client, "cancel-me")
            assert client.delete(f"{URL}/{run['id']}").status_code == 204
        finally:
            open_gate()
            thread.join()
        assert answers[0].status_code == 201
        assert predictions_started() == 2  # studies 3 and 4 never started
        run = client.get(f"{URL}/{run['id']}").get_json()
        assert (run["status"], run["progress"], run["items"]) == (
            "cancelled",
            {"done": 1, "total": 4},
            [],
        )
        assert list(Path(app.config["MEDSCAN_WORK_DIR"]).iterdir()) == []


def test_prefer_async_without_a_queue_is_ignored(client, tmp_path):
    response = post(client, studies_zip(tmp_path, 1), Prefer="respond-async")
    assert response.status_code == 201 and "Preference-Applied" not in response.headers


def test_a_finished_run_is_deleted_with_its_rows(client, app, tmp_path):
    run_id = post(client, studies_zip(tmp_path, 2)).get_json()["id"]
    assert client.delete(f"{URL}/{run_id}").status_code == 204
    assert_json_error(client.get(f"{URL}/{run_id}"), 404, "Run not found")
    assert_json_error(client.delete(f"{URL}/{run_id}"), 404, "Run not found")
    assert_json_error(client.delete(f"{URL}/not-a-uuid"), 404, "Run not found")
    with app.app_context():
        assert db.session.query(BulkRun).count() == 0


def test_report_of_a_failed_run_is_409_without_retry_after(client, app):
    with app.app_context():
        run_id = new_run("b.zip", RUNNING, None).id
        db.session.execute(
            db.update(BulkRun).where(BulkRun.id == run_id).values(status="failed", error="x")
        )
        db.session.commit()
    answer = client.get(f"{URL}/{run_id}/report.csv")
    assert_json_error(answer, 409, "Run not finished")
    assert "Retry-After" not in answer.headers


def test_list_by_an_unusable_request_id_is_400(client):
    assert_json_error(client.get(URL, query_string={"request_id": "a b"}), 400)


class TestLostRuns:
    @pytest.fixture
    def app_config(self) -> dict:
        return {"MEDSCAN_RUN_HEARTBEAT_S": 1, "MEDSCAN_RUN_LOST_S": 60}

    def test_a_run_without_heartbeat_is_failed_and_its_folder_removed(self, client, app):
        with app.app_context():
            stale, alive = new_run("a.zip", RUNNING, None).id, new_run("b.zip", RUNNING, None).id
            old = utcnow() - timedelta(seconds=61)
            db.session.execute(
                db.update(BulkRun).where(BulkRun.id == stale).values(heartbeat_at=old)
            )
            db.session.commit()
            run_folder(stale).mkdir(parents=True)
            (run_folder(stale) / "archive.zip").write_bytes(b"PK")
            # A folder of a run that is over, old enough to be a leftover, and a fresh one.
            leftover, fresh = run_folder(uuid.uuid4()), run_folder(uuid.uuid4())
            leftover.mkdir()
            fresh.mkdir()
            os.utime(leftover, (old.timestamp(), old.timestamp()))
            assert reap_lost_runs() == [stale]
            assert not run_folder(stale).exists() and not leftover.exists() and fresh.exists()
        run = client.get(f"{URL}/{stale}").get_json()
        assert (run["status"], run["error"]) == ("failed", "worker lost")
        assert client.get(f"{URL}/{alive}").get_json()["status"] == "running"


def test_progress_costs_one_small_update_per_study(client, app, tmp_path):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert post(client, studies_zip(tmp_path, 5)).status_code == 201
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    # This run's UPDATEs (the reaper's, over every run, happens once per heartbeat interval).
    updates = [s for s in statements if s.startswith("UPDATE bulk_runs") and "bulk_runs.id =" in s]
    progress = [s for s in updates if "progress_done" in s and "status=" not in s.replace(" ", "")]
    # (0, 5) once unpacked, then one per study; the final UPDATE marks the run succeeded.
    assert len(progress) == 6 and len(updates) == 7
    assert all("bulk_run_items" not in s for s in progress)
