"""Stateful sessions on Redis against in memory, and three replicas behind nginx (issue 20).
Standard library only; needs redis-server, nginx and wrk.

Rows, each measured with wrk (`tools/call greet_user` on one established session, as
bench/run's stateful row), taking turns round by round:

- m:  one `serve` (stateful), sessions in memory, called directly
- r:  one `serve` (stateful) with --session-store on a local redis-server, called directly
- n1: that same setup with one replica behind nginx (what nginx itself costs)
- n3: three replicas with --session-store behind nginx, round-robin (every call may land on a
      replica that has to take the session over once, then holds it)

It also counts the Redis commands row (r) sends per tool call (INFO commandstats before and after
one run), and which of them wait on the request path.

    python3 bench/scale_out.py --bin target/release/scalekit-mcp [--duration 10] [--rounds 3]
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def redis_command(port, *args):
    """One Redis command over RESP; the reply's text (a bulk string read whole)."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        data = sock.recv(65536)
        if data.startswith(b"$"):
            header, _, rest = data.partition(b"\r\n")
            length = int(header[1:])
            while len(rest) < length + 2:
                rest += sock.recv(65536)
            return rest[:length].decode(errors="replace")
        return data.decode(errors="replace")


def command_counts(port):
    """Calls per Redis command so far (INFO commandstats)."""
    text = redis_command(port, "INFO", "commandstats")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", text)}


def nginx_config(root, port, upstreams):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in upstreams)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    return f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  upstream replicas {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
    }}
  }}
}}
"""


class Stack:
    """Processes started for one row; stopped together."""

    def __init__(self):
        self.processes = []

    def start(self, argv, **kwargs):
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=tempfile.mkdtemp(prefix="bench-scale-out-"), **kwargs)
        self.processes.append(process)
        return process

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("redis-server", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not nginx:
        sys.exit("nginx is not installed")

    stack = Stack()
    sk_port, redis_port = harness.free_port(), harness.free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    stack.start(harness.standin_command(sk_port))
    stack.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"])
    redis_url = f"redis://127.0.0.1:{redis_port}"
    token = harness.mint(sk_url, "rsa-a.pem")

    def serve(port, public_port, *extra):
        stack.start([args.bin, "serve", "--port", str(port), "--sk-env-url", sk_url,
                     "--audience", harness.AUDIENCE, "--public-url", f"http://127.0.0.1:{public_port}",
                     "--allowed-host", f"127.0.0.1:{port}", *extra])
        harness.wait_ready(port, "/ready")

    def behind_nginx(replicas):
        port = harness.free_port()
        ports = [harness.free_port() for _ in range(replicas)]
        for replica in ports:
            serve(replica, port, "--session-store", redis_url)
        root = tempfile.mkdtemp(prefix="bench-nginx-")
        with open(os.path.join(root, "nginx.conf"), "w") as config:
            config.write(nginx_config(root, port, ports))
        stack.start([nginx, "-c", os.path.join(root, "nginx.conf"), "-p", root])
        harness.wait_ready(port, "/ready")
        return port

    try:
        ports = {"m": harness.free_port(), "r": harness.free_port()}
        serve(ports["m"], ports["m"])
        serve(ports["r"], ports["r"], "--session-store", redis_url)
        ports["n1"] = behind_nginx(1)
        ports["n3"] = behind_nginx(3)
        sessions = {}
        for name, port in ports.items():
            sessions[name] = harness.initialize(port, token)
            status, _, text = harness.greet(port, token, sessions[name])
            assert status == 200 and harness.GREETING in text, (name, status, text[:200])
            harness.wrk(port, token, sessions[name], 64, 2)  # warm-up: n3's replicas take it over

        before = command_counts(redis_port)
        counted = harness.wrk(ports["r"], token, sessions["r"], 64, args.duration)
        after = command_counts(redis_port)
        per_call = {name: round((after.get(name, 0) - before.get(name, 0)) / counted["requests"], 4)
                    for name in after if after.get(name, 0) != before.get(name, 0)}
        per_call.pop("info", None)

        results = {name: {16: [], 64: []} for name in ports}
        for _ in range(args.rounds):
            for concurrency in (16, 64):
                for name, port in ports.items():
                    run = harness.wrk(port, token, sessions[name], concurrency, args.duration)
                    if run.get("bad") or run.get("errors"):
                        print(f"warning: {name} c={concurrency}: {run}", file=sys.stderr)
                    results[name][concurrency].append(run["rps"])
        median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
        table = {name: {c: round(median(runs)) for c, runs in by_c.items()}
                 for name, by_c in results.items()}
        print(json.dumps({
            "duration_s": args.duration,
            "rounds": args.rounds,
            "median_rps": table,
            "redis_over_memory": {c: round(table["r"][c] / table["m"][c], 2) for c in (16, 64)},
            "three_behind_nginx_over_one_direct": {
                c: round(table["n3"][c] / table["r"][c], 2) for c in (16, 64)},
            "redis_commands_per_call": per_call,
            "calls_counted": counted["requests"],
        }, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
