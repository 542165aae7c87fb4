"""The policy worker process: evaluates Rego for its parent under an address-space limit.

Run as ``python -m stackyard.policy.worker MEMORY_MB``. It reads length-prefixed JSON
requests on stdin and writes one length-prefixed JSON reply per request on stdout; it exits
when stdin closes. A request names its module set by ``key`` and carries the modules the
first time (``modules``); the worker keeps one interpreter per key.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct(">I")


def read_frame(stream: IO[bytes]) -> Any:
    """The next JSON frame, or None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return json.loads(body)


def frame(obj: Any) -> bytes:
    """One JSON value as a length-prefixed frame."""
    body = json.dumps(obj).encode()
    return HEADER.pack(len(body)) + body


def _limit_memory(megabytes: int) -> None:
    """Cap the address space at what the interpreter already maps plus ``megabytes``
    (importing regorus alone reserves about 1 GB of address space it never touches)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        size_kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmSize:"))
    limit = size_kb * 1024 + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _evaluate(engines: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    import regorus

    key = str(request["key"])
    if request.get("modules") is not None:
        engine = regorus.Engine()
        for name, text in request["modules"].items():
            engine.add_policy(name, text)
        engines[key] = engine
    engine = engines.get(key)
    if engine is None:
        return {"missing": True}
    engine.set_input_json(request["input"])
    return {"result": engine.eval_query_as_json(request["query"])}


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes."""
    import regorus  # before the limit: what the import maps is not the policy's

    del regorus
    _limit_memory(int(argv[1]))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    engines: dict[str, Any] = {}
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        try:
            reply = _evaluate(engines, request)
        except MemoryError:
            reply = {"error": "memory"}
        except (RuntimeError, ValueError) as exc:
            reply = {"error": str(exc)}
        stdout.write(frame(reply))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
