"""Scans API: ``/api/v1/scans`` and ``/api/scans/{id}/file|analyze|report|series|preview.png``."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from flask import Response, abort, current_app, jsonify, request, send_file
from flask.views import MethodView
from sqlalchemy import RowMapping, bindparam, delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from webargs.flaskparser import abort as abort_invalid
from werkzeug.datastructures import FileStorage
from werkzeug.http import parse_range_header

from medscan.analysis import analysis_service
from medscan.analyzer.preview import WINDOWS
from medscan.api import (
    BINARY,
    LOCATION,
    OCTET_STREAM,
    Blueprint,
    content_disposition,
    download_type,
    error_body,
    get_or_404,
    location_of,
    parse_uuid,
)
from medscan.extensions import db
from medscan.models import Patient, Scan, utcnow
from medscan.paging import PageQuery
from medscan.reads import columns_for, read_one_or_404
from medscan.scans.content import ZIP, UnsupportedContent, classify
from medscan.scans.preview import RENDERING, NoImage, StoredScan, preview_png, scan_series
from medscan.scans.schemas import (
    AnalyzeResponseSchema,
    PreviewQuerySchema,
    ScanPageSchema,
    ScanQuerySchema,
    ScanSchema,
    ScanUpdateSchema,
    ScanUploadSchema,
    SeriesListSchema,
    StoredReportSchema,
)
from medscan.schemas import IdSchema
from medscan.storage import remove_deleted_files, scan_storage
from medscan.uploads import client_file_name, receives_uploads

bp = Blueprint("scans", __name__, url_prefix="/api", description="Scans")

NOT_FOUND = "Scan not found"
UNSUPPORTED = "Unsupported Media Type"
NO_IMAGE = "No image to preview"
TOO_LARGE = "File too large. Max {max_mb} MB"

SCAN_COLUMNS = columns_for(ScanSchema, Scan.__table__)
SCAN_BY_ID = select(*SCAN_COLUMNS).where(Scan.id == bindparam("id"))
# What the file, series and preview GETs need of a scan, and what the report GET answers.
SCAN_FILE_BY_ID = select(Scan.id, Scan.sha256, Scan.file_name, Scan.content_kind).where(
    Scan.id == bindparam("id")
)
SCAN_REPORT_BY_ID = select(Scan.report_json, Scan.processed_at).where(Scan.id == bindparam("id"))
ALL_SCANS = PageQuery(SCAN_COLUMNS)
SCANS_OF_PATIENT = PageQuery(SCAN_COLUMNS, [Scan.patient_id == bindparam("patient_id")])


@bp.route("/v1/scans")
class ScanCollection(MethodView):
    """The list of scans."""

    @bp.doc(operationId="listScans")
    @bp.arguments(ScanQuerySchema(), location="query")
    @bp.response(200, ScanPageSchema)
    def get(self, args: dict):
        """List scans, newest first, optionally of one patient."""
        if "patient_id" in args:
            patient_id = args["patient_id"]
            return SCANS_OF_PATIENT.fetch(args["limit"], args["offset"], patient_id=patient_id)
        return ALL_SCANS.fetch(args["limit"], args["offset"])

    @receives_uploads(
        into=lambda: scan_storage().incoming, max_mb="MEDSCAN_MAX_SCAN_MB", too_large=TOO_LARGE
    )
    @bp.doc(operationId="uploadScan")
    @bp.arguments(ScanUploadSchema(), location="multipart")
    @bp.response(201, IdSchema, headers=LOCATION)
    @bp.alt_response(404, message="Patient not found")
    @bp.alt_response(
        413,
        message=TOO_LARGE.format(max_mb=2048),
        description="Body over MEDSCAN_MAX_SCAN_MB, or a ZIP over the unpack limits",
    )
    @bp.alt_response(415, message=UNSUPPORTED, description="Neither DICOM nor a ZIP holding DICOM")
    def post(self, form: dict):
        """Upload a scan: a DICOM file (Part 10 or raw dataset) or a ZIP of one series."""
        file: FileStorage = form["file"]
        upload = file.stream
        if upload.size == 0:
            abort(400, "file: The file is empty.")
        if db.session.get(Patient, form["patient_id"]) is None:
            abort(404, "Patient not found")
        try:
            content = classify(upload.path, analysis_service().limits)  # a ZIP over the limits: 413
        except UnsupportedContent:
            abort(415, UNSUPPORTED)
        scan = Scan(
            id=uuid.uuid4(),
            patient_id=form["patient_id"],
            description=form.get("description"),
            file_name=client_file_name(file) or f"scan.{'zip' if content.kind == ZIP else 'dcm'}",
            content_kind=content.kind,
            size_bytes=upload.size,
            sha256=upload.sha256,
            study_uid=content.study_uid,
            series_uid=content.series_uid,
        )
        storage = scan_storage()
        storage.keep(upload, scan.id)
        scan_id = scan.id  # kept: a commit expires it, and the row may be deleted at once
        db.session.add(scan)
        try:
            db.session.commit()
        except BaseException as exc:
            db.session.rollback()
            # A connection lost during COMMIT may have committed the row: then the file stays,
            # and the storage sweep removes it if no row came (medscan.storage).
            if not (isinstance(exc, DBAPIError) and exc.connection_invalidated):
                storage.remove([scan_id])
            # The patient deleted since the check above: the foreign key refused the row.
            if isinstance(exc, IntegrityError) and db.session.get(Patient, scan.patient_id) is None:
                abort(404, "Patient not found")
            raise
        return {"id": scan_id}, location_of("scans.ScanItem", scan_id=scan_id)


@bp.route("/v1/scans/<id:scan_id>")
class ScanItem(MethodView):
    """One scan's metadata."""

    @bp.doc(operationId="getScan")
    @bp.response(200, ScanSchema)
    @bp.alt_response(404, message=NOT_FOUND)
    def get(self, scan_id: str):
        """Get a scan's metadata."""
        return read_one_or_404(SCAN_BY_ID, scan_id, NOT_FOUND)

    @bp.doc(operationId="updateScan")
    @bp.arguments(ScanUpdateSchema())
    @bp.response(200, ScanSchema)
    @bp.alt_response(404, message=NOT_FOUND)
    def put(self, data: dict, scan_id: str):
        """Change a scan's description."""
        scan = get_or_404(Scan, scan_id, NOT_FOUND)
        scan.description = data["description"]
        scan.touch()
        db.session.commit()
        return scan

    @bp.doc(operationId="deleteScan")
    @bp.response(204)
    @bp.alt_response(404, message=NOT_FOUND)
    def delete(self, scan_id: str):
        """Delete a scan and its stored file."""
        row_id = parse_uuid(scan_id)
        # One statement: a scan deleted meanwhile (with its patient, say) is simply not found.
        deleted = (
            row_id is not None
            and db.session.execute(delete(Scan).where(Scan.id == row_id)).rowcount
        )
        if not deleted:
            abort(404, NOT_FOUND)
        db.session.commit()
        remove_deleted_files([row_id])


