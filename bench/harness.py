"""The measuring half of bench/run (which builds and installs first). Standard library only.

Starts every row on a free loopback port, checks that it answers the greeting and refuses a bad
token (a row that does not is reported as failed and not measured), then drives the rows with wrk
at each concurrency, taking turns round by round (see `measure_interleaved`), measures the auth
overhead from paired runs of rows (a) and (c) and the metrics overhead from paired runs of rows (am)
and (a) (see `measure_pairs`), samples RSS from /proc,
and writes results.md, results.json and throughput.svg.

    python3 bench/harness.py --out DIR --bin BIN --no-auth BIN --ceiling BIN \
        --venv DIR --node-dir DIR [--duration SECONDS] [--rows a,b,...] [--auth-pairs N]
        [--metrics-pairs N]
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
AUDIENCE = "res_bench"
GREETING = "Hi bench, welcome to Scalekit!"
CONCURRENCY = [1, 16, 64]
PROTOCOL = "2025-06-18"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def standin_command(port):
    """The command of the local stand-in for Scalekit on `port`: the fixture JWKS, and the SDK's
    token and keys endpoints (`bench/peers/standin.py`)."""
    return [sys.executable, os.path.join(ROOT, "bench", "peers", "standin.py"), str(port),
            os.path.join(FIXTURES, "jwks-a.json")]


def mint(issuer, key, kid="key-a", lifetime=3600, subject="usr_bench", scope="mcp:tools"):
    """An RS256 JWT signed with a fixture key by openssl."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps({
        "iss": issuer, "aud": [AUDIENCE], "sub": subject, "client_id": "bench",
        "scope": scope, "iat": now, "exp": now + lifetime,
    }).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(FIXTURES, key), "-binary"],
        input=signing_input, capture_output=True, check=True).stdout
    return f"{header}.{payload}.{b64url(signature)}"


# Rows whose server is several processes under the one the harness started (nginx's master and
# workers under row (gn)'s shell): their CPU and RSS are the whole tree's.
TREE_PIDS = set()


def measured_pids(pid):
    """`pid`, and its descendants when it is in TREE_PIDS."""
    if pid not in TREE_PIDS:
        return [pid]
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, added = [pid], True
    while added:
        added = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.append(child)
                added = True
    return tree


