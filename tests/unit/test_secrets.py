from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from stackyard.errors import StateError
from stackyard.state.secrets import SecretBox

pytestmark = pytest.mark.unit

CANARY = "canary-s3cr3t-value"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_and_no_plaintext_in_the_token() -> None:
    box = SecretBox(SecretBox.generate_key())
    token = box.encrypt_json({"password": CANARY, "n": [1, 2]})
    assert CANARY not in token
    assert box.decrypt_json(token) == {"password": CANARY, "n": [1, 2]}


def test_key_file_is_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    box = SecretBox.from_home(home)
    key_file = home / "secret.key"
    assert _mode(key_file) == 0o600
    assert _mode(home) == 0o700
    token = box.encrypt_json(CANARY)
    assert SecretBox.from_home(home).decrypt_json(token) == CANARY
    assert [p.name for p in home.iterdir()] == ["secret.key"], "no temporary files left"


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    SecretBox.from_home(tmp_path)
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(StateError, match=r"accessible by group or others \(mode 0644\)") as info:
        SecretBox.from_home(tmp_path)
    assert "chmod 600" in (info.value.hint or "")


def test_a_key_in_the_environment_wins_and_creates_no_file(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    box = SecretBox.from_home(tmp_path, key=key)
    assert not (tmp_path / "secret.key").exists()
    assert SecretBox(key).decrypt_json(box.encrypt_json(CANARY)) == CANARY


def test_the_wrong_key_is_a_clear_state_error(tmp_path: Path) -> None:
    token = SecretBox(SecretBox.generate_key()).encrypt_json({"password": CANARY})
    with pytest.raises(StateError, match="secret key does not match") as info:
        SecretBox(SecretBox.generate_key()).decrypt_json(token)
    text = f"{info.value} {info.value.hint} {info.value.__cause__!r}"
    assert CANARY not in text and token not in text


def test_rotated_keys_still_decrypt() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox(old).encrypt_json(CANARY)
    assert SecretBox(f"{new},{old}").decrypt_json(token) == CANARY


@pytest.mark.parametrize(
    "key", ["", "not-a-fernet-key", "ünïcode"], ids=["empty", "short", "non-ascii"]
)
def test_an_invalid_key_is_refused(key: str) -> None:
    with pytest.raises(StateError, match="secret key"):
        SecretBox(key)


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    boxes: list[SecretBox] = []
    threads = [
        threading.Thread(target=lambda: boxes.append(SecretBox.from_home(tmp_path)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    token = boxes[0].encrypt_json(CANARY)
    assert all(b.decrypt_json(token) == CANARY for b in boxes)
    assert sorted(os.listdir(tmp_path)) == ["secret.key"]


def _decryptions(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """A spy on the real Fernet decryption: the tokens it was asked to decrypt."""
    from cryptography.fernet import MultiFernet

    seen: list[bytes] = []
    real = MultiFernet.decrypt

    def decrypt(self: MultiFernet, token: bytes, ttl: int | None = None) -> bytes:
        seen.append(token)
        return real(self, token, ttl)

    monkeypatch.setattr(MultiFernet, "decrypt", decrypt)
    return seen


def test_a_box_decrypts_each_token_once_and_hands_out_fresh_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: a command reads the same records several times; decrypting is done once."""
    key = SecretBox.generate_key()
    token = SecretBox(key).encrypt_json({"password": CANARY})
    reader = SecretBox(key)  # another command's box: it has not seen the token
    seen = _decryptions(monkeypatch)
    first = reader.decrypt_json(token)
    first["password"] = "changed by a caller"
    assert reader.decrypt_json(token) == {"password": CANARY}, "each call gets its own value"
    assert seen == [token.encode()], "decrypted once"
    # what a box encrypted itself it never decrypts
    again = reader.encrypt_json({"k": 1})
    assert reader.decrypt_json(again) == {"k": 1}
    assert len(seen) == 1


def test_a_wrong_key_still_fails_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    token = SecretBox(SecretBox.generate_key()).encrypt_json(CANARY)
    other = SecretBox(SecretBox.generate_key())
    for _ in range(2):  # a failure is not remembered as a success
        with pytest.raises(StateError, match="does not match"):
            other.decrypt_json(token)