@bp.get("/scans/<id:scan_id>/file")
@bp.doc(operationId="downloadScanFile")
@bp.file_response(OCTET_STREAM, "The exact bytes uploaded; supports Range and If-None-Match")
@bp.alt_response(
    206, schema=BINARY, content_type=OCTET_STREAM, description="Partial content (Range)"
)
@bp.alt_response(304, description="Not modified (If-None-Match)")
@bp.alt_response(404, message=NOT_FOUND)
@bp.alt_response(
    416,
    message="Requested Range Not Satisfiable",
    description="The range starts past the end of the file",
)
def download(scan_id: str):
    """Download the scan file as uploaded."""
    scan = read_one_or_404(SCAN_FILE_BY_ID, scan_id, NOT_FOUND)
    path = stored_file(scan)
    # RFC 9110 14.2: a Range that is not one well-formed bytes range (another unit, bad
    # syntax, several ranges) is ignored: 200 with the whole file. werkzeug would answer 416.
    sent_range = parse_range_header(request.headers.get("Range"))
    if sent_range is None or sent_range.units != "bytes" or len(sent_range.ranges) != 1:
        request.environ.pop("HTTP_RANGE", None)
    response = send_file(
        path,
        mimetype="application/octet-stream",
        conditional=True,
        etag=scan["sha256"],
        max_age=0,
    )
    response.headers["Content-Disposition"] = content_disposition(scan["file_name"])
    return response


def stored_file(scan: RowMapping) -> Path:
    """The scan's stored file; 404 (and an error logged) if it has gone."""
    path = scan_storage().path(scan["id"])
    if not path.is_file():
        current_app.logger.error("Scan %s has no stored file at %s", scan["id"], path)
        abort(404, NOT_FOUND)
    return path