def cpu_seconds(pid):
    """User + system CPU time a process (see measured_pids) has used so far (0 when it is gone)."""
    total = 0.0
    for each in measured_pids(pid):
        try:
            with open(f"/proc/{each}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kib(pid):
    """VmRSS and VmHWM of a process (see measured_pids), in KiB (None when it is gone)."""
    values = {}
    for each in measured_pids(pid):
        try:
            with open(f"/proc/{each}/status") as f:
                status = f.read()
        except OSError:
            continue
        for name in ("VmRSS", "VmHWM"):
            match = re.search(rf"^{name}:\s+(\d+) kB", status, re.M)
            if match:
                values[name] = values.get(name, 0) + int(match.group(1))
    return values.get("VmRSS"), values.get("VmHWM")


def post(port, body, token, session=None, path="/"):
    """One MCP POST; returns (status, headers, text)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        conn.close()


def initialize(port, token):
    """Opens a stateful MCP session; returns its id (None for a server without sessions)."""
    status, headers, text = post(port, {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}, token)
    if status != 200:
        raise RuntimeError(f"initialize answered {status}: {text[:200]}")
    session = {k.lower(): v for k, v in headers.items()}.get("mcp-session-id")
    status, _, text = post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           token, session)
    if status not in (200, 202):
        raise RuntimeError(f"notifications/initialized answered {status}: {text[:200]}")
    return session


def greet(port, token, session):
    return post(port, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "greet_user", "arguments": {"name": "bench"}}},
                token, session)


def wait_ready(port, path, deadline_s=30.0):
    """Polls GET path until 200; returns the seconds it took (from now)."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.002)
    raise RuntimeError(f"not ready on {path} after {deadline_s:.0f} s")


class Sampler(threading.Thread):
    """Samples a process's RSS every 100 ms while running."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_event = pid, 0, threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            rss, _ = rss_kib(self.pid)
            if rss:
                self.peak = max(self.peak, rss)
            time.sleep(0.1)

    def stop(self):
        self.stop_event.set()
        self.join()
        return self.peak


# wrk runs under SCHED_BATCH: it gets its fair share of the CPU, but its threads, woken by each
# response, no longer preempt the server under test. With client and server on the same two cores,
# those preemptions (a quarter of requests) cost the server more the longer it works per request:
# measured here, `serve --stateless` did ~25 % more req/s with it and the ceiling the same.
# BENCH_WRK_BATCH=0 measures the other way, for comparison.
LOW_WAKEUP_PRIORITY = (["chrt", "--batch", "0"]
                       if shutil.which("chrt") and os.environ.get("BENCH_WRK_BATCH", "1") != "0" else [])


def wrk(port, token, session, concurrency, duration, tool=None):
    """`tool`: (name, JSON arguments, text every answer holds) instead of greet_user."""
    env = dict(os.environ, BENCH_TOKEN=token, BENCH_SESSION=session or "")
    if tool:
        env.update(BENCH_TOOL=tool[0], BENCH_ARGUMENTS=tool[1], BENCH_EXPECT=tool[2])
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(
        [*LOW_WAKEUP_PRIORITY, "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s",
         "-s", os.path.join(ROOT, "bench", "wrk", "tools_call.lua"), f"http://127.0.0.1:{port}/"],
        env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-400:]} {out.stderr[-400:]}")
    result = json.loads(line[len("BENCH_RESULT "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def stdio_child(binary):
    """The stdio MCP server of row (gc), as the gateway starts it and as `stdio_direct` calls it."""
    return [binary, "serve", "--transport", "stdio", "--log-level", "warn"]


def stdio_direct(binary, calls=2000, warm_up=200):
    """p50 (µs) of a `tools/call` answered by row (gc)'s child called directly, one call at a time
    over its stdin and stdout (a JSON-RPC line out, a line back): what (gc) costs without the
    gateway. Python's side of the pipe is in it, a few µs."""
    child = subprocess.Popen(stdio_child(binary), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)

    def send(message):
        child.stdin.write(json.dumps(message).encode() + b"\n")
        child.stdin.flush()

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                         "clientInfo": {"name": "bench", "version": "1"}}})
        child.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        times = []
        for n in range(warm_up + calls):
            started = time.perf_counter_ns()
            send({"jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
                  "params": {"name": "greet_user", "arguments": {"name": "bench"}}})
            answer = child.stdout.readline().decode()
            elapsed = time.perf_counter_ns() - started
            if GREETING not in answer:
                raise RuntimeError(f"the stdio child answered: {answer[:200]}")
            if n >= warm_up:
                times.append(elapsed / 1000)
        return {"status": "ok", "calls": calls, "p50_us": statistics.median(times)}
    except Exception as error:
        return {"status": f"FAILED: {error}"}
    finally:
        child.kill()
        child.wait()


