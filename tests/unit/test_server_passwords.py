"""The local servers' passwords come from the ``random`` provider's one generator."""

from __future__ import annotations

import string

import pytest

from stackyard.providers import random
from stackyard.providers.local import server

pytestmark = pytest.mark.unit


def test_local_servers_use_the_random_providers_generator() -> None:
    assert server.generate_password is random.generate_password


def test_a_server_password_embeds_in_a_url_and_passes_common_policies() -> None:
    value = random.generate_password(32, symbols=False)
    assert len(value) == 32 and set(value) <= set(string.ascii_letters + string.digits)
    for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        assert set(value) & set(cls), f"no character of {cls!r}"
