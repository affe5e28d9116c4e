#!/usr/bin/env bash
# booture's benchmarks and fault drills: the entry point of `make bench`.
#
#   bench/run.sh                    # everything (about 30 min, plus the build), as root
#   BENCH_BUDGET=40 bench/run.sh    # a larger time budget, in minutes
#   BENCH_QUICK=1 bench/run.sh      # a smoke run (about 5 min)
#   bench/run.sh -only dataplane,gateway   # some sections (see -h)
#
# It builds and runs bench/cmd/bench, which runs real bootures in network
# namespaces (internal/lab), writes bench/results/latest.json (raw samples),
# BENCHMARKS.md and bench/plots/*.svg. Everything it makes (namespaces,
# processes, nginx, tmpfs) is removed at the end, also on failure or Ctrl-C;
# a run killed harder is cleaned up by the next one (the lab's janitor).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run as root (network namespaces, WireGuard interfaces)" >&2
  exit 1
fi
scripts/install-deps.sh --bench
budget=30
[ "${BENCH_QUICK:-0}" = 1 ] && budget=6
budget=${BENCH_BUDGET:-$budget} # minutes
tool=$(mktemp -d /tmp/booture-bench-tool-XXXXXX)
trap 'rm -rf "$tool"' EXIT
go build -o "$tool/bench" ./bench/cmd/bench
# The tool keeps to its budget (counted once the binaries are built: it
# gives the build up to 20 minutes more, for a cold Go build cache) and
# cleans up on SIGINT/SIGTERM; timeout is the backstop (TERM two minutes
# after both, KILL 90 s later).
status=0
timeout --foreground -s TERM -k 90s "$((budget + 20 + 2))m" "$tool/bench" -budget "${budget}m" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "bench/run.sh: some benchmarks or drills failed (exit $status): see BENCHMARKS.md" >&2
fi
exit "$status"
