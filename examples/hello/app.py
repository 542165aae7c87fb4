"""hello: a tiny web app that proves its database, cache and volume work.

GET /         writes to and reads back from PostgreSQL, Redis and the volume; JSON report
GET /healthz  200 once the process serves (the readiness and liveness probe)
"""

from __future__ import annotations

import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def check_postgres(token: str) -> dict[str, object]:
    import psycopg

    try:
        with psycopg.connect(connect_timeout=3) as conn:  # PG* variables
            conn.execute("CREATE TABLE IF NOT EXISTS visits (id text PRIMARY KEY, at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO visits (id) VALUES (%s)", (token,))
            row = conn.execute("SELECT id FROM visits WHERE id = %s", (token,)).fetchone()
            total = conn.execute("SELECT count(*) FROM visits").fetchone()
        return {"ok": row is not None and row[0] == token, "visits": total[0] if total else 0}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def check_redis(token: str) -> dict[str, object]:
    import redis

    try:
        client = redis.Redis(
            host=os.environ["REDIS_HOST"],
            port=int(os.environ["REDIS_PORT"]),
            username=os.environ["REDIS_USERNAME"],
            password=os.environ["REDIS_PASSWORD"],
            socket_timeout=3,
        )
        key = f"{os.environ.get('REDIS_PREFIX', '')}last-visit"
        client.set(key, token)
        hits = client.incr(f"{os.environ.get('REDIS_PREFIX', '')}hits")
        got = client.get(key)
        client.close()
        return {"ok": got == token.encode(), "hits": hits}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def check_volume(token: str) -> dict[str, object]:
    try:
        path = Path(os.environ["DATA_DIR"]) / "visits.log"
        with path.open("a") as fh:
            fh.write(token + "\n")
        lines = path.read_text().splitlines()
        return {"ok": lines[-1] == token, "lines": len(lines)}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, {"ok": True})
            return
        if self.path != "/":
            self.reply(404, {"error": "not found"})
            return
        token = uuid.uuid4().hex
        report = {
            "greeting": os.environ.get("GREETING", "hello"),
            "postgres": check_postgres(token),
            "redis": check_redis(token),
            "volume": check_volume(token),
            "at": time.time(),
        }
        report["ok"] = all(report[k]["ok"] for k in ("postgres", "redis", "volume"))
        self.reply(200 if report["ok"] else 503, report)

    def reply(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body, indent=2).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        if "/healthz" not in self.requestline:  # probes every second would drown the log
            print(f"{self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"hello listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
