"""Memory per stateful session, and whether it comes back (issue 22). Standard library only.

Starts `serve` (stateful, at its default log level) against the fixture JWKS, opens SESSIONS
sessions spread over CALLERS callers (each a different token subject), samples RSS, waits until
the idle sessions sleep (`--session-sleep-after`) and samples it again, closes every session with
DELETE, waits, and samples RSS once more. Prints one JSON object:

    python3 bench/sessions.py --bin target/release/scalekit-mcp [--sessions 3000] [--callers 30]
        [--sleep-after 30s] [--serve-arg=ARG ...] [--upstream-command "CMD ARGS"]

`--max-sessions` is raised to fit the run; `--max-sessions-per-caller` stays at its default (100),
so 3000 sessions of 30 callers is exactly the most the defaults let 30 callers hold.
"""

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def delete(port, token, session):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("DELETE", "/", headers={"Authorization": f"Bearer {token}",
                                             "Mcp-Session-Id": session})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def health(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
    finally:
        conn.close()


def settle(pid, seconds=3.0):
    """RSS once it has stopped moving (or after `seconds`)."""
    previous, deadline = None, time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss, _ = harness.rss_kib(pid)
        if rss == previous:
            return rss
        previous = rss
        time.sleep(0.3)
    return previous


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=30)
    parser.add_argument("--sleep-after", default="30s",
                        help="serve's --session-sleep-after (seconds, with an s)")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="one more argument for serve (repeat), e.g. --serve-arg=--upstream "
                             "--serve-arg=http://127.0.0.1:3002/ for a gateway's sessions")
    parser.add_argument("--upstream-command", default="",
                        help="a command (one string, split as the shell would) for serve to run after "
                             "--: a gateway's sessions, each with its own child")
    args = parser.parse_args()
    command = ["--", *shlex.split(args.upstream_command)] if args.upstream_command else []

    sk_port, port = harness.free_port(), harness.free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    standin = subprocess.Popen(harness.standin_command(sk_port))
    server = subprocess.Popen(
        [args.bin, "serve", "--port", str(port), "--sk-env-url", sk_url, "--audience", harness.AUDIENCE,
         "--max-sessions", str(args.sessions + 100), "--session-sleep-after", args.sleep_after,
         *args.serve_arg, *command],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.mkdtemp(prefix="bench-sessions-"))
    try:
        harness.wait_ready(port, "/ready")
        tokens = [harness.mint(sk_url, "rsa-a.pem", subject=f"caller-{n}") for n in range(args.callers)]
        # One session first: the server's own one-time allocations (TLS-free HTTP, rmcp's tool
        # schemas, the allocator's first pages) are not counted against sessions.
        harness.initialize(port, tokens[0])
        idle = settle(server.pid)
        started = time.monotonic()
        opened = [(tokens[n % args.callers], harness.initialize(port, tokens[n % args.callers]))
                  for n in range(args.sessions)]
        open_seconds = time.monotonic() - started
        loaded = settle(server.pid)
        # Past the sleep delay, plus sweeps: every session opened is idle and sleeps.
        time.sleep(max(0.0, float(args.sleep_after.rstrip("s")) - (time.monotonic() - started)) + 4)
        asleep = settle(server.pid)
        # mimalloc collects blocks one thread freed in another's pages when that thread next
        # allocates: on a server that gets no request at all, not before. A load balancer's
        # health checks are enough (one a second for a minute and a half).
        for _ in range(100):
            health(port)
        asleep_with_traffic = settle(server.pid)
        statuses = [delete(port, token, session) for token, session in opened]
        closed = settle(server.pid, seconds=5.0)
        print(json.dumps({
            "sessions": args.sessions,
            "callers": args.callers,
            "sessions_per_second": round(args.sessions / open_seconds),
            "rss_idle_kib": idle,
            "rss_open_kib": loaded,
            "kib_per_session": round((loaded - idle) / args.sessions, 1),
            "rss_asleep_kib": asleep,
            "kib_per_session_asleep": round((asleep - idle) / args.sessions, 1),
            "rss_asleep_after_100_health_checks_kib": asleep_with_traffic,
            "kib_per_session_asleep_after_health_checks": round(
                (asleep_with_traffic - idle) / args.sessions, 1),
            "rss_after_delete_kib": closed,
            "deletes_ok": sum(1 for status in statuses if status < 300),
        }, indent=2))
    finally:
        server.terminate()
        standin.terminate()
        server.wait()
        standin.wait()


if __name__ == "__main__":
    main()
