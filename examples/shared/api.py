"""orders-api: serves the number of orders the worker has written (GET /), and /healthz."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body, code = {"ok": True}, 200
        else:
            import psycopg

            try:
                with psycopg.connect(connect_timeout=3) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
                    row = conn.execute("SELECT count(*) FROM orders").fetchone()
                    body, code = {"orders": row[0] if row else 0, "database": conn.info.dbname}, 200
            except psycopg.Error as exc:
                print(f"database error: {type(exc).__name__}", flush=True)
                body, code = {"error": type(exc).__name__}, 503
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