def rows(args, sk_url, jwks_url):
    """name, label, command, env, readiness path, stateful?, refuses bad tokens?"""
    ours = lambda binary, *extra: [  # noqa: E731
        binary, *(["serve"] if binary == args.bin else []), "--port", "{port}",
        "--sk-env-url", sk_url, "--audience", AUDIENCE, "--public-url", "http://127.0.0.1:{port}",
        "--log-level", "warn", *extra]
    venv_python = os.path.join(args.venv, "bin", "python")
    seed_env = {"SK_ENV_URL": sk_url, "SK_CLIENT_ID": "skc_bench", "SK_CLIENT_SECRET": "bench",
                "EXPECTED_AUDIENCE": AUDIENCE, "PORT": "{port}"}
    seed = os.path.join(ROOT, "bench", "peers", "seed_server.py")
    proxy = os.path.join(ROOT, "bench", "peers", "fastmcp_proxy.py")
    return [
        ("a", "scalekit-mcp serve --stateless", ours(args.bin, "--stateless"), {}, "/ready", False, True),
        ("am", "scalekit-mcp serve --stateless --metrics-addr (metrics recorded)",
         ours(args.bin, "--stateless", "--metrics-addr", "127.0.0.1:{metrics_port}"), {}, "/ready", False,
         True),
        ("b", "scalekit-mcp serve (stateful)", ours(args.bin), {}, "/ready", True, True),
        ("c", "serve --stateless, auth off (bench_no_auth)", ours(args.no_auth, "--stateless"), {},
         "/ready", False, False),
        ("d", "seed: FastAPI + FastMCP + Scalekit SDK, as shipped (stateful)", [venv_python, seed],
         seed_env, "/health", True, True),
        ("d2", "seed, stateless (FastMCP stateless_http + json_response)", [venv_python, seed],
         dict(seed_env, SEED_STATELESS="1"), "/health", False, True),
        ("e", "TypeScript SDK, requireBearerAuth + jose JWKS, stateless",
         ["node", os.path.join(args.node_dir, "ts_server.mjs")],
         {"PORT": "{port}", "JWKS_URL": jwks_url, "ISSUER": sk_url, "AUDIENCE": AUDIENCE},
         "/health", False, True),
        ("f", "ceiling: bare axum route, fixed JSON (no auth, no MCP)", [args.ceiling, "{port}"], {},
         "/ready", False, False),
        # The gateway in front of row (c), a fast local MCP server; row (c) is that upstream
        # called directly. Stateful (each session its own upstream session), and stateless (every
        # request forwarded on one shared upstream session).
        ("g", "gateway: serve --upstream (c) (stateful)", ours(args.bin, "--upstream", "{upstream}"), {},
         "/ready", True, True),
        ("gs", "gateway: serve --stateless --upstream (c)",
         ours(args.bin, "--stateless", "--upstream", "{upstream}"), {}, "/ready", False, True),
        # (gs) with one worker thread, as the README suggests for a gateway sharing a small machine
        # with its upstream.
        ("gs1", "gateway: serve --stateless --upstream (c), TOKIO_WORKER_THREADS=1",
         ours(args.bin, "--stateless", "--upstream", "{upstream}"), {"TOKIO_WORKER_THREADS": "1"},
         "/ready", False, True),
        # The Python peer doing the job of (gs): FastMCP's proxy with its own JWT auth, in front of
        # the same (c).
        ("gp", "FastMCP create_proxy + JWTVerifier in front of (c), stateless", [venv_python, proxy],
         {"PORT": "{port}", "UPSTREAM": "{upstream}", "JWKS_URL": jwks_url, "ISSUER": sk_url,
          "AUDIENCE": AUDIENCE}, "/health", False, True),
        # nginx as a plain reverse proxy in front of the same (c): what any HTTP proxy keeps of its
        # upstream's throughput on this machine, the yardstick for (gs).
        ("gn", "nginx reverse proxy in front of (c) (no auth, no MCP)",
         ["bash", os.path.join(ROOT, "bench", "peers", "nginx_proxy.sh")],
         {"PORT": "{port}", "UPSTREAM": "{upstream}"}, "/ready", False, False),
        # The gateway in front of a command: one session, so one child, `serve --transport stdio`
        # (its per-call overhead is read against that child called directly: `stdio_direct`).
        ("gc", "gateway: serve -- (scalekit-mcp serve --transport stdio) (stateful)",
         ours(args.bin, "--", *stdio_child(args.bin)), {}, "/ready", True, True),
    ]


