#!/usr/bin/env bash
# The scale curve: fresh imports and re-imports of growing files into SQLite (and PostgreSQL),
# pairs/s and peak RSS of each, beside the peer importer — one table, one run:
#
#   benches/scale.sh                       # 500k, 1M, 5M, 10M pairs
#   SCALE_SIZES="100000 500000" benches/scale.sh
#
# SCALE_DIR=dir keeps the generated files (7 GB at 10M) for the next run; SCALE_OTHER=N (default
# 2000000, 0 skips) also imports every size fresh into a database that already holds another
# organization of N pairs; SCALE_CACHES="8 16 64" adds fresh imports of 1M at those --cache-mib;
# SCALE_POSTGRES=postgres://USER@HOST/DB imports SCALE_PG_SIZES (default "1000000 5000000") into
# PostgreSQL and then COPYs the same rows into the same tables with their indexes;
# SCALE_PEER_SIZES (default "100000 1000000") runs the peer (pip install lxml phonenumbers).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SCALE_SIZES:-500000 1000000 5000000 10000000}
other=${SCALE_OTHER:-2000000}
dir=${SCALE_DIR:-$(mktemp -d)}
mkdir -p "$dir"
[ -n "${SCALE_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT

cargo build --release --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/crm-import")

file() { # pairs seed -> path of the generated export, made once
  local f="$dir/export-$1-$2.xml"
  [ -s "$f" ] || "$bin" generate --premises "$1" --clients "$1" --seed "$2" --out "$f" >/dev/null
  echo "$f"
}

# Runs a command; prints "<seconds> <peak RSS in MiB> <exit code>".
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

printf '%-10s %-10s %-26s %9s %10s %9s %5s\n' pairs backend run seconds pairs/s "peak MiB" exit
row() { # pairs backend run, then the command
  local pairs=$1 backend=$2 run=$3 s m rc a
  shift 3
  # Each input is read once before the run, so the run measures the importer, not the disk:
  # on these VMs a file the page cache has dropped comes in at about 100 MB/s.
  for a in "$@"; do [ -f "$a" ] && cat "$a" >/dev/null; done
  # And what the last step wrote (a database copied in, the last run's pages) reaches the disk
  # first, so its write-back is not charged to this run.
  sync
  read -r s m rc < <(measure "$@")
  awk -v p="$pairs" -v b="$backend" -v r="$run" -v s="$s" -v m="$m" -v rc="$rc" \
    'BEGIN { printf "%-10s %-10s %-26s %9.2f %10.0f %9.1f %5d\n", p, b, r, s, p / s, m, rc }'
}

if [ "$other" -gt 0 ]; then
  base="$dir/other-$other.db"
  if [ ! -s "$base" ]; then
    "$bin" import "$(file "$other" 2)" --org uo-2 --source src-2 --db "sqlite:$base" >/dev/null
    # A clean file to copy: no WAL beside it.
    sqlite3 "$base" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || true
  fi
fi

for pairs in $sizes; do
  export_file=$(file "$pairs" 1)
  db="$dir/crm.db"
  rm -f "$db" "$db"-*
  into=(--org uo-1 --source src-1 --db "sqlite:$db")
  row "$pairs" sqlite fresh "$bin" import "$export_file" "${into[@]}"
  row "$pairs" sqlite re-import "$bin" import "$export_file" "${into[@]}"
  row "$pairs" - check "$bin" check "$export_file"
  if [ "$other" -gt 0 ]; then
    rm -f "$db" "$db"-*
    cp "$base" "$db"
    row "$pairs" sqlite "fresh beside ${other} other" "$bin" import "$export_file" "${into[@]}"
  fi
  rm -f "$db" "$db"-*
done

for cache in ${SCALE_CACHES:-}; do
  db="$dir/crm.db"
  rm -f "$db" "$db"-*
  into=(--org uo-1 --source src-1 --db "sqlite:$db" --cache-mib "$cache")
  row 1000000 sqlite "fresh --cache-mib $cache" "$bin" import "$(file 1000000 1)" "${into[@]}"
  row 1000000 sqlite "re-import --cache-mib $cache" "$bin" import "$(file 1000000 1)" "${into[@]}"
  rm -f "$db" "$db"-*
done

if python3 -c 'import lxml, phonenumbers' 2>/dev/null; then
  for pairs in ${SCALE_PEER_SIZES:-100000 1000000}; do
    rm -f "$dir/peer.db"
    row "$pairs" peer fresh python3 ../shared/peer/peer_lxml.py "$(file "$pairs" 1)" "$dir/peer.db"
    row "$pairs" peer re-import python3 ../shared/peer/peer_lxml.py "$(file "$pairs" 1)" "$dir/peer.db"
    rm -f "$dir/peer.db"
  done
else
  echo "peer skipped: pip install lxml phonenumbers"
fi

if [ -n "${SCALE_POSTGRES:-}" ]; then
  url=$SCALE_POSTGRES
  case $url in *\?*) sep='&' ;; *) sep='?' ;; esac
  for pairs in ${SCALE_PG_SIZES:-1000000 5000000}; do
    ours=scale_$$ copied=scale_copy_$$
    trap 'psql "$url" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $ours CASCADE; DROP SCHEMA IF EXISTS $copied CASCADE"' EXIT
    psql "$url" -qc "CREATE SCHEMA $ours"
    row "$pairs" postgres fresh "$bin" import "$(file "$pairs" 1)" --org uo-1 --source src-1 \
      --db "$url${sep}options=-c%20search_path%3D$ours"
    # The same rows, COPYed into the same tables with the same indexes and constraints in an
    # empty schema made the same way.
    pg_dump --schema-only --no-owner -n "$ours" "$url" | sed "s/\b$ours\b/$copied/g" | psql -q "$url" >/dev/null
    tables=$(psql "$url" -Atc "SELECT string_agg(table_name, ' ') FROM information_schema.tables WHERE table_schema = '$ours' AND table_type = 'BASE TABLE'")
    for t in $tables; do
      psql "$url" -qc "\\copy $ours.$t TO '$dir/$t.copy'"
    done
    # Parents before children, as the foreign keys need.
    order="organizations sources runs premises accounts clients client_external_ids client_premises client_accounts"
    script="$dir/copy.sql"
    : >"$script"
    for t in $order; do echo "\\copy $copied.$t FROM '$dir/$t.copy'" >>"$script"; done
    row "$pairs" postgres "COPY of the same rows" psql -q -v ON_ERROR_STOP=1 "$url" -f "$script"
    rm -f "$dir"/*.copy
    psql "$url" -qc "SET client_min_messages = warning; DROP SCHEMA $ours CASCADE; DROP SCHEMA $copied CASCADE"
  done
fi
