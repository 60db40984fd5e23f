"""Patients API, rule by rule from CONTRACT.md."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, delete, event, update

from medscan.extensions import db
from medscan.models import Patient
from medscan.patients.search import PATIENT_COLUMNS, SearchPageQuery
from medscan.reads import reads_engine
from tests.helpers import assert_json_error, create_patient

URL = "/api/v1/patients"


def add_patients(app, names: list[tuple[str, str]]) -> list[str]:
    """Insert patients with created_at one second apart (oldest first); returns their ids."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with app.app_context():
        patients = [
            Patient(first_name=first, last_name=last, created_at=start + timedelta(seconds=i))
            for i, (first, last) in enumerate(names)
        ]
        db.session.add_all(patients)
        db.session.commit()
        return [str(p.id) for p in patients]


def search(client, q: str) -> list[str]:
    response = client.get(URL, query_string={"q": q, "limit": 100})
    assert response.status_code == 200
    return sorted(f"{p['first_name']} {p['last_name']}" for p in response.get_json()["items"])


# --- create ---------------------------------------------------------------------------------


def test_create_returns_id_and_location_and_the_patient_reads_back(client):
    response = client.post(URL, json={"first_name": "  Иван ", "last_name": "Иванов"})
    assert response.status_code == 201
    patient_id = response.get_json()["id"]
    assert response.get_json() == {"id": patient_id}
    assert str(uuid.UUID(patient_id)) == patient_id
    assert response.headers["Location"].endswith(f"{URL}/{patient_id}")

    patient = client.get(f"{URL}/{patient_id}").get_json()
    assert patient["first_name"] == "Иван"  # stripped
    assert patient["last_name"] == "Иванов"
    assert patient["description"] is None
    assert patient["created_at"].endswith("Z")
    assert patient["created_at"] == patient["updated_at"]
    datetime.fromisoformat(patient["created_at"].replace("Z", "+00:00"))
    assert set(patient) == {
        "id",
        "first_name",
        "last_name",
        "description",
        "created_at",
        "updated_at",
    }


def test_read_only_fields_sent_back_are_ignored(client):
    fake_id = str(uuid.uuid4())
    patient_id = create_patient(
        client, id=fake_id, created_at="2000-01-01T00:00:00Z", updated_at="x"
    )
    assert patient_id != fake_id
    assert client.get(f"{URL}/{patient_id}").get_json()["created_at"] != "2000-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"last_name": "Ivanov"}, "first_name"),
        ({"first_name": "Ivan"}, "last_name"),
        ({"first_name": "", "last_name": "Ivanov"}, "first_name"),
        ({"first_name": "   ", "last_name": "Ivanov"}, "first_name"),
        ({"first_name": "x" * 101, "last_name": "Ivanov"}, "first_name"),
        ({"first_name": None, "last_name": "Ivanov"}, "first_name"),
        ({"first_name": 5, "last_name": "Ivanov"}, "first_name"),
        ({"first_name": "Ivan", "last_name": ["Ivanov"]}, "last_name"),
        ({"first_name": "Iv\x00an", "last_name": "Ivanov"}, "first_name"),
        ({"first_name": "Ivan", "last_name": "Ivanov", "description": "x" * 10_001}, "description"),
        ({"first_name": "Ivan", "last_name": "Ivanov", "description": 7}, "description"),
        ({"first_name": "Ivan", "last_name": "Ivanov", "notes": "typo"}, "notes"),
    ],
)
def test_create_rejects_invalid_bodies_with_field_details(client, body, field):
    body = assert_json_error(client.post(URL, json=body), 400)
    assert field in body["details"]
    assert field in body["error"]


def test_create_accepts_limits_exactly(client):
    patient_id = create_patient(client, "x" * 100, "y" * 100, description="d" * 10_000)
    patient = client.get(f"{URL}/{patient_id}").get_json()
    assert len(patient["first_name"]) == 100 and len(patient["description"]) == 10_000


def test_create_needs_json_content_type(client):
    response = client.post(URL, data={"first_name": "Ivan", "last_name": "Ivanov"})
    assert_json_error(response, 415, "Content-Type must be application/json")
    response = client.post(URL, data='{"first_name": "a"}', content_type="text/plain")
    assert_json_error(response, 415, "Content-Type must be application/json")


