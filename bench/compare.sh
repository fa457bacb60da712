#!/usr/bin/env bash
# Runs Go's side of the benchmarks and weir's benches in one session, so the
# figures compare like with like, and prints the ratios the project's bars
# are stated in.
#
#   bash bench/compare.sh                 # this tree against Go and peers
#   bash bench/compare.sh --before REV    # and REV's own benches, same session
#
# With --before, REV is checked out in a temporary git worktree and its own
# benches run (they use REV's API), built in a target directory of their
# own; the table gains a "before" column and the change in percent. A row
# REV has no bench for shows "-".
#
# The figures stated against Go (spawn + wait, pipelines) are taken in
# WEIR_COMPARE_ROUNDS rounds (default 3), each running Go and then weir's
# group and pipeline benches back to back; a ratio is the median of the
# rounds' ratios, so a minute when the machine is slow moves one round, not
# the figure. (Single runs put Go's and weir's halves minutes apart and
# swung spawn + wait with limit 8 between 0.72x and 0.79x.)
#
# Installs Go and golang.org/x/sync from Debian if missing. Takes about 15
# minutes on the 2-core reference machine, 30 with --before.
set -euo pipefail
cd "$(dirname "$0")/.."
before=""
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before="${2:?--before needs a git revision, e.g. --before HEAD~5}"; shift 2 ;;
    *) echo "compare.sh: unknown argument '$1' (use --before REV)" >&2; exit 2 ;;
  esac
done
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/sync ]; then
  apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-sync-dev >/dev/null
fi
out=$(mktemp -d)
GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$out/go-bench" bench/go/main.go
fast=(--warm-up-time 1 --measurement-time 3 --output-format bencher)
rounds=${WEIR_COMPARE_ROUNDS:-3}
case "$rounds" in
  ''|*[!0-9]*|0) echo "compare.sh: WEIR_COMPARE_ROUNDS must be a whole number of rounds, 1 or more (got '$rounds')" >&2; exit 2 ;;
esac

# weir_bench TAG BENCH [SUFFIX]: runs one criterion bench of the tree in the
# current directory into $out/TAG-BENCH[SUFFIX].txt.
weir_bench() {
  local tag=$1 bench=$2 suffix=${3:-}
  echo "== weir ($tag): $bench$suffix"
  cargo bench -q -p weir --bench "$bench" -- "${fast[@]}" 2>/dev/null | grep -E '^test|allocations' | tee "$out/$tag-$bench$suffix.txt"
}

# weir_benches TAG [SKIP_ROUNDED]: runs the benches of the tree in the
# current directory into $out/TAG-*.txt (the group and pipeline benches
# too, unless SKIP_ROUNDED: the rounds ran them).
weir_benches() {
  local tag=$1 skip_rounded=${2:-}
  if [ -z "$skip_rounded" ]; then
    weir_bench "$tag" group
    weir_bench "$tag" pipeline
  fi
  weir_bench "$tag" breaker
  echo "== weir ($tag): policies"
  cargo bench -q -p weir --bench policies -- policy_call "${fast[@]}" 2>/dev/null | grep '^test' | tee "$out/$tag-policies.txt"
  echo "== weir ($tag): latency"
  cargo bench -q -p weir --bench latency 2>/dev/null | tee "$out/$tag-latency.txt"
  echo "== weir ($tag): fairness"
  cargo bench -q -p weir --bench fairness 2>/dev/null | tee "$out/$tag-fairness.txt" || true
}

# Built first, so that no round's Go and weir halves are a compile apart.
echo "== building weir's benches"
cargo bench -q -p weir --no-run 2>/dev/null
for r in $(seq 1 "$rounds"); do
  echo "== round $r of $rounds: Go"; "$out/go-bench" 15 | tee "$out/go$r.txt"
  weir_bench after group ".r$r"
  weir_bench after pipeline ".r$r"
done
weir_benches after skip-rounded
if [ -n "$before" ]; then
  git worktree add --detach -q "$out/before-tree" "$before"
  trap 'git worktree remove --force "$out/before-tree" >/dev/null 2>&1 || true' EXIT
  (cd "$out/before-tree" && CARGO_TARGET_DIR="$out/before-target" weir_benches before)
