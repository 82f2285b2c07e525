#!/usr/bin/env bash
# Benchmark (not a test): wall time of `scalekit-mcp check-token --jwks FILE` on a valid RS256
# token, release build. Target: median under 5 ms.
#
#   bench/check-token.sh [RUNS]        (default 500 runs)
#   SCALEKIT_MCP_BIN=path bench/check-token.sh    (an already built binary; no cargo build)
#
# Uses hyperfine when installed (apt-get install hyperfine), else (or with BENCH_LOOP=1) a loop
# timed with date +%s%N.
# The token is minted here with openssl from the test fixture key, so no network is involved.
set -euo pipefail

runs="${1:-500}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${SCALEKIT_MCP_BIN:-$target_dir/release/scalekit-mcp}"
[[ -n ${SCALEKIT_MCP_BIN:-} ]] || cargo build --release --quiet

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now="$(date +%s)"
header="$(printf '{"alg":"RS256","typ":"JWT","kid":"key-a"}' | b64url)"
payload="$(printf '{"iss":"https://acme.scalekit.dev","sub":"usr_1","aud":["res_1"],"exp":%d,"iat":%d,"scope":"mcp:tools"}' \
    "$((now + 86400))" "$now" | b64url)"
signature="$(printf '%s.%s' "$header" "$payload" \
    | openssl dgst -sha256 -sign tests/fixtures/rsa-a.pem -binary | b64url)"
token_file="$(mktemp)"
trap 'rm -f "$token_file"' EXIT
printf '%s.%s.%s' "$header" "$payload" "$signature" > "$token_file"

args=(check-token --jwks tests/fixtures/jwks-a.json --issuer https://acme.scalekit.dev
      --audience res_1 --required-scope mcp:tools)

# One checked run first: the benchmark is meaningless if the token does not verify.
NO_COLOR=1 "$bin" "${args[@]}" "$(cat "$token_file")" > /dev/null

if [[ -z "${BENCH_LOOP:-}" ]] && command -v hyperfine > /dev/null; then
    json="$(mktemp)"
    hyperfine --shell=none --warmup 20 --runs "$runs" --export-json "$json" \
        "$bin ${args[*]} $(cat "$token_file")" > /dev/null
    # hyperfine reports seconds; no jq needed.
    median_ms="$(python3 - "$json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))["results"][0]
ms = {key: result[key] * 1000 for key in ("median", "mean", "min")}
print("{median:.2f} ms median, {mean:.2f} ms mean, {min:.2f} ms min".format(**ms))
PY
)"
    rm -f "$json"
else
    token="$(cat "$token_file")"
    samples=()
    for _ in $(seq "$runs"); do
        start="$(date +%s%N)"
        "$bin" "${args[@]}" "$token" > /dev/null
        samples+=("$(( $(date +%s%N) - start ))")
    done
    median_ns="$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    median_ms="$(awk -v ns="$median_ns" 'BEGIN {printf "%.2f ms median (loop, includes fork+exec of date)", ns / 1e6}')"
fi

echo "check-token --jwks: $median_ms over $runs runs ($(nproc) cores, $(uname -m))"