@pytest.mark.parametrize("raw", ["{bad json", "", "[1, 2]", '"text"', "null", "42"])
def test_create_rejects_malformed_or_non_object_json(client, raw):
    assert_json_error(client.post(URL, data=raw, content_type="application/json"), 400)
    with client.application.app_context():
        assert db.session.query(Patient).count() == 0


# --- get ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw_id", [str(uuid.uuid4()), "not-a-uuid", "123", "%20"])
def test_get_unknown_or_malformed_id_is_patient_not_found(client, raw_id):
    assert_json_error(client.get(f"{URL}/{raw_id}"), 404, "Patient not found")


def test_get_accepts_the_id_in_any_case(client):
    patient_id = create_patient(client)
    response = client.get(f"{URL}/{patient_id.upper()}")
    assert response.status_code == 200
    assert response.get_json()["id"] == patient_id


# --- list and search ------------------------------------------------------------------------


def test_list_is_newest_first_with_envelope(client, app):
    ids = add_patients(app, [("A", "One"), ("B", "Two"), ("C", "Three")])
    body = client.get(URL).get_json()
    assert body["total"] == 3 and body["limit"] == 20 and body["offset"] == 0
    assert [p["id"] for p in body["items"]] == ids[::-1]


def test_paging_is_stable_across_pages_even_with_equal_timestamps(client, app):
    same_time = datetime(2025, 5, 5, tzinfo=UTC)
    with app.app_context():
        db.session.add_all(
            Patient(first_name=f"P{i}", last_name="Same", created_at=same_time) for i in range(25)
        )
        db.session.commit()
    seen = []
    for offset in range(0, 25, 7):
        body = client.get(URL, query_string={"limit": 7, "offset": offset}).get_json()
        assert body["total"] == 25
        seen += [p["id"] for p in body["items"]]
    assert len(seen) == 25 == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # equal created_at: id descending
    assert client.get(URL, query_string={"offset": 25}).get_json()["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"limit": ""},
        {"offset": -1},
        {"offset": 2**31},
        {"offset": "x"},
    ],
)
def test_out_of_range_paging_is_400(client, query):
    body = assert_json_error(client.get(URL, query_string=query), 400)
    assert set(body["details"]) <= {"limit", "offset"}


def test_paging_bounds_are_accepted(client):
    body = client.get(URL, query_string={"limit": 100, "offset": 2**31 - 1}).get_json()
    assert body["limit"] == 100 and body["offset"] == 2**31 - 1 and body["items"] == []


def test_search_is_case_insensitive_for_cyrillic_and_latin(client, app):
    add_patients(app, [("Иван", "Иванов"), ("Пётр", "Петров"), ("John", "Smith")])
    assert search(client, "иван") == ["Иван Иванов"]
    assert search(client, "ИВАНОВ") == ["Иван Иванов"]
    assert search(client, "SMI") == ["John Smith"]
    assert search(client, "ров") == ["Пётр Петров"]


def test_search_treats_yo_and_ye_as_one_letter_both_ways(client, app):
    add_patients(app, [("Пётр", "Семёнов"), ("Fedor", "Семенова")])
    assert search(client, "семенов") == ["Fedor Семенова", "Пётр Семёнов"]
    assert search(client, "СЕМЁНОВ") == ["Fedor Семенова", "Пётр Семёнов"]
    assert search(client, "петр") == ["Пётр Семёнов"]


def test_search_needs_every_word_in_first_or_last_name(client, app):
    add_patients(app, [("Ivan", "Ivanov"), ("Ivan", "Petrov"), ("Petr", "Ivanov")])
    assert search(client, "Ivanov Ivan") == ["Ivan Ivanov", "Petr Ivanov"]
    assert search(client, "  petr   ivanov ") == ["Petr Ivanov"]
    assert search(client, "van petrov") == ["Ivan Petrov"]
    # a word never spans the gap between first and last name
    assert search(client, "nivan") == []


