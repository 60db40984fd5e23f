"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

from medscan import create_app

app = create_app()
