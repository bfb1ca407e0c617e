#!/usr/bin/env bash
# End-to-end throughput and peak memory, crm-import next to the peer importer
# (../shared/peer/peer_lxml.py) on the same generated file, in one run:
#
#   benches/e2e.sh [PAIRS]        # default 1000000: a ~700 MB file
#
# A "pair" is the peer's record: one premise with its account plus one client with two
# links. Needs python3 with lxml and phonenumbers for the peer (pip install lxml phonenumbers);
# without them only crm-import is measured. With E2E_POSTGRES=postgres://USER@HOST/DB the same
# file is also imported into PostgreSQL (a fresh schema e2e_<pid>, dropped at the end).
# crm-import's SQLite runs are repeated E2E_ROUNDS times (default 3) and their median counts.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/crm-import
"$bin" generate --premises "$pairs" --clients "$pairs" --seed 1 --out "$work/export.xml"
echo "file: $(du -h "$work/export.xml" | cut -f1), $pairs premises + $pairs clients"

# Runs a command; prints "<seconds> <peak RSS in MiB>" of it (children included).
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{secs:.2f} {peak:.1f} {rc}")
PY
}

report() { # name secs peak rc
  awk -v n="$1" -v s="$2" -v m="$3" -v rc="$4" -v p="$pairs" \
    'BEGIN { printf "%-30s %8.2f s %10.0f pairs/s %8.1f MiB peak  exit %d\n", n, s, p / s, m, rc }'
}

# crm-import's runs take seconds and the peer's minutes, so a slow moment of the machine
# (they come and go within minutes on these VMs) can fall on one of ours whole while the peer
# averages over it: ours run E2E_ROUNDS times (default 3), each one printed, and the median
# counts.
rounds=${E2E_ROUNDS:-3}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
runs() { # name, then the command; sets $med
  local name=$1 times=() r s m rc
  shift
  for r in $(seq "$rounds"); do
    [ "$name" = "crm-import fresh" ] && rm -f "$work"/crm.db*
    read -r s m rc < <(measure "$@")
    report "$name ($r/$rounds)" "$s" "$m" "$rc"
    times+=("$s")
  done
  med=$(median "${times[@]}")
  awk -v n="$name, median" -v s="$med" -v p="$pairs" \
    'BEGIN { printf "%-30s %8.2f s %10.0f pairs/s\n", n, s, p / s }'
}
runs "crm-import fresh" "$bin" import "$work/export.xml" --org uo-1 --source src-1 --db "sqlite:$work/crm.db"
ours_fresh=$med
runs "crm-import re-import" "$bin" import "$work/export.xml" --org uo-1 --source src-1 --db "sqlite:$work/crm.db"
ours_again=$med
runs "crm-import check" "$bin" check "$work/export.xml"

if [ -n "${E2E_POSTGRES:-}" ]; then
  schema=e2e_$$
  psql "$E2E_POSTGRES" -qc "CREATE SCHEMA $schema"
  trap 'psql "$E2E_POSTGRES" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE"; rm -rf "$work"' EXIT
  case $E2E_POSTGRES in *\?*) sep='&' ;; *) sep='?' ;; esac
  pg="$E2E_POSTGRES${sep}options=-c%20search_path%3D$schema"
  read -r s m rc < <(measure "$bin" import "$work/export.xml" --org uo-1 --source src-1 --db "$pg")
  report "crm-import fresh (PostgreSQL)" "$s" "$m" "$rc"
  read -r s m rc < <(measure "$bin" import "$work/export.xml" --org uo-1 --source src-1 --db "$pg")
  report "crm-import re-import (PG)" "$s" "$m" "$rc"
  if [ "$("$bin" export --org uo-1 --db "$pg" | md5sum)" = "$("$bin" export --org uo-1 --db "sqlite:$work/crm.db" | md5sum)" ]; then
    echo "exports: SQLite and PostgreSQL identical"
  else
    echo "exports: SQLite and PostgreSQL DIFFER"
  fi
fi

if python3 -c 'import lxml, phonenumbers' 2>/dev/null; then
  peer=../shared/peer/peer_lxml.py
  read -r s m rc < <(measure python3 "$peer" "$work/export.xml" "$work/peer.db")
  report "peer fresh" "$s" "$m" "$rc"; peer_fresh=$s
  read -r s m rc < <(measure python3 "$peer" "$work/export.xml" "$work/peer.db")
  report "peer re-import" "$s" "$m" "$rc"; peer_again=$s
  awk -v a="$peer_fresh" -v b="$ours_fresh" -v c="$peer_again" -v d="$ours_again" \
    'BEGIN { printf "speed-up: fresh %.1fx, re-import %.1fx\n", a / b, c / d }'
else
  echo "peer skipped: pip install lxml phonenumbers"
fi
