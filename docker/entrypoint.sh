#!/bin/sh
# Container entrypoint: bring the database schema up to date, then exec gunicorn, which
# replaces this shell as PID 1 and so receives `docker stop`'s SIGTERM itself.
# With arguments (e.g. `docker compose run --rm app flask --app wsgi db current`) it runs
# those instead, without migrating.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# The migrations are /app/migrations, beside wsgi.py, which points Flask-Migrate there. Replicas
# starting together take turns: migrations/env.py holds a PostgreSQL advisory lock meanwhile.
flask --app wsgi db upgrade

exec gunicorn -c gunicorn.conf.py wsgi:app
