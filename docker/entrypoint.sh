#!/bin/sh
# Container entrypoint: bring the database schema up to date, then exec gunicorn, which
# replaces this shell as PID 1 and so receives `docker stop`'s SIGTERM itself.
# With arguments (e.g. `docker compose run --rm app flask --app wsgi db current`) it runs
# those instead, without migrating.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# The migrations ship inside the package (medscan/migrations); the app points Flask-Migrate there.
flask --app wsgi db upgrade

exec gunicorn -c gunicorn.conf.py wsgi:app
