"""The default (stateful) mode against --stateless, the bare axum ceiling and the seed (issue 22).
Standard library only; needs wrk, and for the seed row the peers `bench/run` installs.

Every server runs at its default log level, its lines written to a file as a service manager would
collect them: `serve` at INFO (a request line, and an audit line per tool call), the seed as it
ships. One stateful session per stateful row, opened as clients do (`initialize`, then
`notifications/initialized`). The rows take turns, ROUNDS rounds of DURATION seconds at c=16 and
c=64; per row and concurrency the median req/s and p99 are kept, and the ratios are taken within
this one run. Prints JSON.

    python3 bench/stateful.py --bin target/release/scalekit-mcp \
        --ceiling target/release/examples/bench_ceiling [--rounds 4] [--duration 3] [--no-seed] \
        [--todo target/release/examples/todo_server]

`--todo` adds a library user's server, the todo example, stateful and `--stateless`, calling its
`list_todos` tool (the issue asks for the library's handlers to be measured too).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONCURRENCY = (16, 64)
VENV = os.path.expanduser("~/.cache/scalekit-mcp/bench/venv")
# The todo rows' tool call: name, arguments, and text every answer holds (the caller's tenant).
TODO_CALL = ("list_todos", "{}", "user:usr_bench")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--ceiling", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--todo", help="the todo example's binary: adds its rows")
    args = parser.parse_args()

    sk_port = harness.free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    processes = [subprocess.Popen(harness.standin_command(sk_port))]
    logs = tempfile.mkdtemp(prefix="bench-stateful-")
    ours = [args.bin, "serve", "--sk-env-url", sk_url, "--audience", harness.AUDIENCE]
    rows = {
        "stateful": (ours, {}, "/ready", True),
        "stateless": (ours + ["--stateless"], {}, "/ready", False),
        "ceiling": ([args.ceiling], {}, "/ready", False),
    }
    if not args.no_seed:
        seed_env = {"SK_ENV_URL": sk_url, "SK_CLIENT_ID": "skc_bench", "SK_CLIENT_SECRET": "bench",
                    "EXPECTED_AUDIENCE": harness.AUDIENCE}
        seed = [os.path.join(VENV, "bin", "python"), os.path.join(harness.ROOT, "bench", "peers", "seed_server.py")]
        rows["seed"] = (seed, seed_env, "/health", True)
    if args.todo:
        todo = [args.todo, "--sk-env-url", sk_url, "--audience", harness.AUDIENCE]
        rows["todo"] = (todo, {}, "/ready", True)
        rows["todo stateless"] = (todo + ["--stateless"], {}, "/ready", False)
    servers = {}
    try:
        for name, (command, extra_env, ready, stateful) in rows.items():
            port = harness.free_port()
            env = dict(os.environ, **extra_env, PORT=str(port))
            env.pop("RUST_LOG", None)
            command = command + ([str(port)] if name == "ceiling" else
                                 [] if name == "seed" else ["--port", str(port)])
            log = open(os.path.join(logs, f"{name}.log"), "w")
            processes.append(subprocess.Popen(command, stdout=log, stderr=log, env=env,
                                              cwd=tempfile.mkdtemp(prefix="bench-stateful-")))
            harness.wait_ready(port, ready)
            servers[name] = (port, stateful)
        greeting = harness.mint(sk_url, "rsa-a.pem")
        todo_reader = harness.mint(sk_url, "rsa-a.pem", scope="mcp:tools todo:read")
        calls = {name: ((todo_reader, TODO_CALL) if name.startswith("todo") else (greeting, None))
                 for name in servers}
        sessions = {name: (harness.initialize(port, calls[name][0]) if stateful else None)
                    for name, (port, stateful) in servers.items()}

        def run(name, c, duration):
            token, tool = calls[name]
            result = harness.wrk(servers[name][0], token, sessions[name], c, duration, tool)
            if result["bad"] or result["socket_errors"]:
                raise RuntimeError(f"{name} at c={c}: answers without the expected text: {result}")
            return result

        for name in servers:
            run(name, 64, 2)  # warm-up
        runs = {name: {c: [] for c in CONCURRENCY} for name in servers}
        for _ in range(args.rounds):
            for c in CONCURRENCY:
                for name in servers:
                    runs[name][c].append(run(name, c, args.duration))
        print(json.dumps(report(runs), indent=2))
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def report(runs):
    median = {name: {c: {"rps": round(statistics.median(r["rps"] for r in by_c[c])),
                         "p99_ms": statistics.median(r["p99_us"] for r in by_c[c]) / 1000}
                     for c in by_c}
              for name, by_c in runs.items()}
    ratios = {}
    for c in CONCURRENCY:
        ratios[f"stateful / stateless, c={c}"] = round(median["stateful"][c]["rps"] / median["stateless"][c]["rps"], 3)
        if "todo" in median:
            ratios[f"todo stateful / todo stateless, c={c}"] = round(
                median["todo"][c]["rps"] / median["todo stateless"][c]["rps"], 3)
        if "seed" in median:
            ratios[f"stateful / seed, c={c}"] = round(median["stateful"][c]["rps"] / median["seed"][c]["rps"], 1)
    ratios["stateful p99 / ceiling p99, c=64"] = round(median["stateful"][64]["p99_ms"] / median["ceiling"][64]["p99_ms"], 2)
    return {"median": median, "ratios": ratios}


if __name__ == "__main__":
    main()