class Row:
    """One row's server process, from its start and checks to its measurements."""

    def __init__(self, row, log_dir, upstream=""):
        self.name, self.label, command, extra_env, self.ready_path, self.stateful, self.has_auth = row
        self.port = free_port()
        self.metrics_port = free_port()
        command = [part.replace("{port}", str(self.port)).replace("{metrics_port}", str(self.metrics_port))
                   .replace("{upstream}", upstream) for part in command]
        env = dict(os.environ, **{k: v.replace("{port}", str(self.port)).replace("{upstream}", upstream)
                                  for k, v in extra_env.items()})
        env.pop("RUST_LOG", None)
        self.result = {"row": self.name, "label": self.label, "stateful": self.stateful, "auth": self.has_auth}
        self.session = None
        self.sampler = None
        self.log = open(os.path.join(log_dir, f"{self.name}.log"), "w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        if self.name == "gn":
            TREE_PIDS.add(self.process.pid)

    @property
    def ok(self):
        return "status" not in self.result

    def fail(self, error):
        """A failed row is reported, never benchmarked; its server is stopped at once, so that it
        cannot disturb the rows still measured."""
        self.process.terminate()
        self.result["status"] = f"FAILED: {error}"
        self.result.pop("runs", None)
        print(f"  {self.name} FAILED: {error} (log: {self.log.name})", flush=True)

    def check(self, token, bad_token):
        """Ready, answers the greeting with a valid token and a 401 for a bad one; idle RSS."""
        try:
            wait_ready(self.port, self.ready_path)
            self.result["startup_ms"] = (time.monotonic() - self.started) * 1000
            self.session = initialize(self.port, token) if self.stateful else None
            status, _, text = greet(self.port, token, self.session)
            if status != 200 or GREETING not in text:
                raise RuntimeError(f"tools/call answered {status}: {text[:300]}")
            if self.has_auth:
                status, _, text = greet(self.port, bad_token, self.session)
                if status != 401:
                    raise RuntimeError(f"a token with a bad signature got {status}, not 401: {text[:200]}")
                self.result["refuses_bad_token"] = True
            time.sleep(0.5)
            self.result["rss_idle_kib"], _ = rss_kib(self.process.pid)
            self.result["runs"] = {}
            self.sampler = Sampler(self.process.pid)
            self.sampler.start()
        except Exception as error:
            self.fail(error)

    def measure(self, token, concurrency, duration, warm_up):
        """One wrk run at `concurrency`; the cell keeps the fastest run."""
        try:
            if warm_up:
                wrk(self.port, token, self.session, concurrency, 1)
            cpu_before = cpu_seconds(self.process.pid)
            run = wrk(self.port, token, self.session, concurrency, duration)
            cpu = cpu_seconds(self.process.pid) - cpu_before
        except Exception as error:
            self.fail(error)
            return
        # Server CPU per request: steadier than req/s on a shared machine, where the rate moves
        # with what else runs but the work per request does not.
        run["cpu_us_per_request"] = cpu * 1e6 / run["requests"] if run["requests"] else None
        runs = self.result["runs"]
        best = runs.get(str(concurrency))
        rounds_rps = (best["rounds_rps"] if best else []) + [round(run["rps"])]
        rounds_cpu = (best["rounds_cpu_us"] if best else []) + [run["cpu_us_per_request"]]
        if best is None or run["rps"] > best["rps"]:
            best = run
        best["rounds_rps"] = rounds_rps
        best["rounds_cpu_us"] = rounds_cpu
        runs[str(concurrency)] = best
        print(f"  {self.name} c={concurrency:<3} {run['rps']:>10.0f} req/s  p50 {run['p50_us'] / 1000:.2f} ms"
              f"  p99 {run['p99_us'] / 1000:.2f} ms  bad {run['bad']}", flush=True)

    def finish(self):
        """Stops the server; RSS under load is the peak sampled while it was measured."""
        if self.sampler:
            self.result["rss_load_kib"] = self.sampler.stop()
        if self.ok:
            _, self.result["rss_peak_kib"] = rss_kib(self.process.pid)
            bad = sum(run["bad"] + run["socket_errors"] for run in self.result["runs"].values())
            self.result["status"] = "ok" if bad == 0 else f"ok, but {bad} bad responses or socket errors under load"
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        return self.result


def settle(rows, quiet=0.02, window=0.2, limit=5.0):
    """Waits until every row's server is idle (under `quiet` of a core over `window` seconds). A
    slow peer still works through the requests in flight when wrk stops, for up to a second; the
    next row must not be measured against that."""
    pids = [row.process.pid for row in rows if row.process.poll() is None]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(window)
        if sum(cpu_seconds(pid) for pid in pids) - before <= quiet * window:
            return


def measure_interleaved(rows, token, duration, rounds):
    """Every round measures every row at each concurrency, the rows taking turns (starting one
    further each round). On a shared machine whose speed drifts by tens of percent within minutes,
    measuring one row's rounds back to back and then the next row's put the rows in different
    conditions; taking turns gives every row the same ones, so the ratios compare like with like."""
    for round_index in range(rounds):
        for concurrency in CONCURRENCY:
            turn = round_index % len(rows)
            for row in rows[turn:] + rows[:turn]:
                if row.ok:
                    settle(rows)
                    row.measure(token, concurrency, duration, warm_up=round_index == 0)


def measure_pairs(what, on, off, token, pairs, duration, concurrency=64):
    """The overhead of `what` from paired runs: rows `on` and `off` back to back, in ABBA order,
    `pairs` times; the median of the pairs' ratios. Two runs a few seconds apart see the same
    machine, and the median ignores the pairs that a burst of outside load split; the best-of-three
    cells of the main table move by more than the few percent this measures (see
    docs/performance.md)."""
    def one(row):
        settle([on, off])
        before = cpu_seconds(row.process.pid)
        run = wrk(row.port, token, None, concurrency, duration)
        cpu_us = (cpu_seconds(row.process.pid) - before) * 1e6 / run["requests"]
        return {"rps": run["rps"], "cpu_us_per_request": cpu_us}
    results = []
    try:
        for index in range(pairs):
            order = (on, off) if index % 2 == 0 else (off, on)
            measured = {row.name: one(row) for row in order}
            pair = {"on": measured[on.name], "off": measured[off.name]}
            pair["cpu_overhead"] = pair["on"]["cpu_us_per_request"] / pair["off"]["cpu_us_per_request"] - 1
            pair["rps_overhead"] = 1 - pair["on"]["rps"] / pair["off"]["rps"]
            results.append(pair)
            print(f"  {what} pair {index + 1}/{pairs}: CPU/request {pair['cpu_overhead']:+.1%}, "
                  f"req/s {-pair['rps_overhead']:+.1%}", flush=True)
    except Exception as error:
        print(f"  {what} pairs stopped: {error}", flush=True)
    if not results:
        return None
    return {"pairs": results, "duration_s": duration, "concurrency": concurrency,
            "on": on.name, "off": off.name,
            "cpu_overhead_median": statistics.median(p["cpu_overhead"] for p in results),
            "rps_overhead_median": statistics.median(p["rps_overhead"] for p in results)}


def timed_script(script, env, *args):
    """Runs bench/check-token.sh or bench/call.sh and returns the median in ms it prints."""
    try:
        out = subprocess.run(["bash", os.path.join(ROOT, "bench", script), *args], capture_output=True,
                             text=True, env=dict(os.environ, **env), cwd=ROOT, timeout=120)
    except subprocess.TimeoutExpired:
        return {"status": "FAILED: timed out after 120 s"}
    text = out.stdout + out.stderr
    match = re.search(r"([0-9.]+) ms median|median ([0-9.]+) ms", text)
    if out.returncode != 0 or not match:
        return {"status": f"FAILED: {text[-300:]}"}
    return {"status": "ok", "median_ms": float(match.group(1) or match.group(2))}


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt_rps(run):
    return f"{run['rps']:,.0f}" if run else "—"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--no-auth", required=True)
    parser.add_argument("--ceiling", required=True)
    parser.add_argument("--venv", required=True)
    parser.add_argument("--node-dir", required=True)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per cell; the fastest is kept")
    parser.add_argument("--rows", default="a,b,c,d,d2,e,f,g,gs,gs1,gn,gp,gc")
    parser.add_argument("--skip-extras", action="store_true", help="no check-token / call timings")
    parser.add_argument("--auth-pairs", type=int, default=10,
                        help="paired runs of rows a and c for the auth overhead (0: none)")
    parser.add_argument("--metrics-pairs", type=int, default=10,
                        help="paired runs of rows am and a for the metrics overhead (0: none)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log_dir = tempfile.mkdtemp(prefix="bench-logs-")

    machine = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), platform.machine()),
        "kernel": platform.release(),
        "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "rustc_processes_before": len(subprocess.run(["pgrep", "-x", "rustc"], capture_output=True,
                                                     text=True).stdout.split()),
        "wrk_duration_s": args.duration,
        "rounds": args.rounds,
    }
    print(f"machine: {machine['nproc']} cores, load {load()}, "
          f"{machine['rustc_processes_before']} rustc processes running", flush=True)

    sk_port = free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    standin = subprocess.Popen(standin_command(sk_port))
    started = []
    auth_pairs = metrics_pairs = None
    try:
        wait_ready(sk_port, "/keys")
        token = mint(sk_url, "rsa-a.pem")
        bad_token = mint(sk_url, "rsa-b.pem")  # names key-a, signed with key b: a bad signature
        wanted = set(args.rows.split(","))
        # Row (am) only serves the metrics pairs, unless asked for by name.
        paired_only = {"am"} - wanted if args.metrics_pairs and "a" in wanted else set()
        for row in rows(args, sk_url, f"{sk_url}/keys"):
            if row[0] in wanted | paired_only:
                print(f"row {row[0]}: {row[1]}", flush=True)
                # The gateway's upstream is row (c), started before it.
                upstream = next((f"http://127.0.0.1:{r.port}/" for r in started if r.name == "c"), "")
                started.append(Row(row, log_dir, upstream))
                if row[0] in ("g", "gs", "gs1", "gn", "gp") and not upstream:
                    started[-1].fail(f"row {row[0]} needs row c (its upstream) in --rows")
                    continue
                started[-1].check(token, bad_token)
        measure_interleaved([row for row in started if row.name not in paired_only], token, args.duration,
                            args.rounds)
        ok = lambda name: next((row for row in started if row.name == name and row.ok), None)  # noqa: E731
        pair_duration = min(args.duration, 3)
        if ok("a") and ok("c") and args.auth_pairs:
            print(f"auth overhead: {args.auth_pairs} paired runs of (a) and (c)", flush=True)
            auth_pairs = measure_pairs("auth", ok("a"), ok("c"), token, args.auth_pairs, pair_duration)
        if ok("am") and ok("a") and args.metrics_pairs:
            print(f"metrics overhead: {args.metrics_pairs} paired runs of (am) and (a)", flush=True)
            metrics_pairs = measure_pairs("metrics", ok("am"), ok("a"), token, args.metrics_pairs,
                                          pair_duration)
    finally:
        results = [row.finish() for row in started]
        standin.terminate()
        standin.wait()

    skipped = {"status": "skipped"}
    extras = {
        "binary_bytes": os.path.getsize(args.bin) if os.path.exists(args.bin) else None,
        "check_token": skipped if args.skip_extras else timed_script(
            "check-token.sh", {"SCALEKIT_MCP_BIN": args.bin}, "200"),
        "call": skipped if args.skip_extras else timed_script(
            "call.sh", {"RUNS": "30", "SCALEKIT_MCP_BIN": args.bin}),
        "stdio_direct": stdio_direct(args.bin) if any(r["row"] == "gc" for r in results) else skipped,
    }
    machine["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = {"machine": machine, "rows": results, "extras": extras, "auth_pairs": auth_pairs,
              "metrics_pairs": metrics_pairs}
    report["ratios"] = ratios(results)
    report["targets"] = targets(results, extras, auth_pairs, metrics_pairs)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(report))
    with open(os.path.join(args.out, "throughput.svg"), "w") as f:
        f.write(svg(results))
    print(markdown(report))
    print(f"written: {args.out}/results.md, results.json, throughput.svg (server logs in {log_dir})")