def test_search_wildcards_match_literally(client, app):
    add_patients(app, [("100%", "Sure"), ("Under_score", "Name"), ("Plain", "Person")])
    assert search(client, "%") == ["100% Sure"]
    assert search(client, "_") == ["Under_score Name"]
    assert search(client, "n_m") == []  # as a wildcard it would match "Name"
    assert search(client, "1%s") == []  # as a wildcard it would match "100% Sure"


def test_blank_search_means_no_filter_and_total_counts_matches(client, app):
    add_patients(app, [(f"Anna{i}", "Karenina") for i in range(30)] + [("Other", "One")])
    assert client.get(URL, query_string={"q": "   "}).get_json()["total"] == 31
    body = client.get(URL, query_string={"q": "karenina", "limit": 5}).get_json()
    assert body["total"] == 30 and len(body["items"]) == 5
    last = client.get(URL, query_string={"q": "karenina", "limit": 20, "offset": 20}).get_json()
    assert last["total"] == 30 and len(last["items"]) == 10
    past = client.get(URL, query_string={"q": "karenina", "offset": 30}).get_json()
    assert past["total"] == 30 and past["items"] == []  # the total survives an empty page
    none = client.get(URL, query_string={"q": "nobody-by-that-name"}).get_json()
    assert none["total"] == 0 and none["items"] == []


def search_total(client, q: str) -> int:
    response = client.get(URL, query_string={"q": q, "limit": 1})
    assert response.status_code == 200
    return response.get_json()["total"]


def test_remembered_search_totals_follow_every_kind_of_write(client, app):
    ids = add_patients(app, [("Ivan", "Petrov"), ("Ivana", "Sidorova"), ("Petr", "Ivanov")])
    assert search_total(client, "ivan") == 3
    assert search_total(client, "ivan") == 3  # remembered
    create_patient(client, "Ivanka", "Novak")
    assert search_total(client, "ivan") == 4
    client.put(f"{URL}/{ids[0]}", json={"first_name": "Oleg"})  # renamed out of the results
    assert search_total(client, "ivan") == 3
    client.put(f"{URL}/{ids[2]}", json={"description": "no name change"})
    assert search_total(client, "ivan") == 3
    assert client.delete(f"{URL}/{ids[1]}").status_code == 204
    assert search_total(client, "ivan") == 2
    with app.app_context():  # a write from outside the service (a script, psql) counts too
        db.session.execute(
            update(Patient).where(Patient.id == uuid.UUID(ids[2])).values(search_name="nobody")
        )
        db.session.commit()
    assert search_total(client, "ivan") == 1
    assert search_total(client, "ivan") == 1


