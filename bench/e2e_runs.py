#!/usr/bin/env python3
"""End-to-end runs/s on each store, side by side in one run.

For SQLite (`funcky dev`) and PostgreSQL (`funcky serve` on a private cluster from
scripts/pg.sh): starts the coordinator and the hello example host (one function, two steps:
three calls per run), sends N events in batches of 100, and measures the time from the first
POST until every run has completed. Everything started here is stopped by PID.

    bench/e2e_runs.py [--build build] [--runs 3000]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=body)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def wait_for(pred, timeout=60.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(step)
    return False


def completed(base):
    # funcky_runs_finished_total{function="…",status="completed"} summed over functions.
    total = 0
    for line in http("GET", base + "/metrics").splitlines():
        if line.startswith("funcky_runs_finished_total{") and 'status="completed"' in line:
            total += int(float(line.split()[-1]))
    return total


def measure(build, work, name, args, runs):
    port, host_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    procs = []
    try:
        with open(os.path.join(work, name + "-funcky.log"), "w") as log:
            procs.append(subprocess.Popen(
                [os.path.join(build, "coordinator", "funcky")] + args +
                ["--port", str(port), "--log-level", "warn"], stdout=log, stderr=log))
        if not wait_for(lambda: http("GET", base + "/healthz")):
            sys.exit(f"{name}: coordinator did not start")
        with open(os.path.join(work, name + "-hello.log"), "w") as log:
            procs.append(subprocess.Popen(
                [os.path.join(build, "examples", "hello"), "--coordinator", base,
                 "--port", str(host_port)], stdout=log, stderr=log))
        if not wait_for(lambda: json.loads(http("GET", base + "/v1/functions"))["data"]):
            sys.exit(f"{name}: host did not register")
        start = time.time()
        sent = 0
        while sent < runs:
            n = min(100, runs - sent)
            batch = [{"name": "demo/hello", "data": {"name": f"n{sent + i}"}} for i in range(n)]
            http("POST", base + "/e/bench", json.dumps(batch).encode())
            sent += n
        if not wait_for(lambda: completed(base) >= runs, timeout=600, step=0.02):
            sys.exit(f"{name}: runs did not complete")
        return runs / (time.time() - start)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--runs", type=int, default=3000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="funcky-bench-e2e-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    results = {}
    try:
        results["SQLite (funcky dev)"] = measure(
            a.build, work, "sqlite", ["dev", "--db", os.path.join(work, "dev.db")], a.runs)
        url = subprocess.check_output(
            [os.path.join(REPO, "scripts", "pg.sh"), "start", pg, str(free_port())]).decode().strip()
        results["PostgreSQL (funcky serve)"] = measure(
            a.build, work, "postgres", ["serve", "--db", url], a.runs)
    finally:
        subprocess.run([os.path.join(REPO, "scripts", "pg.sh"), "stop", pg], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"end-to-end: {a.runs} runs of hello (2 steps, 3 calls each), {os.cpu_count()} cores")
    for store, rate in results.items():
        print(f"  {store:28s} {rate:8.0f} runs/s")
    sqlite, postgres = results.values()
    print(f"  SQLite / PostgreSQL: {sqlite / postgres:.2f}x")


if __name__ == "__main__":
    main()