@bp.post("/scans/<id:scan_id>/analyze")
@bp.doc(operationId="analyzeScan")
@bp.response(200, AnalyzeResponseSchema)
@bp.alt_response(404, message=NOT_FOUND)
@bp.alt_response(
    503, message="Not enough disk space", description="Not enough disk space to unpack a ZIP scan"
)
def analyze(scan_id: str):
    """Analyse a scan with the model and store its report (a failed analysis is still 200)."""
    scan = get_or_404(Scan, scan_id, NOT_FOUND)
    service = analysis_service()
    stored = scan_storage().path(scan.id)
    analysis = service.analyze_stored_scan(stored, scan.content_kind, scan.file_name)
    scan.report_json = analysis.report.as_dict()
    scan.processed_at = utcnow()
    scan.analysis_model, scan.analysis_model_version = service.model.name, service.model.version
    scan.analysis_threshold = service.threshold
    scan.analysis_error = analysis.error
    try:
        db.session.commit()
    except StaleDataError:  # the scan was deleted while it was being analysed
        db.session.rollback()
        abort(404, NOT_FOUND)
    body = {"ok": analysis.ok, "result": analysis.result, "report": scan.report_json}
    if not analysis.ok:
        body["error"] = analysis.error
    return body


@bp.get("/scans/<id:scan_id>/report")
@bp.doc(operationId="getScanReport")
@bp.response(200, StoredReportSchema)
@bp.alt_response(
    404,
    message="Report not found",
    description=f"{NOT_FOUND}, or Report not found (never analysed)",
)
def report(scan_id: str):
    """The last stored report of a scan."""
    scan = read_one_or_404(SCAN_REPORT_BY_ID, scan_id, NOT_FOUND)
    if scan["report_json"] is None:
        abort(404, "Report not found")
    return {"report": scan["report_json"], "processed_at": scan["processed_at"]}


def stored_scan(scan: RowMapping) -> StoredScan:
    """Where the scan's file is, for the series listing and the preview."""
    return StoredScan(
        stored_file(scan),
        scan["content_kind"],
        scan["file_name"],
        scan["sha256"],
        analysis_service().limits,
    )


@bp.get("/scans/<id:scan_id>/series")
@bp.doc(operationId="listScanSeries")
@bp.response(200, SeriesListSchema)
@bp.alt_response(404, message=NOT_FOUND)
def series(scan_id: str):
    """Every series of the scan's analysed study, which one the analysis uses and why."""
    scan = read_one_or_404(SCAN_FILE_BY_ID, scan_id, NOT_FOUND)
    return {"items": scan_series(stored_scan(scan)).entries}


def no_image(reason: str) -> Response:
    """422 ``No image to preview`` with the reason in ``details.reason``."""
    response = jsonify(error_body(NO_IMAGE, {"reason": reason}))
    response.status_code = 422
    return response


@bp.get("/scans/<id:scan_id>/preview.png")
@bp.doc(operationId="getScanPreview")
@bp.arguments(PreviewQuerySchema(), location="query")
@bp.file_response(
    "image/png",
    "One image of the analysed series, 8-bit grayscale windowed from HU, at most "
    "512 px on its longer side (aspect ratio kept)",
    headers={"ETag": {"schema": {"type": "string"}}},
)
@bp.alt_response(
    304,
    description="Not modified (If-None-Match matched the ETag)",
    headers={"ETag": {"schema": {"type": "string"}}},
)
@bp.alt_response(400, description="Unknown window, or index out of range")
@bp.alt_response(404, message=NOT_FOUND)
@bp.alt_response(
    422,
    message=NO_IMAGE,
    description="No image to preview: the scan has no decodable image series; "
    "details.reason says why",
)
def preview(args: dict, scan_id: str):
    """One image of the series the analysis uses, as a PNG in a CT window."""
    scan = read_one_or_404(SCAN_FILE_BY_ID, scan_id, NOT_FOUND)
    index = args.get("index")
    key = f"{RENDERING}:{scan['sha256']}:{args['window']}:{'middle' if index is None else index}"
    etag = hashlib.sha256(key.encode()).hexdigest()[:32]
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        stored = stored_scan(scan)
        listing = scan_series(stored)
        if listing.chosen is None:
            return no_image(listing.problem or "no image series")
        count = listing.chosen.images
        if index is None:
            index = count // 2
        elif index >= count:
            message = f"Must be less than {count}, the number of images of the series."
            abort_invalid(400, messages={"query": {"index": [message]}})
        try:
            png = preview_png(stored, listing.chosen, index, WINDOWS[args["window"]])
        except NoImage as exc:
            return no_image(exc.reason)
        response = Response(png, mimetype=download_type("image/png"))
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response
