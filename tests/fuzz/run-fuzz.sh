#!/usr/bin/env bash
# run-fuzz.sh FUZZER SEED_DIR SECONDS: a bounded libFuzzer run that never writes into the
# source tree (new inputs go to a temporary corpus, seeds are only read).
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work" "$seeds"
