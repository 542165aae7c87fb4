"""A tiny app for the app image (Debian's python3 and client libraries): it connects to
PostgreSQL, Redis, RabbitMQ, MariaDB and S3 with the credentials in its environment, and
``GET /`` answers ``{"postgres": "ok", ...}`` (or ``"error: ..."``); ``GET /healthz`` is its
readiness. Each check writes and reads something back, on fresh connections."""

import json
import os
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

E = os.environ
TIMEOUT = 10


def postgres() -> None:
    import psycopg2

    conn = psycopg2.connect(
        host=E["PG_HOST"],
        port=int(E["PG_PORT"]),
        dbname=E["PG_DB"],
        user=E["PG_USER"],
        password=E["PG_PASSWORD"],
        connect_timeout=TIMEOUT,
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS probe (v text)")
            cur.execute("INSERT INTO probe VALUES (%s) RETURNING v", ("pg",))
            assert cur.fetchone() == ("pg",)
    finally:
        conn.close()


def redis() -> None:
    import redis as redis_py

    client = redis_py.Redis(
        host=E["REDIS_HOST"],
        port=int(E["REDIS_PORT"]),
        username=E["REDIS_USER"],
        password=E["REDIS_PASSWORD"],
        socket_timeout=TIMEOUT,
    )
    key = f"{E['REDIS_PREFIX']}probe"
    client.set(key, "redis", ex=60)
    assert client.get(key) == b"redis"
    client.close()


def amqp() -> None:
    import pika

    params = pika.ConnectionParameters(
        host=E["AMQP_HOST"],
        port=int(E["AMQP_PORT"]),
        virtual_host=E["AMQP_VHOST"],
        credentials=pika.PlainCredentials(E["AMQP_USER"], E["AMQP_PASSWORD"]),
        socket_timeout=TIMEOUT,
        blocked_connection_timeout=TIMEOUT,
    )
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        ch.queue_declare(queue=queue, auto_delete=False)
        ch.basic_publish(exchange="", routing_key=queue, body=b"amqp")
        for _ in range(50):
            _method, _props, body = ch.basic_get(queue=queue, auto_ack=True)
            if body is not None:
                break
            conn.sleep(0.1)
        ch.queue_delete(queue=queue)
        assert body == b"amqp", body
    finally:
        conn.close()


def mysql() -> None:
    import pymysql

    conn = pymysql.connect(
        host=E["MYSQL_HOST"],
        port=int(E["MYSQL_PORT"]),
        database=E["MYSQL_DB"],
        user=E["MYSQL_USER"],
        password=E["MYSQL_PASSWORD"],
        connect_timeout=TIMEOUT,
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS probe (v varchar(16))")
            cur.execute("INSERT INTO probe VALUES (%s)", ("mysql",))
            cur.execute("SELECT v FROM probe WHERE v = %s", ("mysql",))
            assert cur.fetchone() == ("mysql",)
    finally:
        conn.close()


def s3() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=E["S3_ENDPOINT"],
        region_name=E["S3_REGION"],
        aws_access_key_id=E["S3_KEY"],
        aws_secret_access_key=E["S3_SECRET"],
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            retries={"max_attempts": 1},
        ),
    )
    client.put_object(Bucket=E["S3_BUCKET"], Key="probe", Body=b"s3")
    assert client.get_object(Bucket=E["S3_BUCKET"], Key="probe")["Body"].read() == b"s3"


CHECKS: dict[str, Callable[[], None]] = {
    "postgres": postgres,
    "redis": redis,
    "amqp": amqp,
    "mysql": mysql,
    "s3": s3,
}


def report() -> dict[str, str]:
    out = {}
    for name, check in CHECKS.items():
        try:
            check()
            out[name] = "ok"
        except Exception as exc:
            out[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    return out


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/healthz" else json.dumps(report()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print("client app on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
