"""The policy worker process: evaluates Rego for its parent under an address-space limit.

Run as ``python -m stackyard.policy.worker MEMORY_MB``. A request on stdin is two
length-prefixed blocks: a JSON header (``key`` naming the module set, ``query``, and the
``modules`` the first time a key is used; no ``query``: only load them) and the input
document's JSON, passed through as is. The reply on stdout is a status byte (``R`` result, ``E`` error, ``M`` out of memory)
and a length-prefixed block: the interpreter's JSON result or the error message. The
worker keeps one interpreter per key and exits when stdin closes.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct(">I")


def read_block(stream: IO[bytes]) -> bytes | None:
    """The next length-prefixed block, or None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def block(data: bytes) -> bytes:
    """``data`` as a length-prefixed block."""
    return HEADER.pack(len(data)) + data


def _limit_memory(megabytes: int) -> None:
    """Cap the address space at what the interpreter already maps plus ``megabytes``
    (importing regorus alone reserves about 1 GB of address space it never touches)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        size_kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmSize:"))
    limit = size_kb * 1024 + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _evaluate(engines: dict[str, Any], request: dict[str, Any], document: str) -> str:
    import regorus

    key = str(request["key"])
    if request.get("modules") is not None:
        engine = regorus.Engine()
        for name, text in request["modules"].items():
            engine.add_policy(name, text)
        engines[key] = engine
    engine = engines[key]
    if request.get("query") is None:  # load only: compile the modules ahead of their use
        return "null"
    engine.set_input_json(document)
    return str(engine.eval_query_as_json(request["query"]))


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes."""
    import regorus  # before the limit: what the import maps is not the policy's

    del regorus
    _limit_memory(int(argv[1]))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    engines: dict[str, Any] = {}
    while True:
        header, document = read_block(stdin), read_block(stdin)
        if header is None or document is None:
            return 0
        try:
            status, reply = b"R", _evaluate(engines, json.loads(header), document.decode())
        except MemoryError:
            status, reply = b"M", ""
        except (RuntimeError, ValueError, KeyError) as exc:
            status, reply = b"E", str(exc)
        stdout.write(status + block(reply.encode()))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