fi
python3 - "$out" "$before" "$rounds" <<'PY'
import os, re, sys, statistics
d, before, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
suffix = ""  # which round's group and pipeline files figures() reads
def read(tag, name):
    for path in (f"{d}/{tag}-{name}{suffix}.txt", f"{d}/{tag}-{name}.txt"):
        if os.path.exists(path):
            return open(path).read()
    return ""
def bencher(tag, name):
    return {m.group(1): int(m.group(2).replace(",", ""))
            for m in re.finditer(r"test (\S+) \.\.\. bench:\s+([\d,]+) ns/iter", read(tag, name))}
def go(pattern, runs=None):
    files = [f"go{r}" for r in (runs or range(1, rounds + 1))]
    vals = [float(m.group(1)) for f in files for line in open(f"{d}/{f}.txt") for m in [re.search(pattern, line)] if m]
    return statistics.median(vals) if vals else None
def dur(s):
    n, unit = re.match(r"([\d.]+)(\D+)", s).groups()
    return float(n) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
def figures(tag):
    """Each figure of the bars, as this tag's benches measured it (None: no such bench)."""
    g, p, b, pol = bencher(tag, "group"), bencher(tag, "pipeline"), bencher(tag, "breaker"), bencher(tag, "policies")
    lat = {m.group(1): dur(m.group(3)) for m in re.finditer(r"cancel latency, (.+?): p50 (\S+) p99 (\S+)", read(tag, "latency"))}
    per = lambda table, key, scale: table[key] / scale if key in table else None
    f = {
        "unl": per(g, "spawn_wait/weir_group/unlimited", 200_000),
        "lim": per(g, "spawn_wait/weir_group/limit_8", 200_000),
        "p64": 2.0e6 / (p["pipeline_3_stages_2M/weir/64"] / 1e9) / 1e6 if "pipeline_3_stages_2M/weir/64" in p else None,
        "p1": 2.0e6 / (p["pipeline_3_stages_2M/weir/1"] / 1e9) / 1e6 if "pipeline_3_stages_2M/weir/1" in p else None,
        "scale": p["stage_16_workers_cpu/weir_threads/1"] / p["stage_16_workers_cpu/weir_threads/2"]
                 if "stage_16_workers_cpu/weir_threads/2" in p else None,
        # The worst shape's short-task p99, weir / JoinSet (same run).
        "fair": max((float(m.group(1)) for m in re.finditer(r"weir / JoinSet: p50 \S+ p99 (\S+)", read(tag, "fairness"))), default=None),
        # The worst ratio of any percentile (p50, p99, max) in any shape.
        "fair_all": max((float(x) for m in re.finditer(r"weir / JoinSet: p50 (\S+) p99 (\S+) max (\S+)", read(tag, "fairness")) for x in m.groups()), default=None),
        "cancel": lat.get("weir Group"),
        "b1": b.get("breaker_closed_success/weir/1_thread"),
        "b2": b.get("breaker_closed_success/weir/2_threads"),
        "rec1": b.get("breaker_closed_success/recloser/1_thread"),
        "rec2": b.get("breaker_closed_success/recloser/2_threads"),
        "stack": pol.get("policy_call/weir_stack_retry_breaker_timeout"),
        "three": sum(pol[k] for k in ("policy_call/weir_retry_success", "policy_call/weir_breaker_closed", "policy_call/weir_timeout"))
                 if all(k in pol for k in ("policy_call/weir_retry_success", "policy_call/weir_breaker_closed", "policy_call/weir_timeout")) else None,
        "allocs": next((float(m.group(1)) for m in re.finditer(r"allocations per call, weir: ([\d.]+)", read(tag, "breaker"))), None),
    }
    for k in ("retry_success", "timeout", "bulkhead", "hedge_not_fired", "stack_empty"):
        f[k] = pol.get(f"policy_call/weir_{k}")
    return f
go_patterns = {"unl": r"unlimited: (\d+) ns", "lim": r"limit 8: (\d+) ns", "p64": r"cap 64: ([\d.]+) M", "p1": r"cap 1: ([\d.]+) M"}
ratio = lambda x, y: x / y if x is not None and y else None
# Each round's figures against the Go run of the same round: weir's own
# figure and the ratio are the medians over the rounds.
by_round = []
for r in range(1, rounds + 1):
    suffix = f".r{r}"
    by_round.append(figures("after"))
