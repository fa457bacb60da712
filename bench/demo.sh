#!/usr/bin/env bash
# The orders demo end to end against the disk's raw commit rate, measured
# in the same run on the same file system: the bar of issue 13 is the demo
# at 1.3x or more the raw single-row commit rate (SQLite, synchronous =
# FULL), without weakening durability.
#
#   bash bench/demo.sh                    # 100,000 orders, in a temporary folder under /tmp
#   bash bench/demo.sh --orders 20000 --dir /some/disk
#
# With WEIR_BENCH_POSTGRES_URL (a database the bench may create tables in,
# for example postgres://postgres@127.0.0.1:5432/test) it measures
# PostgreSQL too: its raw single-row commits, then the demo on a database
# of its own (created and dropped). The raw rate is measured before and
# after the demo, and both are printed: the machine's disk varies.
set -euo pipefail
cd "$(dirname "$0")/.."
orders=100000
parent=/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --orders) orders="${2:?--orders needs a number}"; shift 2 ;;
    --dir) parent="${2:?--dir needs a folder}"; shift 2 ;;
    *) echo "demo.sh: unknown argument '$1' (use --orders N, --dir FOLDER)" >&2; exit 2 ;;
  esac
done
cargo build -q --release -p weir-demo
cargo bench -q -p weir --all-features --bench durable --no-run 2>/dev/null
dir=$(mktemp -d "$parent/weir-demo-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
demo=target/release/weir-demo

raw() { # the raw single-row commit rate of SQLite (FULL) in $dir, and of PostgreSQL if asked
  WEIR_BENCH_DIR="$dir" cargo bench -q -p weir --all-features --bench durable -- raw 2>/dev/null | grep 'single-row'
}
rate() { # orders/s of the last run in the database given by "$@"
  "$demo" report --json "$@" | sed -n 's/.*"orders_per_second": *\([0-9.]*\).*/\1/p' | head -1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== raw commits (before)"
before=$(raw); echo "$before"
echo "== weir-demo demo --orders $orders on SQLite in $dir"
"$demo" demo --orders "$orders" --tenants 20 --quiet --db "$dir/demo.db" >/dev/null
sqlite_rate=$(rate --db "$dir/demo.db")
echo "== raw commits (after)"
after=$(raw); echo "$after"
raw_sqlite() { echo "$1" | sed -n 's/^sqlite FULL raw single-row commits: *\([0-9]*\).*/\1/p'; }
raw_pg() { echo "$1" | sed -n 's/^postgres raw single-row commits (1 connection): *\([0-9]*\).*/\1/p'; }
s1=$(raw_sqlite "$before"); s2=$(raw_sqlite "$after")
echo
printf '%-44s %10s %12s %12s\n' "" "lines/s" "raw tx/s" "ratio"
printf '%-44s %10.0f %12s %12s\n' "SQLite FULL, $orders orders" "$sqlite_rate" "$s1 / $s2" "$(ratio "$sqlite_rate" "$s1") / $(ratio "$sqlite_rate" "$s2")"

if [ -n "${WEIR_BENCH_POSTGRES_URL:-}" ]; then
  name="weir_demo_bench_$$"
  psql -q "$WEIR_BENCH_POSTGRES_URL" -c "CREATE DATABASE $name" >/dev/null
  url="${WEIR_BENCH_POSTGRES_URL%/*}/$name"
  trap 'rm -rf "$dir"; psql -q "$WEIR_BENCH_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null' EXIT
  "$demo" demo --orders "$orders" --tenants 20 --quiet --database-url "$url" >/dev/null
  pg_rate=$(rate --database-url "$url")
  p1=$(raw_pg "$before"); p2=$(raw_pg "$after")
  printf '%-44s %10.0f %12s %12s\n' "PostgreSQL, $orders orders" "$pg_rate" "$p1 / $p2" "$(ratio "$pg_rate" "$p1") / $(ratio "$pg_rate" "$p2")"
fi
