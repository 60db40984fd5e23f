"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``.

The Alembic migrations are the ``migrations/`` folder beside this file (in the source tree and in
the image's /app alike), whatever the working directory.
"""

from pathlib import Path

from medscan import create_app

app = create_app({"MIGRATIONS_DIR": Path(__file__).resolve().with_name("migrations")})