suffix = ""
a = figures("after")
median = lambda vals: statistics.median(vals) if vals else None
round_ratio = {}
for key, pattern in go_patterns.items():
    a[key] = median([f[key] for f in by_round if f[key] is not None])
    round_ratio[key] = median([x for r, f in enumerate(by_round, 1) if (x := ratio(f[key], go(pattern, [r]))) is not None])
    if rounds > 1:
        spread = [ratio(f[key], go(pattern, [r])) for r, f in enumerate(by_round, 1)]
        print(f"{key}: ratio by round " + ", ".join(f"{x:.2f}" if x else "-" for x in spread))
# The 16-worker scaling comes from the pipeline bench, which only the
# rounds run: its median over them (it read "-" before).
a["scale"] = median([f["scale"] for f in by_round if f["scale"] is not None])
z = figures("before") if before else {}
go_unl, go_lim, go_p64, go_p1 = (go(go_patterns[k]) for k in ("unl", "lim", "p64", "p1"))
go_p99 = statistics.mean([dur(m) for r in range(1, rounds + 1) for m in re.findall(r"p99 (\S+)", open(f"{d}/go{r}.txt").read())])
rows = [
    # name, key, peer value, peer name, bar, higher is better
    ("spawn+wait ns/task, no limit", "unl", go_unl, "Go errgroup", "<= 0.75x", False),
    ("spawn+wait ns/task, limit 8", "lim", go_lim, "Go SetLimit(8)", "<= 0.75x", False),
    ("pipeline M items/s, cap 64", "p64", go_p64, "Go channels", ">= 2.5x", True),
    ("pipeline M items/s, cap 1", "p1", go_p1, "Go channels", ">= 1.0x", True),
    ("16 CPU workers, 2 thr / 1 thr", "scale", None, "", ">= 1.7x", True),
    ("fairness: short-task p99 / JoinSet", "fair", None, "worst shape", "<= 1.2x", False),
    ("fairness: p50, p99, max / JoinSet", "fair_all", None, "worst of all", "<= 1.2x", False),
    ("cancel p99 ms, 10k blocked", "cancel", go_p99, "Go errgroup", "<= 0.5x", False),
    ("breaker ns/call, 1 thread", "b1", a["rec1"], "recloser", "<= 10 ns", False),
    ("breaker ns/call, 2 threads", "b2", a["rec2"], "recloser", "<= 18 ns", False),
    ("stack retry+breaker+timeout ns", "stack", a["three"], "the 3 alone", "<= 1.2x", False),
    ("retry ns/call (success)", "retry_success", None, "", "", False),
    ("timeout ns/call", "timeout", None, "", "", False),
    ("bulkhead ns/call", "bulkhead", None, "", "", False),
    ("hedge ns/call (not fired)", "hedge_not_fired", None, "", "", False),
    ("empty stack ns/call", "stack_empty", None, "", "", False),
]
fmt = lambda v: f"{v:10.2f}" if v is not None else f"{'-':>10}"
head = f"\n{'figure':<32} {'weir':>10} {'peer':>10}  {'peer name':<14} {'ratio':>7}  {'bar':<9}"
print(head + (f" {'before':>10} {'change':>8}" if before else ""))
for name, key, peer, pname, bar, higher in rows:
    w = a[key]
    r = round_ratio.get(key) or ratio(w, peer)
    line = f"{name:<32} {fmt(w)} {fmt(peer)}  {pname:<14} {(f'{r:7.2f}' if r else '      -')}  {bar:<9}"
    if before:
        b = z.get(key)
        change = f"{(w / b - 1) * 100:+7.1f}%" if w is not None and b else f"{'-':>8}"
        line += f" {fmt(b)} {change}"
    print(line)
print(f"\nbreaker allocations per call: {a['allocs']}" + (f" (before: {z.get('allocs')})" if before else ""))
if before:
    print(f"before = {before}; a change is weir's own figure, after / before - 1 (lower is better but for M items/s)")
PY
