#!/usr/bin/env bash
# What a run leaves behind, and what it costs (SPEC §12), on one generated file in one run:
#
#   benches/leaves.sh [PAIRS]                 # default 1000000
#   BASE=path/to/older/crm-import benches/leaves.sh   # also time an older binary, interleaved
#
# Prints seconds and peak RSS of: fresh import and re-import (kept results and resume marks
# are always on), resuming a run halted at 90 % against importing the fixed file again, a
# pipeline re-import plain / with the shrink guard / as a snapshot, and `check`.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
head=${CARGO_TARGET_DIR:-target}/release/crm-import
"$head" generate --premises "$pairs" --clients "$pairs" --seed 1 --out "$work/export.xml"

t() { # label, then the command
  local label=$1
  shift
  /usr/bin/time -f "%e s  %M KB peak" "$@" > "$work/out" 2> "$work/err" || true
  printf '%-34s %s\n' "$label" "$(tail -1 "$work/err")"
}
bins=(head)
[ -n "${BASE:-}" ] && bins=(base head)
bin_of() { if [ "$1" = base ]; then echo "$BASE"; else echo "$head"; fi; }

for r in 1 2 3; do
  for b in "${bins[@]}"; do
    rm -f "$work/$b.db"*
    t "$b fresh ($r)" "$(bin_of "$b")" import "$work/export.xml" --org uo-1 --source 1c --db "sqlite:$work/$b.db"
  done
done
for r in 1 2 3; do
  for b in "${bins[@]}"; do
    t "$b re-import ($r)" "$(bin_of "$b")" import "$work/export.xml" --org uo-1 --source 1c --db "sqlite:$work/$b.db"
  done
done

# The client at 90 % of the records gets a phone that is not one; the run halts there.
python3 - "$work/export.xml" "$work/r90.xml" "$pairs" <<'PY'
import sys
src, dst, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = max(1, pairs * 8 // 10)
n, done = 0, False
with open(src, "rb") as i, open(dst, "wb") as o:
    for line in i:
        if not done and b"<client " in line:
            n += 1
        if not done and n >= target and b"<phone>" in line:
            line = line[: line.index(b"<phone>")] + "<phone>звоните вечером</phone>\n".encode()
            done = True
        o.write(line)
PY
t "halting import (90 %)" "$head" import "$work/r90.xml" --org uo-1 --source 1c --db "sqlite:$work/res.db"
cp "$work/export.xml" "$work/r90.xml"
for f in "$work"/res.db*; do cp "$f" "${f/res.db/full.db}"; done
t "resume" "$head" import "$work/r90.xml" --org uo-1 --source 1c --db "sqlite:$work/res.db" --resume 1
t "importing the fixed file again" "$head" import "$work/r90.xml" --org uo-1 --source 1c --db "sqlite:$work/full.db"

for p in plain guarded snapshot; do
  extra=""
  [ $p = guarded ] && extra='max_shrink_percent = 50'
  [ $p = snapshot ] && extra='mode = "snapshot"'
  printf 'name = "%s"\norganization = "uo-1"\nsource = "1c"\nfiles = "export.xml"\nsettle_secs = 0\n%s\n' \
    $p "$extra" > "$work/$p.toml"
done
for r in 1 2; do
  for p in plain guarded snapshot; do
    t "pipeline re-import, $p ($r)" "$head" run "$work/$p.toml" --db "sqlite:$work/head.db"
  done
done
t "check" "$head" check "$work/export.xml"
