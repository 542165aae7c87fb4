"""``python -m stackyard.cli``."""

from stackyard.cli.main import run

run()
