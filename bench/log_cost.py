"""What the INFO request line costs (issue 22). Standard library only; needs wrk.

Starts two `serve` processes, the same but for the log level (INFO, the default: one line per
request and one audit line per tool call, written to a file as a service manager would collect
them; and WARN), opens one session on each (stateful, the default mode; `--stateless` with
`--stateless`), and runs wrk against them in turns: PAIRS pairs of DURATION seconds at c=64,
the order alternating. Prints the median of the per-pair ratios INFO / WARN as JSON.

    python3 bench/log_cost.py --bin target/release/scalekit-mcp [--pairs 10] [--duration 3]
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--info-filter", default="",
                        help="RUST_LOG for the INFO server instead of --log-level info, e.g. "
                             "'info,rmcp=warn,audit=off' for the request line alone")
    args = parser.parse_args()

    sk_port = harness.free_port()
    sk_url = f"http://127.0.0.1:{sk_port}"
    processes = [subprocess.Popen(harness.standin_command(sk_port))]
    logs = tempfile.mkdtemp(prefix="bench-log-cost-")
    servers = {}
    try:
        for level in ("info", "warn"):
            port = harness.free_port()
            log = open(os.path.join(logs, f"{level}.log"), "w")
            env = dict(os.environ)
            env.pop("RUST_LOG", None)
            if level == "info" and args.info_filter:
                env["RUST_LOG"] = args.info_filter
            processes.append(subprocess.Popen(
                [args.bin, "serve", "--port", str(port), "--sk-env-url", sk_url,
                 "--audience", harness.AUDIENCE, "--log-level", level,
                 *(["--stateless"] if args.stateless else [])],
                stdout=log, stderr=log, env=env, cwd=tempfile.mkdtemp(prefix="bench-log-cost-")))
            harness.wait_ready(port, "/ready")
            servers[level] = port
        token = harness.mint(sk_url, "rsa-a.pem")
        sessions = {level: (None if args.stateless else harness.initialize(port, token))
                    for level, port in servers.items()}
        for level, port in servers.items():
            harness.wrk(port, token, sessions[level], args.concurrency, 2)  # warm-up
        ratios, rps = [], {"info": [], "warn": []}
        for pair in range(args.pairs):
            order = ("info", "warn") if pair % 2 == 0 else ("warn", "info")
            run = {level: harness.wrk(servers[level], token, sessions[level], args.concurrency,
                                      args.duration)["rps"] for level in order}
            for level in run:
                rps[level].append(run[level])
            ratios.append(run["info"] / run["warn"])
        lines = sum(1 for _ in open(os.path.join(logs, "info.log")))
        print(json.dumps({
            "mode": "stateless" if args.stateless else "stateful",
            "info_filter": args.info_filter or "--log-level info",
            "concurrency": args.concurrency,
            "pairs": args.pairs,
            "duration_s": args.duration,
            "median_rps_info": round(statistics.median(rps["info"])),
            "median_rps_warn": round(statistics.median(rps["warn"])),
            "median_ratio_info_over_warn": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "info_log_lines": lines,
        }, indent=2))
    finally:
        for process in processes:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
