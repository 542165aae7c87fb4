"""Fixtures of the remote CLI tests (``_remotesupport``)."""

from _remotesupport import twin, volume_home  # noqa: F401  (fixtures)