def by_row(results):
    return {r["row"]: r for r in results if r.get("runs")}


def ratios(results):
    rows = by_row(results)
    pairs = [
        ("ours stateless / seed as shipped", "a", "d"),
        ("ours stateful / seed as shipped", "b", "d"),
        ("ours stateless / seed stateless", "a", "d2"),
        ("ours stateless / TypeScript SDK", "a", "e"),
        ("ours stateless / ceiling", "a", "f"),
        ("auth on / auth off (stateless)", "a", "c"),
        ("gateway / its upstream called directly", "g", "c"),
        ("stateless gateway / its upstream called directly", "gs", "c"),
        ("stateless gateway, one worker thread / its upstream called directly", "gs1", "c"),
        ("stateless gateway / FastMCP proxy", "gs", "gp"),
        ("nginx proxy / its upstream called directly", "gn", "c"),
        ("stateless gateway / nginx proxy", "gs", "gn"),
    ]
    out = []
    for label, ours, peer in pairs:
        values = {}
        for c in CONCURRENCY:
            if ours in rows and peer in rows:
                values[str(c)] = rows[ours]["runs"][str(c)]["rps"] / rows[peer]["runs"][str(c)]["rps"]
        out.append({"label": label, "ours": ours, "peer": peer, "by_concurrency": values})
    return out


