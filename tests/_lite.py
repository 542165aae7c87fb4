"""A platform without core servers: one environment type whose only binding is a local volume.

For tests that need a created environment and real deploys, but nothing to connect to.
"""

from __future__ import annotations

import textwrap

__all__ = ["lite_platform", "sleeper_score"]


def lite_platform(env: str) -> str:
    """The platform documents: type ``lite`` (volumes only), team ``team-checkout``, ``env``."""
    return textwrap.dedent(
        f"""\
        apiVersion: stackyard.dev/v1
        kind: EnvironmentType
        metadata: {{name: lite}}
        spec:
          description: Volumes only, no core servers.
          runtime: local
          bindings:
            - {{type: volume, component: local-volume@^1}}
        ---
        apiVersion: stackyard.dev/v1
        kind: Team
        metadata: {{name: team-checkout}}
        spec: {{members: []}}
        ---
        apiVersion: stackyard.dev/v1
        kind: Environment
        metadata: {{name: {env}}}
        spec: {{type: lite, owner: team-checkout}}
        """
    )


def sleeper_score(name: str) -> str:
    """A Score workload ``name``: a ``sleep`` container reading one volume's path."""
    return textwrap.dedent(
        f"""\
        apiVersion: score.dev/v1b1
        metadata: {{name: {name}}}
        containers:
          main:
            image: none
            command: ["sh", "-c", "sleep 3600"]
            variables:
              DATA_DIR: ${{resources.data.path}}
        resources:
          data:
            type: volume
        """
    )
