#!/usr/bin/env bash
# Runs Go's side of the benchmarks and weir's criterion benches in one
# session, so the figures compare like with like. Installs Go 1.19 and
# golang.org/x/sync from Debian if missing (offline-friendly).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/sync ]; then
  apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-sync-dev >/dev/null
fi
out=$(mktemp -d)
GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$out/weir-go-bench" bench/go/main.go
echo "== Go (errgroup, channels)"
"$out/weir-go-bench" 15
echo "== weir (criterion)"
cargo bench -p weir --bench group -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E '^(spawn|cancel)|time:' | grep -v '%'
cargo bench -p weir --bench pipeline -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E '^pipeline|thrpt:' | grep -v '%'
echo "== Go again (to see drift between the runs)"
"$out/weir-go-bench" 15
