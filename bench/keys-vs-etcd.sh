#!/usr/bin/env bash
# Key-storage writes over HTTP on a 3-member steward cluster against etcd's /v3/kv/put on a
# 3-member etcd cluster, in the same run, with the same client (wrk), 256-byte values, and 1, 16
# and 64 connections. Both sides make durable writes (a majority fsyncs before the answer), and
# each is driven through its leader.
#
# usage: bench/keys-vs-etcd.sh [SECONDS]        (default 10 s per side and connection count)
# Each member's threads: STEWARD_WORKER_THREADS for steward's async workers, GOMAXPROCS for
# etcd's (both default to one per CPU); the header line says which were used.
# needs: etcd, etcdctl, wrk (Debian: etcd-server etcd-client wrk); builds steward --release.
# Everything listens on 127.0.0.1 only and is stopped when the script exits. Ports:
# STEWARD_PORT (default 14400: HTTP 14400/14410/14420, gRPC +1) and ETCD_PORT (default 25790:
# clients 25791-25793, peers 25801-25803), away from the defaults other runs may be using.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
HALF=$(( (SECS + 1) / 2 ))  # each side runs in two halves of HALF s (SECS, rounded up to even)
SP=${STEWARD_PORT:-14400}
EP=${ETCD_PORT:-25790}
for cmd in etcd etcdctl wrk curl; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install -y etcd-server etcd-client wrk curl)" >&2; exit 1; }
done

cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/steward"
WORK=$(mktemp -d /tmp/steward-keys-bench.XXXXXX)
PIDS=()
cleanup() {
  rc=$?
  [ $rc -ne 0 ] && tail -n 20 "$WORK"/*.log 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

busy() { ss -ltn "( sport = :$1 )" | grep -q LISTEN; }
for p in $SP $((SP+1)) $((SP+10)) $((SP+11)) $((SP+20)) $((SP+21)) $((EP+1)) $((EP+2)) $((EP+3)) $((EP+11)) $((EP+12)) $((EP+13)); do
  if busy "$p"; then echo "port $p is in use: set STEWARD_PORT / ETCD_PORT" >&2; exit 1; fi
done

# --- etcd: 3 members ------------------------------------------------------------------------
cluster="e1=http://127.0.0.1:$((EP+11)),e2=http://127.0.0.1:$((EP+12)),e3=http://127.0.0.1:$((EP+13))"
for i in 1 2 3; do
  etcd --name e$i --data-dir "$WORK/e$i" \
    --listen-client-urls http://127.0.0.1:$((EP+i)) --advertise-client-urls http://127.0.0.1:$((EP+i)) \
    --listen-peer-urls http://127.0.0.1:$((EP+10+i)) --initial-advertise-peer-urls http://127.0.0.1:$((EP+10+i)) \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$WORK/e$i.log" 2>&1 &
  PIDS+=($!)
done

# --- steward: 3 members ---------------------------------------------------------------------
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STEWARD_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STEWARD_CLUSTER_SECRET=$SECRET STEWARD_LOG=warn
healthy() { for _ in $(seq 200); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.1; done; return 1; }
for i in 0 1 2; do
  join=(); [ "$i" -gt 0 ] && join=(--join "http://127.0.0.1:$SP")
  STEWARD_ADMIN_TOKEN=$TOKEN "$BIN" serve --data-dir "$WORK/s$i" --http "127.0.0.1:$((SP+10*i))" \
    --raft "127.0.0.1:$((SP+10*i+1))" "${join[@]}" >"$WORK/s$i.log" 2>&1 &
  PIDS+=($!)
  healthy "http://127.0.0.1:$((SP+10*i))" || exit 1
done

# --- the leaders ----------------------------------------------------------------------------
ENDPOINTS="127.0.0.1:$((EP+1)),127.0.0.1:$((EP+2)),127.0.0.1:$((EP+3))"
for _ in $(seq 50); do etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
ETCD=$(etcdctl --endpoints="$ENDPOINTS" endpoint status | awk -F', ' '$5 == "true" { print $1 }')
[ -n "$ETCD" ] || { echo "etcd has no leader" >&2; exit 1; }
STEWARD=$(curl -sf -H "X-Rundeck-Auth-Token: $TOKEN" "http://127.0.0.1:$SP/api/45/cluster/members" \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["httpAddress"] for m in v["members"] if m["id"]==v["leader"]))')
echo "etcd $(etcd --version | head -1 | awk '{print $3}') leader $ETCD (GOMAXPROCS ${GOMAXPROCS:-default}); steward leader $STEWARD (worker threads ${STEWARD_WORKER_THREADS:-default}); ${SECS}s per run; $(date -u +%FT%TZ)"

# Raft terms before and after: a change means an election happened mid-run, which shows in that
# side's tail.
steward_term() { curl -sf "http://$STEWARD/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["term"])' || echo "?"; }
etcd_term() {
  etcdctl --endpoints="$ENDPOINTS" endpoint status -w json 2>/dev/null \
    | python3 -c 'import json,sys; print(max(s["Status"]["raftTerm"] for s in json.load(sys.stdin)))' || echo "?"
}
S_TERM=$(steward_term); E_TERM=$(etcd_term)

# --- measure --------------------------------------------------------------------------------
# One wrk run -> "writes/s p50_ms p99_ms non2xx errors stalls stalls_ms slow_syncs slow_sync_max_ms
# disk_writes disk_kib": stalls to slow_sync_max_ms are what bench/host-stalls.py saw of the
# machine during the run (its CPU standing still, its disk standing still), which lands in either
# side's tail; the last two are the write requests and KiB the data dir's block device completed
# during the run (/proc/diskstats: both sides' members, and the probe's 4 KiB every 20 ms).
# wrk also leaves its whole latency histogram in the file named by the fourth argument
# (bench/latencies.lua).
measure() { # url script connections histogram-file
  local c=$3 t=2 out probe; [ "$c" -lt 2 ] && t=1
  # Every half starts with nothing of anyone else's left to write back: the kernel writes dirty
  # pages out about 30 s after they were made, so the build before the run, the half before
  # this one, or the last run's cleanup otherwise lands, as disk stalls, in whichever half is
  # running then.
  sync
  local before after
  before=$(disk_io)
  python3 bench/host-stalls.py "$HALF" "$WORK" >"$WORK/stalls" &
  probe=$!
  out=$(WRK_LATENCIES="$4" wrk -t$t -c$c -d${HALF}s --latency -s "$2" "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 } / 50%/ { p50=ms($2) } / 99%/ { p99=ms($2) }
    /Non-2xx/ { bad=$NF } /Socket errors/ { err=$0 }
    END { printf "%.0f %.2f %.2f %d %s", rps, p50, p99, bad, (err=="" ? "-" : "socket-errors") }')
  wait "$probe"
  after=$(disk_io)
  echo "$out $(cut -d' ' -f1,2,4,5 "$WORK/stalls") $(awk -v a="$before" -v b="$after" 'BEGIN {
    split(a, x, " "); split(b, y, " "); printf "%d %d", y[1] - x[1], (y[2] - x[2]) / 2 }')"
}
# Writes completed and sectors written so far on the block device under $WORK.
DISK=$(basename "$(df --output=source "$WORK" | tail -1)")
disk_io() { awk -v d="$DISK" '$3 == d { print $8, $10 }' /proc/diskstats; }
# The p50 and p99 (ms) of every request of the histogram files given, pooled.
pooled() {
  python3 - "$@" <<'PY'
import sys
counts = {}
for path in sys.argv[1:]:
    for line in open(path):
        us, n = line.split()
        counts[int(us)] = counts.get(int(us), 0) + int(n)
total, seen, out = sum(counts.values()), 0, {}
for us in sorted(counts):
    seen += counts[us]
    for q in (50, 99):
        if q not in out and seen >= total * q / 100:
            out[q] = us / 1000
print("%.2f %.2f" % (out[50], out[99]))
PY
}
# Each side is measured in two halves, in the order steward, etcd, etcd, steward: the host's
# noise (other tenants' CPU and disk) drifts over seconds, and this order gives both sides the
# same share of a drift that is linear over the four halves. writes/s is the two halves' mean;
# p50 and p99 are those of every request of the side's two halves, pooled (a side's p99 is the
# latency 1 % of its requests exceeded). Each half's own p99 is printed below the table.
# Both clusters up and idle for one half's length before the first half: what the disk and the
# machine do with no load at all (the first half runs right after six members started).
sync
read -r i_sn i_sms i_dn i_dmax < <(python3 bench/host-stalls.py "$HALF" "$WORK" | cut -d' ' -f1,2,4,5)
echo "idle ${HALF}s before the first half: machine stalls $i_sn/$i_sms ms, fdatasyncs over 10 ms $i_dn/$i_dmax ms"
HALVES=""
per_write() { awk -v w="$1" -v k="$2" -v n="$3" -v s="$HALF" 'BEGIN { printf "%.2f/%.1f", w / (n * s), k / (n * s) }'; }
mean() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { printf f, (a + b) / 2 }'; }
printf "\n| connections | steward writes/s | p50 | p99 | etcd writes/s | p50 | p99 | writes/s ratio | p99 ratio |\n"
printf "|---|---|---|---|---|---|---|---|---|\n"
export STEWARD_TOKEN=$TOKEN
for c in 1 16 64; do
  H="$WORK/lat-c$c"
  read -r s1_rps s1_p50 s1_p99 s1_bad s1_err s1_sn s1_sms s1_dn s1_dmax s1_dw s1_dk < <(export RUN="c$c-a-$RANDOM"; measure "http://$STEWARD" bench/keys-put.lua $c "$H-s1")
  read -r e1_rps e1_p50 e1_p99 e1_bad e1_err e1_sn e1_sms e1_dn e1_dmax e1_dw e1_dk < <(measure "http://$ETCD" bench/etcd-put.lua $c "$H-e1")
  read -r e2_rps e2_p50 e2_p99 e2_bad e2_err e2_sn e2_sms e2_dn e2_dmax e2_dw e2_dk < <(measure "http://$ETCD" bench/etcd-put.lua $c "$H-e2")
  read -r s2_rps s2_p50 s2_p99 s2_bad s2_err s2_sn s2_sms s2_dn s2_dmax s2_dw s2_dk < <(export RUN="c$c-b-$RANDOM"; measure "http://$STEWARD" bench/keys-put.lua $c "$H-s2")
  s_rps=$(mean "$s1_rps" "$s2_rps" "%.0f"); e_rps=$(mean "$e1_rps" "$e2_rps" "%.0f")
  read -r s_p50 s_p99 < <(pooled "$H-s1" "$H-s2")
  read -r e_p50 e_p99 < <(pooled "$H-e1" "$H-e2")
  s_bad=$((s1_bad + s2_bad)); e_bad=$((e1_bad + e2_bad))
  ratio=$(awk -v a="$s_rps" -v b="$e_rps" 'BEGIN { printf "%.2f", a/b }')
  p99r=$(awk -v a="$s_p99" -v b="$e_p99" 'BEGIN { printf "%.2f", a/b }')
  printf "| %s | %s | %s ms | %s ms | %s | %s ms | %s ms | %s | %s |\n" \
    "$c" "$s_rps" "$s_p50" "$s_p99" "$e_rps" "$e_p50" "$e_p99" "$ratio" "$p99r"
  HALVES+="  halves, $c connections (writes/s): steward $s1_rps then $s2_rps, etcd $e1_rps then $e2_rps; p99 (ms): steward $s1_p99 then $s2_p99, etcd $e1_p99 then $e2_p99"
  HALVES+=" (their means, the table's p99 before session 14: steward $(mean "$s1_p99" "$s2_p99" "%.2f"), etcd $(mean "$e1_p99" "$e2_p99" "%.2f"));"
  HALVES+=" machine stalls (count/ms): steward $s1_sn/$s1_sms then $s2_sn/$s2_sms, etcd $e1_sn/$e1_sms then $e2_sn/$e2_sms;"
  HALVES+=" fdatasyncs over 10 ms (count/max ms): steward $s1_dn/$s1_dmax then $s2_dn/$s2_dmax, etcd $e1_dn/$e1_dmax then $e2_dn/$e2_dmax;"
  HALVES+=" disk per write (write requests/KiB): steward $(per_write "$s1_dw" "$s1_dk" "$s1_rps") then $(per_write "$s2_dw" "$s2_dk" "$s2_rps"),"
  HALVES+=" etcd $(per_write "$e1_dw" "$e1_dk" "$e1_rps") then $(per_write "$e2_dw" "$e2_dk" "$e2_rps")"$'\n'
  [ "$s_bad" = 0 ] && [ "$e_bad" = 0 ] || echo "  (non-2xx answers: steward $s_bad, etcd $e_bad)"
done
echo
printf "%s" "$HALVES"
echo "Raft terms over the run: steward $S_TERM -> $(steward_term), etcd $E_TERM -> $(etcd_term) (a change: an election mid-run)"
echo "ratios: steward / etcd (writes/s: above 1 is better for steward; p99: below 1 is better for steward)"
