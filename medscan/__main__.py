"""The ``medscan`` console script (and ``python -m medscan``): the CLI on the app built from the
environment."""

from flask.cli import ScriptInfo

from medscan.app import create_app
from medscan.cli import medscan_cli


def main() -> None:
    """Run the ``medscan`` commands on the app that the environment configures."""
    medscan_cli.main(prog_name="medscan", obj=ScriptInfo(create_app=create_app))


if __name__ == "__main__":
    main()
