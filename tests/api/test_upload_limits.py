"""Each upload view declares its own limit (``uploads.receives_uploads``), named by its own 413."""

from __future__ import annotations

import functools
import uuid

import pytest
from flask import Flask, request

from medscan.config import MIB
from medscan.uploads import UploadRequest, receives_uploads
from tests.helpers import BULK_URL, SCANS_URL, assert_json_error, post_archive, upload


@pytest.fixture
def app_config():
    return {"MEDSCAN_MAX_SCAN_MB": 1, "MEDSCAN_MAX_BULK_MB": 2}


def test_a_body_between_the_limits_is_too_large_for_a_scan_only(client, patient_id):
    body = bytes(MIB + MIB // 2)
    assert_json_error(upload(client, patient_id, body), 413, "File too large. Max 1 MB")
    # Read whole under the bulk limit: refused for its content, not its size.
    assert_json_error(post_archive(client, body), 400, "Only .zip is accepted")


def test_a_body_over_the_bulk_limit_names_the_bulk_limit(client):
    assert_json_error(post_archive(client, bytes(2 * MIB + 1)), 413, "ZIP too large. Max 2 MB")


def test_other_views_of_the_blueprint_keep_the_json_limit(client):
    body = {"description": "x" * (2 * MIB)}  # over MAX_CONTENT_LENGTH (1 MiB)
    response = client.put(f"{SCANS_URL}/{uuid.uuid4()}", json=body)
    assert_json_error(response, 413, "Request Entity Too Large")


@pytest.mark.parametrize(
    ("url", "method", "setting", "hashed"),
    [
        (SCANS_URL, "POST", "MEDSCAN_MAX_SCAN_MB", True),
        (BULK_URL, "POST", "MEDSCAN_MAX_BULK_MB", False),
        (SCANS_URL, "GET", None, True),
        (BULK_URL, "GET", None, True),
        ("/api/v1/patients", "POST", None, True),
    ],
)
def test_the_request_reads_the_policy_of_its_view(app, url, method, setting, hashed):
    with app.test_request_context(url, method=method):
        policy = request.upload_policy
        assert (policy and policy.max_mb) == setting
        assert request.hash_uploads is hashed
        expected = app.config[setting] * MIB if setting else app.config["MAX_CONTENT_LENGTH"]
        assert request.max_content_length == expected


def test_scan_parts_spool_into_the_storage_and_archives_into_the_work_folder(app):
    with app.test_request_context(SCANS_URL, method="POST"):
        assert request.upload_dir == f"{app.config['MEDSCAN_STORAGE_DIR']}/.incoming"
    with app.test_request_context(BULK_URL, method="POST"):
        assert request.upload_dir == app.config["MEDSCAN_WORK_DIR"]


def passed_through(view):
    """A decorator like flask-smorest's: a ``functools.wraps`` wrapper."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        return view(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("declared_first", [True, False])
def test_the_declaration_holds_wherever_it_sits_in_the_stack(tmp_path, declared_first):
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["UPLOAD_MB"] = 3
    declare = receives_uploads(into=lambda: tmp_path, max_mb="UPLOAD_MB", too_large="{max_mb}")
    view = (
        passed_through(declare(lambda: ""))
        if declared_first
        else declare(passed_through(lambda: ""))
    )
    app.add_url_rule("/upload", "upload", view, methods=["POST"])
    with app.test_request_context("/upload", method="POST"):
        assert request.max_content_length == 3 * MIB
        assert request.upload_dir == str(tmp_path)