def least_cpu(row, concurrency=64):
    """The least server CPU per request (µs) among a row's runs at `concurrency`."""
    values = [v for v in row["runs"][str(concurrency)].get("rounds_cpu_us", []) if v]
    return min(values) if values else None


def targets(results, extras, auth_pairs, metrics_pairs=None):
    rows = by_row(results)
    a, c, d, f = (rows.get(k) for k in ("a", "c", "d", "f"))
    rps = lambda row, conc=64: row["runs"][str(conc)]["rps"] if row else None  # noqa: E731
    checks = []

    def check(name, goal, value, ok, unit=""):
        checks.append({"target": name, "goal": goal,
                       "measured": None if value is None else f"{value}{unit}",
                       "met": None if value is None else bool(ok)})

    if a and f:
        share = max(rps(a, conc) for conc in CONCURRENCY) / max(rps(f, conc) for conc in CONCURRENCY)
        check("stateless throughput vs ceiling (best of each)", "≥ 50 %", f"{share:.0%}", share >= 0.5)
    if a and d:
        times = max(rps(a, conc) for conc in CONCURRENCY) / max(rps(d, conc) for conc in CONCURRENCY)
        check("stateless throughput vs seed as shipped (best of each)", "≥ 100×", f"{times:.0f}×", times >= 100)
    if auth_pairs:
        pairs = len(auth_pairs["pairs"])
        overhead = auth_pairs["cpu_overhead_median"]
        check(f"auth overhead at c=64, server CPU per request (on/off − 1, median of {pairs} pairs)",
              "≤ 10 %", f"{overhead:.1%}", overhead <= 0.10)
        overhead = auth_pairs["rps_overhead_median"]
        check(f"auth overhead at c=64, throughput (1 − on/off, median of {pairs} pairs)",
              "≤ 10 %", f"{overhead:.1%}", overhead <= 0.10)
    g, gs = rows.get("g"), rows.get("gs")
    if gs and c:
        share = rps(gs) / rps(c)
        check("gateway throughput vs its upstream called directly (c=64, serve --stateless --upstream)",
              "≥ 50 %", f"{share:.0%}", share >= 0.5)
    gp = rows.get("gp")
    if gs and gp:
        times = rps(gs) / rps(gp)
        check("stateless gateway vs the FastMCP proxy doing the same job (c=64)", "≥ 20×", f"{times:.0f}×",
              times >= 20)
    gc, direct = rows.get("gc"), extras.get("stdio_direct", {})
    if gc and direct.get("p50_us"):
        overhead = (gc["runs"]["1"]["p50_us"] - direct["p50_us"]) / 1000
        check("stdio gateway per-call overhead (p50, one session: (gc) at c=1 − its child called directly)",
              "≤ 0.3 ms", f"{overhead:.2f}", overhead <= 0.3, " ms")
    if g and c:
        share = rps(g) / rps(c)
        check("stateful gateway throughput vs its upstream called directly (c=64; no target of its own)",
              "measured", f"{share:.0%}", True)
    if metrics_pairs:
        pairs = len(metrics_pairs["pairs"])
        overhead = metrics_pairs["rps_overhead_median"]
        check(f"metrics overhead at c=64, throughput (1 − on/off, median of {pairs} pairs)",
              "≤ 3 %", f"{overhead:.1%}", overhead <= 0.03)
        overhead = metrics_pairs["cpu_overhead_median"]
        check(f"metrics overhead at c=64, server CPU per request (on/off − 1, median of {pairs} pairs)",
              "≤ 3 %", f"{overhead:.1%}", overhead <= 0.03)
    if a:
        p99 = a["runs"]["64"]["p99_us"] / 1000
        check("p99 at c=64, stateless", "≤ 5 ms", f"{p99:.2f}", p99 <= 5, " ms")
        check("idle RSS", "≤ 15 MB", f"{a['rss_idle_kib'] / 1024:.1f}", a["rss_idle_kib"] <= 15 * 1024, " MiB")
        check("RSS under load", "≤ 40 MB", f"{a['rss_load_kib'] / 1024:.1f}", a["rss_load_kib"] <= 40 * 1024,
              " MiB")
        check("startup to ready (local JWKS)", "≤ 100 ms", f"{a['startup_ms']:.0f}", a["startup_ms"] <= 100,
              " ms")
    if extras["binary_bytes"]:
        size = extras["binary_bytes"] / 1024 / 1024
        check("release binary", "≤ 20 MB", f"{size:.1f}", size <= 20, " MiB")
    return checks


