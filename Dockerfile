# medscan image: the package installed from setup.cfg (not editable), run by gunicorn as a
# non-root user. Build and run with docker-compose.yml: cp .env.example .env, then
# `docker compose --env-file .env up -d`.
FROM python:3.11-slim

# No .pyc files written at run time; logs reach `docker logs` unbuffered; pip keeps no cache
# in the image (and installs as root at build time, quietly: the app runs as medscan).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed uid/gid so files on the /data volume keep one owner across rebuilds.
RUN groupadd --system --gid 10001 medscan \
    && useradd --system --uid 10001 --gid medscan --create-home --home-dir /home/medscan \
        --shell /usr/sbin/nologin medscan

# Install the project (not editable) with its dependencies at the versions of requirements.lock
# (all wheels, psycopg2-binary: no compiler needed), the versions CI tests. .dockerignore keeps
# the context to the package, its metadata, the lock and the deployment files.
COPY . /tmp/src
RUN pip install -c /tmp/src/requirements.lock /tmp/src && rm -rf /tmp/src

WORKDIR /app
# The deployment files live at the repository root, not in the package: gunicorn and
# `flask --app wsgi` import wsgi.py from the working directory, and wsgi.py points Flask-Migrate
# at the migrations/ folder beside it.
COPY wsgi.py gunicorn.conf.py ./
COPY migrations ./migrations
COPY docker/entrypoint.sh /usr/local/bin/medscan-entrypoint

# Scan files and bulk-run work space live on a volume owned by the service user (a new named
# volume mounted at /data copies this ownership). The entrypoint is made executable here
# whatever mode the checkout gave it.
ENV MEDSCAN_STORAGE_DIR=/data/scans \
    MEDSCAN_WORK_DIR=/data/work
RUN mkdir -p /data/scans /data/work && chown -R medscan:medscan /data \
    && chmod 755 /usr/local/bin/medscan-entrypoint

USER medscan
EXPOSE 8000

# /api/health answers 200 when the app and its database are up, 503 otherwise; urlopen raises
# on any non-2xx answer or connection error, so the exit status says it all (no curl here).
# start-period covers the migrations that run before gunicorn starts.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=5)"]

ENTRYPOINT ["medscan-entrypoint"]
