#!/usr/bin/env bash
# Runs Go's side of the benchmarks and weir's benches in one session, so the
# figures compare like with like, and prints the ratios the project's bars
# are stated in. Installs Go 1.19 and golang.org/x/sync from Debian if
# missing. Takes about 10 minutes on the 2-core reference machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/sync ]; then
  apt-get update -qq && apt-get install -y -qq golang-go golang-golang-x-sync-dev >/dev/null
fi
out=$(mktemp -d)
GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$out/go-bench" bench/go/main.go
fast=(--warm-up-time 1 --measurement-time 3 --output-format bencher)
echo "== Go (first run)"; "$out/go-bench" 15 | tee "$out/go1.txt"
echo "== weir: group";    cargo bench -q -p weir --bench group -- "${fast[@]}" 2>/dev/null | grep '^test' | tee "$out/group.txt"
echo "== weir: pipeline"; cargo bench -q -p weir --bench pipeline -- "${fast[@]}" 2>/dev/null | grep '^test' | tee "$out/pipeline.txt"
echo "== weir: breaker";  cargo bench -q -p weir --bench breaker -- "${fast[@]}" 2>/dev/null | grep -E '^test|allocations' | tee "$out/breaker.txt"
echo "== weir: latency";  cargo bench -q -p weir --bench latency 2>/dev/null | tee "$out/latency.txt"
echo "== Go (second run, to see drift)"; "$out/go-bench" 15 | tee "$out/go2.txt"
python3 - "$out" <<'PY'
import re, sys, statistics
d = sys.argv[1]
def bencher(name):
    out = {}
    for line in open(f"{d}/{name}.txt"):
        m = re.match(r"test (\S+) \.\.\. bench:\s+([\d,]+) ns/iter", line)
        if m: out[m.group(1)] = int(m.group(2).replace(",", ""))
    return out
def go(pattern):
    vals = []
    for f in ("go1", "go2"):
        for line in open(f"{d}/{f}.txt"):
            m = re.search(pattern, line)
            if m: vals.append(float(m.group(1)))
    return statistics.mean(vals)
def dur(s):
    n, unit = re.match(r"([\d.]+)(\D+)", s).groups()
    return float(n) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
g, p, b = bencher("group"), bencher("pipeline"), bencher("breaker")
lat = {m.group(1): (dur(m.group(2)), dur(m.group(3))) for m in re.finditer(r"cancel latency, (.+?): p50 (\S+) p99 (\S+)", open(f"{d}/latency.txt").read())}
rows = []
go_unl, go_lim = go(r"unlimited: (\d+) ns"), go(r"limit 8: (\d+) ns")
w_unl, w_lim = g["spawn_wait/weir_group/unlimited"] / 200_000, g["spawn_wait/weir_group/limit_8"] / 200_000
rows.append(("spawn+wait ns/task, no limit", w_unl, go_unl, "Go errgroup", w_unl / go_unl, "<= 1.0"))
rows.append(("spawn+wait ns/task, limit 8", w_lim, go_lim, "Go SetLimit(8)", w_lim / go_lim, "<= 1.0"))
go_p64 = go(r"cap 64: ([\d.]+) M")
w_p64 = 2.0e6 / (p["pipeline_3_stages_2M/weir/64"] / 1e9) / 1e6
rows.append(("pipeline M items/s, cap 64", w_p64, go_p64, "Go channels", w_p64 / go_p64, ">= 1.5"))
go_p99 = statistics.mean([dur(m) for f in ("go1", "go2") for m in re.findall(r"p99 (\S+)", open(f"{d}/{f}.txt").read())])
rows.append(("cancel p99 ms, 10k blocked", lat["weir Group"][1], go_p99, "Go errgroup", lat["weir Group"][1] / go_p99, "<= 0.5"))
rec1, rec2 = b["breaker_closed_success/recloser/1_thread"], b["breaker_closed_success/recloser/2_threads"]
w1, w2 = b["breaker_closed_success/weir/1_thread"], b["breaker_closed_success/weir/2_threads"]
rows.append(("breaker ns/call, 1 thread", w1, rec1, "recloser", w1 / rec1, "<= 1.0"))
rows.append(("breaker ns/call, 2 threads", w2, rec2, "recloser", w2 / rec2, "<= 18 ns"))
print(f"\n{'figure':<32} {'weir':>10} {'peer':>10}  {'peer name':<16} {'ratio':>7}  bar")
for name, w, peer, pname, ratio, bar in rows:
    print(f"{name:<32} {w:>10.2f} {peer:>10.2f}  {pname:<16} {ratio:>7.2f}  {bar}")
PY
