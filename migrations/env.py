import logging
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from flask import current_app

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging, unless the app has set up logging already
# (medscan.logs: one format, text or JSON, for every line).
if not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')

# PostgreSQL advisory lock held while migrating ("medscan" in ASCII): replicas that start
# together run `db upgrade` one at a time; the later ones then find the schema current.
MIGRATIONS_LOCK = 0x6D65647363616E


@contextmanager
def migrations_lock(connection):
    """Hold the advisory lock on PostgreSQL (waiting as long as it takes); SQLite needs none."""
    if connection.dialect.name != "postgresql":
        yield
        return
    # Only the wait for this lock is unbounded: the migrations' own statements keep the
    # app's lock_timeout (SET LOCAL ends with this transaction; the session lock stays).
    connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATIONS_LOCK})")
    connection.commit()
    try:
        yield
    finally:
        # The connection goes back to the pool, so the lock is released here, not at close.
        connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATIONS_LOCK})")
        connection.commit()


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        if connection.dialect.name == "postgresql":
            # The app's statement timeout (MEDSCAN_DB_STATEMENT_TIMEOUT_S) bounds requests;
            # building an index on a large table may take longer.
            connection.exec_driver_sql("SET statement_timeout = 0")
            connection.commit()  # the session setting stays; the migrations run in their own
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild a table by copy, drop and rename: with foreign keys on,
            # dropping a parent (bulk_runs) would cascade to its children's rows.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with migrations_lock(connection):
                context.configure(
                    connection=connection,
                    target_metadata=get_metadata(),
                    **conf_args
                )

                with context.begin_transaction():
                    context.run_migrations()
        finally:
            if sqlite:  # the pooled connection goes back to the app as it came
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
