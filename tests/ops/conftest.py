"""Fixtures of the day 2 operations tests (webhooks, metrics, SLOs). The session fixtures
(``stage``, ``library_template``, the services) come from ``tests/conftest.py``; helpers live
in ``_<name>support`` modules beside the tests, imported by name (this folder is on sys.path
because it has this conftest)."""

from __future__ import annotations
