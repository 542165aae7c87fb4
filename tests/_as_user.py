"""Test-only: run the stackyard CLI as another identity, in a subprocess.

``python tests/_as_user.py bob approve ID`` runs ``stackyard approve ID`` with the actor
``bob``. The product has no way to do this (no variable, flag or file names the actor: it is
the operating-system account, see docs/governance.md); this script patches the one function
that reads the account, in its own process, the way the server of a later issue will pass an
authenticated identity. It ships nowhere: it lives only in tests/.
"""

from __future__ import annotations

import sys

import stackyard.settings


def main() -> None:
    user = sys.argv[1]
    stackyard.settings._os_user = lambda: user  # type: ignore[attr-defined]
    sys.argv = ["stackyard", *sys.argv[2:]]
    from stackyard.cli.main import run

    run()


if __name__ == "__main__":
    main()
