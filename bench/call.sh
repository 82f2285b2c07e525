#!/usr/bin/env bash
# Wall-clock benchmark of `scalekit-mcp call greet_user name=x` against a local `serve`, with a
# stored token (file storage), as issue 6 asks: target under 50 ms median. Not a test.
#
#   bench/call.sh                 # builds the release binary if needed, 50 runs
#   RUNS=200 bench/call.sh
#   SCALEKIT_MCP_BIN=target/debug/scalekit-mcp bench/call.sh
#   STATELESS=1 bench/call.sh     # serve --stateless
#
# Needs: bash, openssl, python3 (serves the fixture JWKS); uses hyperfine when installed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-50}
target_dir=${CARGO_TARGET_DIR:-target}
bin=${SCALEKIT_MCP_BIN:-$target_dir/release/scalekit-mcp}
if [[ ! -x $bin ]]; then
    cargo build --release --quiet
fi
bin=$(realpath "$bin")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The fixture JWKS over HTTP.
jwks_port=$(free_port)
python3 -m http.server "$jwks_port" --bind 127.0.0.1 --directory tests/fixtures >/dev/null 2>&1 &
pids+=($!)

# serve on a free port.
port=$(free_port)
issuer="https://bench.example.scalekit.dev"
server="http://127.0.0.1:$port/"
extra=()
[[ -n ${STATELESS:-} ]] && extra+=(--stateless)
env -u RUST_LOG SCALEKIT_MCP_HOME="$work/server" "$bin" serve --port "$port" \
    --sk-env-url "$issuer" --jwks-url "http://127.0.0.1:$jwks_port/jwks-a.json" \
    --audience "$server" --log-level warn "${extra[@]}" >/dev/null 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

# A token signed with fixture key a, stored with login --with-token (0600 file storage).
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"key-a"}' | b64url)
payload=$(printf '{"iss":"%s","aud":["%s"],"sub":"usr_bench","scope":"mcp:tools","iat":%d,"exp":%d}' \
    "$issuer" "$server" "$now" "$((now + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign tests/fixtures/rsa-a.pem -binary | b64url)
export SCALEKIT_MCP_HOME="$work/client" SCALEKIT_MCP_STORAGE=file
unset SCALEKIT_MCP_TOKEN SCALEKIT_MCP_SERVER RUST_LOG
printf '%s.%s.%s' "$header" "$payload" "$signature" | "$bin" login "$server" --with-token >/dev/null 2>&1

out=$("$bin" call greet_user name=x)
[[ $out == "Hi x, welcome to Scalekit!" ]] || { echo "unexpected output: $out" >&2; exit 1; }

if command -v hyperfine >/dev/null; then
    hyperfine --warmup 5 --runs "$runs" -N --export-json "$work/times.json" "$bin call greet_user name=x"
    python3 - "$work/times.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))["results"][0]
print(f"median {result['median'] * 1000:.1f} ms")
PY
else
    python3 - "$bin" "$runs" <<'PY'
import statistics, subprocess, sys, time
bin, runs = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run([bin, "call", "greet_user", "name=x"], check=True, stdout=subprocess.DEVNULL)
    times.append((time.perf_counter() - start) * 1000)
print(f"median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, max {max(times):.1f} ms over {runs} runs")
PY
fi
