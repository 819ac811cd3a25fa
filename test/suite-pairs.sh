#!/usr/bin/env bash
# The whole suite twice at once on one machine, ROUNDS times (default 3): two fresh clones of this repository's
# HEAD, each running `npm test` (own embedded PostgreSQL), started together. Prints one line per round; exits
# non-zero when any side of any round failed. Logs stay in WORK (default a temporary directory).
# Usage: bash test/suite-pairs.sh [rounds]
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
work=${WORK:-$(mktemp -d -t tw-suite-pairs-XXXXXX)}
failed=0
for round in $(seq 1 "$rounds"); do
  for side in a b; do
    rm -rf "$work/$side" && git clone -q "$repo" "$work/$side" && cp -a "$repo/node_modules" "$work/$side/"
  done
  start=$(date +%s)
  for side in a b; do
    (cd "$work/$side" && npm test > "$work/round$round-$side.log" 2>&1; echo "exit $?" >> "$work/round$round-$side.log") &
  done
  wait
  line="round $round: $(( $(date +%s) - start )) s"
  for side in a b; do
    log="$work/round$round-$side.log"
    line="$line; $side: $(grep -E '^ℹ (pass|fail)' "$log" | tr '\n' ' ')$(tail -1 "$log")"
    [ "$(tail -1 "$log")" = "exit 0" ] || failed=1
  done
  echo "$line"
done
echo "logs: $work"
exit $failed
