"""Memory per stateful session, and whether it comes back (issue 22). Standard library only.

Starts `serve` (stateful, at its default log level) against the fixture JWKS, opens SESSIONS
sessions spread over CALLERS callers (each a different token subject), samples RSS, closes every
session with DELETE, waits, and samples RSS again. Prints one JSON object:

    python3 bench/sessions.py --bin target/release/scalekit-mcp [--sessions 3000] [--callers 30]

`--max-sessions` is raised to fit the run; `--max-sessions-per-caller` stays at its default (100),
so 3000 sessions of 30 callers is exactly the most the defaults let 30 callers hold.
"""

import argparse
import http.client
import json
import os
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
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="one more argument for serve (repeat), e.g. --serve-arg=--upstream "
                             "--serve-arg=http://127.0.0.1:3002/ for a gateway's sessions")
    args = parser.parse_args()

    sk_port, port = harness.free_port(), harness.free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    standin = subprocess.Popen(harness.standin_command(sk_port))
    server = subprocess.Popen(
        [args.bin, "serve", "--port", str(port), "--sk-env-url", sk_url, "--audience", harness.AUDIENCE,
         "--max-sessions", str(args.sessions + 100), *args.serve_arg],
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
        statuses = [delete(port, token, session) for token, session in opened]
        closed = settle(server.pid, seconds=5.0)
        print(json.dumps({
            "sessions": args.sessions,
            "callers": args.callers,
            "sessions_per_second": round(args.sessions / open_seconds),
            "rss_idle_kib": idle,
            "rss_open_kib": loaded,
            "kib_per_session": round((loaded - idle) / args.sessions, 1),
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
