"""Fill a migrated PostgreSQL database with realistic patients and scans rows by bulk COPY.

    python bench/seed.py postgresql://postgres@127.0.0.1/medscan_bench --patients 1000000 \
        --scans 200000

Names are drawn from Russian and Latin name lists, so searches hit realistic frequencies:
common surnames match thousands of rows, rare ones a handful.
"""

from __future__ import annotations

import argparse
import io
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2

from medscan.models import fold_for_search

RU_FIRST = (
    "Александр Алексей Анатолий Андрей Антон Артём Борис Вадим Валентин Валерий Василий Виктор "
    "Виталий Владимир Владислав Всеволод Геннадий Георгий Григорий Даниил Денис Дмитрий Евгений "
    "Егор Иван Игорь Илья Кирилл Константин Лев Леонид Максим Матвей Михаил Никита Николай Олег "
    "Павел Пётр Роман Семён Сергей Станислав Степан Тимофей Фёдор Юрий Ярослав Анна Алёна "
    "Александра Алина Анастасия Валентина Валерия Вера Виктория Галина Дарья Евгения Екатерина "
    "Елена Елизавета Жанна Зоя Инна Ирина Кира Ксения Лариса Лидия Любовь Людмила Маргарита "
    "Марина Мария Надежда Наталья Нина Оксана Ольга Полина Раиса Светлана София Таисия Тамара "
    "Татьяна Ульяна Юлия Яна"
).split()
RU_LAST = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев "
    "Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв "
    "Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов Поляков "
    "Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов Филиппов Комаров "
    "Давыдов Беляев Герасимов Богданов Осипов Сидоров Матвеев Титов Марков Миронов Крылов "
    "Куликов Карпов Власов Мельников Денисов Гаврилов Тихонов Казаков Афанасьев Данилов "
    "Савельев Тимофеев Фомин Чернов Абрамов Мартынов Ефимов Федотов Щербаков Назаров Калинин "
    "Исаев Чернышёв Быков Маслов Родионов Коновалов Лазарев Воронин Климов Филатов Пономарёв "
    "Голубев Кудрявцев Прохоров Наумов Потапов Журавлёв Овчинников Трофимов Леонов Соболев "
    "Ермаков Колесников Гончаров Емельянов Никифоров Грачёв Котов Гришин Ефремов Архипов "
    "Громов Кириллов Малышев Панов Моисеев Румянцев Акимов Кондратьев Бирюков Горбунов Анисимов "
    "Ерёмин Тихомиров Галкин Лукьянов Михеев Скворцов Юдин Белоусов Нестеров Симонов Прокофьев "
    "Харитонов Князев Цветков Левин Митрофанов Воронов Аксёнов Софронов Мальцев Логинов Горшков "
    "Савин Краснов Майоров Демидов Елисеев Рыбаков Сафонов Плотников Дёмин Хохлов Фадеев"
).split()
LATIN_FIRST = (
    "James John Robert Michael William David Richard Joseph Thomas Charles Mary Patricia "
    "Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Anna Maria Lukas Jonas Elias "
    "Noah Emma Mia Sofia Lea Ali Omar Yusuf Aisha Fatima Chen Wei Hiro Yuki Arjun Priya"
).split()
LATIN_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris "
    "Clark Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green "
    "Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Muller Schmidt Schneider "
    "Fischer Weber Meyer Wagner Becker Schulz Hoffmann Rossi Russo Ferrari Esposito Bianchi"
).split()
# A suffix makes some surnames rare: "Иванов" matches ~1%, "Ивановский7" a handful of rows.
RARE_SUFFIXES = ("ский", "ич", "енко", "ук", "ин")


def female(name: str) -> bool:
    return name.endswith(("а", "я")) and name not in ("Илья", "Никита")


def person(rng: random.Random) -> tuple[str, str]:
    """A (first, last) name: 85% Russian, 15% Latin, some with a rare surname."""
    if rng.random() < 0.85:
        first, last = rng.choice(RU_FIRST), rng.choice(RU_LAST)
        if female(first):
            last += "а"
    else:
        first, last = rng.choice(LATIN_FIRST), rng.choice(LATIN_LAST)
    if rng.random() < 0.05:
        last = f"{last}{rng.choice(RARE_SUFFIXES)}{rng.randrange(1000)}"
    return first, last


def csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def patient_rows(
    count: int, rng: random.Random, start: datetime
) -> Iterator[tuple[uuid.UUID, str]]:
    """COPY lines for ``count`` patients, created over the past years in time order."""
    step = timedelta(days=5 * 365) / max(count, 1)
    for i in range(count):
        patient_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        first, last = person(rng)
        created = (start + step * i).isoformat()
        description = "" if rng.random() < 0.7 else csv_field(f"note {i}")
        line = ",".join(
            (
                str(patient_id),
                csv_field(first),
                csv_field(last),
                description,
                csv_field(fold_for_search(f"{first} {last}")),
                created,
                created,
            )
        )
        yield patient_id, line + "\n"


def copy_lines(cursor, table: str, columns: str, lines: Iterator[str], chunk: int = 50_000) -> None:
    """COPY ``lines`` into ``table`` in chunks, so memory stays small whatever the count."""
    buffer = io.StringIO()
    for n, line in enumerate(lines, 1):
        buffer.write(line)
        if n % chunk == 0:
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
            buffer = io.StringIO()
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)


def scan_rows(
    count: int, patient_ids: list[uuid.UUID], rng: random.Random, start: datetime
) -> Iterator[str]:
    """COPY lines for ``count`` scans (metadata only, no files) of random patients."""
    step = timedelta(days=5 * 365) / max(count, 1)
    for i in range(count):
        created = (start + step * i).isoformat()
        yield (
            ",".join(
                (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    str(rng.choice(patient_ids)),
                    "",
                    f"ct{i}.dcm",
                    "dicom",
                    str(rng.randrange(10**5, 10**9)),
                    f"{i:064x}",
                    created,
                    created,
                )
            )
            + "\n"
        )


def seed(url: str, patients: int, scans: int, seed_value: int) -> None:
    """Insert the patients, then the scans of random patients."""
    rng = random.Random(seed_value)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    ids: list[uuid.UUID] = []

    def lines() -> Iterator[str]:
        for patient_id, line in patient_rows(patients, rng, start):
            ids.append(patient_id)
            yield line

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        copy_lines(
            cursor,
            "patients",
            "id, first_name, last_name, description, search_name, created_at, updated_at",
            lines(),
        )
        if scans:
            copy_lines(
                cursor,
                "scans",
                "id, patient_id, description, file_name, content_kind, size_bytes, sha256, "
                "created_at, updated_at",
                scan_rows(scans, ids, rng, start),
            )
        cursor.execute("ANALYZE patients")
        cursor.execute("ANALYZE scans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="a migrated PostgreSQL database (psycopg2 URL)")
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--scans", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    seed(args.database_url, args.patients, args.scans, args.seed)
    elapsed = time.perf_counter() - started
    print(f"{args.patients} patients, {args.scans} scans in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
