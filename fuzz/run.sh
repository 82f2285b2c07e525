#!/usr/bin/env bash
# Runs each fuzz target in turn, one process each (the machines are small and shared), for
# FUZZ_SECONDS (default 600). The corpus grows in fuzz/corpus/<target>; a crash is saved in
# fuzz/artifacts/<target> and stops the run. Usage: fuzz/run.sh [target...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-600}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(token www_authenticate check_token_input call_arguments)
for target in "${targets[@]}"; do
  echo "== $target for ${seconds}s"
  cargo +nightly fuzz run --sanitizer none --release "$target" -- \
    -max_total_time="$seconds" -max_len=20000 -timeout=10 -print_final_stats=1
done