@contextmanager
def counts_run(app) -> Iterator[list[bool]]:
    """Whether each statement on the reads engine counts rows, while the block runs."""
    with app.app_context():
        engine = reads_engine()
    counts: list[bool] = []

    def record(conn, cursor, statement, *args) -> None:
        counts.append("count(" in statement.lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_repeated_search_is_not_counted_again_until_patients_change(client, app):
    add_patients(app, [("Anna", f"Karenina{i}") for i in range(3)])
    with counts_run(app) as counts:
        for expected in (True, False, False):
            counts.clear()
            assert search_total(client, "karenina") == 3
            assert any(counts) is expected, counts
        create_patient(client, "Anna", "Karenina3")
        counts.clear()
        assert search_total(client, "karenina") == 4
        assert any(counts)


def test_a_page_and_its_total_agree_when_a_write_commits_between_statements(client, app):
    ids = add_patients(app, [("Anna", f"Karenina{i}") for i in range(3)])
    assert search_total(client, "anna") == 3
    create_patient(client, "Anna", "Karenina3")  # the remembered total is now stale
    with app.app_context():
        engine = reads_engine()
        writer = db.engine
    deleted = []

    def delete_two_when_counting(conn, cursor, statement, *args) -> None:
        if "count(" in statement.lower() and not deleted:
            deleted.append(True)
            with writer.begin() as other:
                other.execute(delete(Patient).where(Patient.id.in_(map(uuid.UUID, ids[:2]))))

    event.listen(engine, "before_cursor_execute", delete_two_when_counting)
    try:
        body = client.get(URL, query_string={"q": "anna", "limit": 100}).get_json()
    finally:
        event.remove(engine, "before_cursor_execute", delete_two_when_counting)
    assert deleted
    assert body["total"] == len(body["items"]) == 2


def test_remembered_totals_are_bounded_and_forget_the_oldest(app):
    add_patients(app, [("Anna", "Karenina"), ("Anna", "Pavlova")])
    query = SearchPageQuery(PATIENT_COLUMNS, [Patient.search_name.like(bindparam("word0"))], size=2)
    with app.app_context(), counts_run(app) as counts:
        for word in ("anna", "karenina", "pavlova"):
            query.fetch(20, 0, word0=f"%{word}%")
        assert len(query.remembered) == 2
        counts.clear()
        assert query.fetch(20, 0, word0="%pavlova%")["total"] == 1
        assert not any(counts)  # remembered
        counts.clear()
        assert query.fetch(20, 0, word0="%anna%")["total"] == 2
        assert any(counts)  # forgotten


# --- update ---------------------------------------------------------------------------------


def test_update_changes_only_given_fields_and_advances_updated_at(client):
    patient_id = create_patient(client, description="first note")
    before = client.get(f"{URL}/{patient_id}").get_json()
    response = client.put(f"{URL}/{patient_id}", json={"last_name": "  Семёнов "})
    assert response.status_code == 200
    after = response.get_json()
    assert after["last_name"] == "Семёнов"
    assert after["first_name"] == before["first_name"]
    assert after["description"] == "first note"
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]
    assert search(client, "семенов") == ["Ivan Семёнов"]  # search column follows the edit


def test_update_description_null_clears_it(client):
    patient_id = create_patient(client, description="note")
    response = client.put(f"{URL}/{patient_id}", json={"description": None})
    assert response.get_json()["description"] is None


def test_update_can_send_back_the_fetched_object(client):
    patient_id = create_patient(client)
    patient = client.get(f"{URL}/{patient_id}").get_json()
    patient["first_name"] = "Ivan2"
    response = client.put(f"{URL}/{patient_id}", json=patient)
    assert response.status_code == 200 and response.get_json()["first_name"] == "Ivan2"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": "x", "created_at": "y"},
        {"first_name": None},
        {"last_name": "  "},
        {"first_name": "x" * 101},
        {"nickname": "Vanya"},
    ],
)
def test_update_rejects_empty_or_invalid_bodies(client, body):
    patient_id = create_patient(client)
    assert_json_error(client.put(f"{URL}/{patient_id}", json=body), 400)
    assert client.get(f"{URL}/{patient_id}").get_json()["first_name"] == "Ivan"


def test_update_unknown_patient_is_404(client):
    response = client.put(f"{URL}/{uuid.uuid4()}", json={"first_name": "X"})
    assert_json_error(response, 404, "Patient not found")


def test_update_needs_json_content_type(client):
    patient_id = create_patient(client)
    response = client.put(f"{URL}/{patient_id}", data="first_name=X")
    assert_json_error(response, 415, "Content-Type must be application/json")


# --- delete ---------------------------------------------------------------------------------


def test_delete_then_gone(client):
    patient_id = create_patient(client)
    response = client.delete(f"{URL}/{patient_id}")
    assert response.status_code == 204 and response.get_data() == b""
    assert_json_error(client.get(f"{URL}/{patient_id}"), 404, "Patient not found")
    assert_json_error(client.delete(f"{URL}/{patient_id}"), 404, "Patient not found")


def test_search_with_a_nul_character_is_400_not_a_crash(client):
    assert_json_error(client.get(URL, query_string={"q": "a\x00b"}), 400)


def test_search_longer_than_500_characters_is_400(client):
    assert client.get(URL, query_string={"q": "я" * 500}).status_code == 200
    body = assert_json_error(client.get(URL, query_string={"q": "я" * 501}), 400)
    assert "q" in body["details"]


def test_names_come_back_as_utf8_not_escapes(client):
    patient_id = create_patient(client, "Пётр", "Семёнов")
    assert "Семёнов".encode() in client.get(f"{URL}/{patient_id}").get_data()
