#!/usr/bin/env bash
# A/B of steward builds on key-storage writes: for each round, each build in turn gets a fresh
# 3-member cluster on loopback, then wrk creates 256-byte keys through the leader for SECS
# seconds. Prints writes/s, p50, p99, each member's CPU (user + system) per write, and how
# busy the machine was. Alternating builds in fresh clusters is what makes two builds
# comparable on a shared, noisy machine.
#
# usage: bench/ab.sh CONNS SECS ROUNDS BIN...   e.g. bench/ab.sh 1 6 4 /tmp/steward.a /tmp/steward.b
# needs: wrk, curl, python3. Ports 15400/15410/15420 (HTTP) and +1 (gRPC), STEWARD_PORT to move.
set -euo pipefail
cd "$(dirname "$0")/.."
C=$1 S=$2 R=$3; shift 3
SP=${STEWARD_PORT:-15400}
WORK=$(mktemp -d /tmp/steward-ab.XXXXXX)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STEWARD_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STEWARD_CLUSTER_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') STEWARD_LOG=warn
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'stop; rm -rf "$WORK"' EXIT
start() { # BIN
  rm -rf "$WORK"/s*
  for i in 0 1 2; do
    local join=(); [ "$i" -gt 0 ] && join=(--join "http://127.0.0.1:$SP")
    STEWARD_ADMIN_TOKEN=$TOKEN "$1" serve --data-dir "$WORK/s$i" --http "127.0.0.1:$((SP+10*i))" \
      --raft "127.0.0.1:$((SP+10*i+1))" "${join[@]}" >"$WORK/s$i.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((SP+10*i))/health" >/dev/null && break; sleep 0.1; done
  done
}
cpu() { for p in "${PIDS[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | tr '\n' ' '; }
idle() { awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
tick=$(getconf CLK_TCK)
for _ in $(seq "$R"); do
  for bin in "$@"; do
    start "$bin"
    leader=$(curl -sf -H "X-Rundeck-Auth-Token: $TOKEN" "http://127.0.0.1:$SP/api/45/cluster/members" \
      | python3 -c 'import json,sys; v=json.load(sys.stdin); print(next(m["httpAddress"] for m in v["members"] if m["id"]==v["leader"]))')
    t=2; [ "$C" -lt 2 ] && t=1
    a=$(cpu); ia=$(idle)
    out=$(STEWARD_TOKEN=$TOKEN RUN="ab$RANDOM" wrk -t$t -c"$C" -d"${S}s" --latency -s bench/keys-put.lua "http://$leader")
    b=$(cpu); ib=$(idle)
    WRK_OUT=$out python3 - "$bin" "$C" "$a" "$b" "$ia" "$ib" "$tick" "$S" <<'PY'
import os, re, sys
out = os.environ["WRK_OUT"]
bin_, c, a, b, ia, ib, tick, secs = sys.argv[1:]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p = {k: re.search(r"\s%s%%\s+(\S+)" % k, out).group(1) for k in ("50", "99")}
n = rps * float(secs)
per = [(int(y) - int(x)) / int(tick) * 1000 / n for x, y in zip(a.split(), b.split())]
i1, t1 = map(int, ia.split()); i2, t2 = map(int, ib.split())
busy = 100 - 100 * (i2 - i1) / (t2 - t1)
print(f"{bin_} c={c} writes/s {rps:.0f} p50 {p['50']} p99 {p['99']} cpu-ms/write " + " ".join(f"{x:.3f}" for x in per) + f" busy {busy:.0f}%")
PY
    stop
  done
done
