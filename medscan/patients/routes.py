"""Patients API: ``/api/v1/patients``."""

from __future__ import annotations

from flask.views import MethodView
from sqlalchemy import bindparam, select

from medscan.api import LOCATION, Blueprint, get_or_404, location_of
from medscan.extensions import db
from medscan.models import Patient, fold_for_search
from medscan.paging import PageQuery
from medscan.patients.schemas import (
    PatientCreateSchema,
    PatientPageSchema,
    PatientQuerySchema,
    PatientSchema,
    PatientUpdateSchema,
)
from medscan.patients.search import PATIENT_COLUMNS, contains_pattern, name_search
from medscan.reads import read_one_or_404
from medscan.schemas import IdSchema
from medscan.storage import remove_deleted_files

bp = Blueprint("patients", __name__, url_prefix="/api/v1/patients", description="Patients")

NOT_FOUND = "Patient not found"

PATIENT_BY_ID = select(*PATIENT_COLUMNS).where(Patient.id == bindparam("id"))
ALL_PATIENTS = PageQuery(PATIENT_COLUMNS)


@bp.route("")
class PatientCollection(MethodView):
    """The list of patients."""

    @bp.doc(operationId="listPatients")
    @bp.arguments(PatientQuerySchema(), location="query")
    @bp.response(200, PatientPageSchema)
    def get(self, args: dict):
        """List patients, newest first, optionally searched by name."""
        words = fold_for_search(args["q"]).split()
        query = name_search(len(words)) if words else ALL_PATIENTS
        patterns = {f"word{i}": contains_pattern(word) for i, word in enumerate(words)}
        return query.fetch(args["limit"], args["offset"], **patterns)

    @bp.doc(operationId="createPatient")
    @bp.arguments(PatientCreateSchema())
    @bp.response(201, IdSchema, headers=LOCATION)
    def post(self, data: dict):
        """Create a patient."""
        patient = Patient(**data)
        db.session.add(patient)
        db.session.commit()
        return {"id": patient.id}, location_of("patients.PatientItem", patient_id=patient.id)


@bp.route("/<id:patient_id>")
class PatientItem(MethodView):
    """One patient."""

    @bp.doc(operationId="getPatient")
    @bp.response(200, PatientSchema)
    @bp.alt_response(404, message=NOT_FOUND)
    def get(self, patient_id: str):
        """Get a patient."""
        return read_one_or_404(PATIENT_BY_ID, patient_id, NOT_FOUND)

    @bp.doc(operationId="updatePatient")
    @bp.arguments(PatientUpdateSchema())
    @bp.response(200, PatientSchema)
    @bp.alt_response(404, message=NOT_FOUND)
    def put(self, data: dict, patient_id: str):
        """Change any of the names and the description."""
        patient = get_or_404(Patient, patient_id, NOT_FOUND)
        for field, value in data.items():
            setattr(patient, field, value)
        patient.touch()
        db.session.commit()
        return patient

    @bp.doc(operationId="deletePatient")
    @bp.response(204)
    @bp.alt_response(404, message=NOT_FOUND)
    def delete(self, patient_id: str):
        """Delete a patient and every scan of theirs."""
        patient = get_or_404(Patient, patient_id, NOT_FOUND)
        # The cascade deletes every scan row, also those of uploads committed while this
        # request ran; the journal (migration 0007) names each of their files.
        db.session.delete(patient)
        db.session.commit()
        remove_deleted_files()
