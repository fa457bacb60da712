#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of weir's hand-written core: the group,
# retry, breaker and batcher modules. Too slow for CI on two cores (a build
# and a test run per mutant); run it by hand and record the score in
# docs/reliability.md.
#
#   bash scripts/mutants.sh                 # all four modules
#   bash scripts/mutants.sh breaker retry   # some of them
#
# Each module is tested by the test files that cover it, without the
# database features (none of these modules needs them), so each mutant
# builds and runs in seconds. Results: mutants.out/<module>/ (caught.txt,
# missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
  cargo install --locked cargo-mutants
fi

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(group retry breaker batch)

tests_for() {
  case "$1" in
    group) echo "--lib --test group --test testing" ;;
    retry) echo "--lib --test retry --test properties" ;;
    breaker) echo "--lib --test breaker --test properties --test tower" ;;
    batch) echo "--lib --test batch --test properties" ;;
    *) echo "unknown module $1: use group, retry, breaker or batch" >&2; exit 2 ;;
  esac
}

for module in "${modules[@]}"; do
  args=()
  for arg in $(tests_for "$module"); do args+=(--cargo-test-arg="$arg"); done
  echo "== mutants of crates/weir/src/$module"
  mkdir -p "mutants.out/$module"
  CARGO_PROFILE_DEV_DEBUG=0 cargo mutants -p weir --no-default-features --features test-util,tower \
    -f "crates/weir/src/$module/**" "${args[@]}" --timeout 20 --output "mutants.out/$module" || true
  out="mutants.out/$module/mutants.out"
  caught=$(wc -l <"$out/caught.txt"); missed=$(wc -l <"$out/missed.txt")
  timeout=$(wc -l <"$out/timeout.txt"); unviable=$(wc -l <"$out/unviable.txt")
  echo "$module: caught $caught, missed $missed, timeout $timeout, unviable $unviable"
done
