"""orders-worker: writes an order every INTERVAL_S seconds into the shared database."""

import os
import time

import psycopg

interval = float(os.environ.get("INTERVAL_S", "1"))
while True:
    try:
        with psycopg.connect(connect_timeout=3, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
            while True:
                conn.execute("INSERT INTO orders DEFAULT VALUES")
                print("order written", flush=True)
                time.sleep(interval)
    except psycopg.Error as exc:
        print(f"database unavailable ({type(exc).__name__}); retrying", flush=True)
        time.sleep(1)