def markdown(report):
    m = report["machine"]
    lines = [
        f"Measured {m['date']} on {m['nproc']} cores ({m['cpu']}, Linux {m['kernel']}), "
        f"wrk {m['wrk_duration_s']} s per run, the fastest of {m.get('rounds', 1)} runs per cell "
        "(the rows take turns, so each row's runs are spread over the same minutes), "
        "client and server on the same machine (wrk takes part of the CPU every row is measured with; "
        + ("it runs under SCHED_BATCH, so its wakeups do not preempt the server)." if LOW_WAKEUP_PRIORITY
           else "at normal priority, so its wakeups preempt the server)."),
        "",
        f"Machine load: before `{m['uptime_before']}`; after `{m['uptime_after']}`; "
        f"{m['rustc_processes_before']} rustc processes were running at the start. "
        + ("Other work shared the cores, so absolute numbers are low and noisy: "
           "the ratios, taken within this one run, are the figures to read."
           if m["rustc_processes_before"] else
           "Nothing else was building; the ratios, taken within this one run, are still the figures "
           "to read."),
        "",
        "| row | req/s c=1 | req/s c=16 | req/s c=64 | p50 / p99 c=64 | CPU/request c=64 | RSS idle | RSS load "
        "| ready in | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        runs = r.get("runs", {})
        c64 = runs.get("64")
        lat = f"{c64['p50_us'] / 1000:.2f} / {c64['p99_us'] / 1000:.2f} ms" if c64 else "—"
        mib = lambda k: f"{r[k] / 1024:.1f} MiB" if r.get(k) else "—"  # noqa: E731
        ready = f"{r['startup_ms']:.0f} ms" if "startup_ms" in r else "—"
        cpu = least_cpu(r) if c64 else None
        cpu = f"{cpu:.1f} µs" if cpu else "—"
        lines.append(f"| ({r['row']}) {r['label']} | {fmt_rps(runs.get('1'))} | {fmt_rps(runs.get('16'))} | "
                     f"{fmt_rps(c64)} | {lat} | {cpu} | {mib('rss_idle_kib')} | {mib('rss_load_kib')} | "
                     f"{ready} | {r['status']} |")
    lines += ["", "CPU/request: the server process's user + system CPU time over a wrk run divided by the "
              "requests it answered, the least of the row's runs at c=64 (every row is one process).",
              "", "| ratio (same run) | c=1 | c=16 | c=64 |", "|---|---:|---:|---:|"]
    for ratio in report["ratios"]:
        values = ratio["by_concurrency"]
        cell = lambda c: f"{values[c]:.2f}×" if c in values else "—"  # noqa: E731
        lines.append(f"| {ratio['label']} | {cell('1')} | {cell('16')} | {cell('64')} |")
    for what, key in (("Auth", "auth_pairs"), ("Metrics", "metrics_pairs")):
        pairs = report.get(key)
        if not pairs:
            continue
        cpu = ", ".join(f"{p['cpu_overhead']:+.0%}" for p in pairs["pairs"])
        rps = ", ".join(f"{-p['rps_overhead']:+.0%}" for p in pairs["pairs"])
        lines += ["", f"{what} overhead from {len(pairs['pairs'])} paired runs of ({pairs['on']}) and "
                      f"({pairs['off']}) at c={pairs['concurrency']}, {pairs['duration_s']} s each, in ABBA "
                      f"order: server CPU per request with {what.lower()} against without, pair by pair: "
                      f"{cpu} (median {pairs['cpu_overhead_median']:+.1%}); req/s: {rps} (median "
                      f"{-pairs['rps_overhead_median']:+.1%})."]
    e = report["extras"]
    fmt = lambda x: f"{x['median_ms']:.1f} ms median" if x.get("median_ms") is not None else x["status"]  # noqa: E731
    lines += ["", f"`check-token --jwks` wall time: {fmt(e['check_token'])}; "
                  f"`call greet_user` wall time against a local `serve`: {fmt(e['call'])}; "
                  f"release binary: {(e['binary_bytes'] or 0) / 1024 / 1024:.1f} MiB"
                  + (f"; row (gc)'s stdio child called directly: {e['stdio_direct']['p50_us']:.0f} µs p50 "
                     f"over {e['stdio_direct']['calls']} calls." if e.get("stdio_direct", {}).get("p50_us")
                     else "."),
              "", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured'] or '—'} | {met} |")
    return "\n".join(lines) + "\n"


def svg(results):
    """Throughput against concurrency, log-scale y, one line per row; written by hand."""
    width, height, left, right, top, bottom = 760, 420, 70, 330, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    measured = [r for r in results if r.get("runs")]
    values = [run["rps"] for r in measured for run in r["runs"].values() if run["rps"] > 0]
    import math
    lo = 10 ** math.floor(math.log10(min(values))) if values else 1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 10
    y = lambda v: top + plot_h - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_h  # noqa: E731
    x = lambda i: left + i * plot_w / (len(CONCURRENCY) - 1)  # noqa: E731
    colors = ["#d62728", "#ff7f0e", "#9467bd", "#2ca02c", "#17becf", "#1f77b4", "#7f7f7f"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Authenticated tools/call greet_user: requests/s '
           f'(log scale) by concurrency</text>']
    decade = lo
    while decade <= hi:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(decade):.1f}" y2="{y(decade):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">'
                   f'{decade:,.0f}</text>')
        decade *= 10
    for i, c in enumerate(CONCURRENCY):
        out.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 20}" text-anchor="middle">c={c}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
               'concurrent connections (wrk)</text>')
    for n, r in enumerate(measured):
        color = colors[n % len(colors)]
        points = " ".join(f"{x(i):.1f},{y(r['runs'][str(c)]['rps']):.1f}"
                          for i, c in enumerate(CONCURRENCY) if r["runs"][str(c)]["rps"] > 0)
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        for point in points.split():
            px, py = point.split(",")
            out.append(f'<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>')
        ly = top + 10 + n * 20
        label = f"({r['row']}) {r['label']}"
        label = label if len(label) <= 52 else label[:51] + "…"
        out.append(f'<line x1="{left + plot_w + 15}" x2="{left + plot_w + 35}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/><text x="{left + plot_w + 40}" y="{ly + 4}" '
                   f'font-size="10">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (bench/run installs it)")
    main()
