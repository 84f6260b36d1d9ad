#!/bin/bash
# One load run: the server pinned to core 0, one agent process pinned to
# core 1 running N participants (720p + audio by default, count-only
# receiving; every participant is in its room's MLS group and SFrame-encrypts
# what it sends). Prints CPU of both processes (sampled from /proc between
# t=5 s and t=DUR-2 s, so joins are excluded), RSS, throughput, loss over the
# whole run and after the first 5 s, and kernel drops on the server's socket.
#
#   crates/agent/bench/measure.sh N [720p|360p|180p] [DUR]
#   EXTRA="--room-size 5" crates/agent/bench/measure.sh 80
#   COUNT_ONLY= crates/agent/bench/measure.sh 20   # receivers decrypt everything
#
# Needs target/release/conclave and target/release/conclave-agent, taskset, python3.
set -eu
N=$1; VIDEO=${2:-720p}; DUR=${3:-20}; EXTRA=${EXTRA:-}; COUNT_ONLY=${COUNT_ONLY---count-only}
cd "$(dirname "$0")/../../.."
TMP=$(mktemp -d)
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
taskset -c 0 target/release/conclave --listen 127.0.0.1:0 --udp-port 0 > "$TMP/srv.out" 2>/dev/null &
SRV=$!
for _ in $(seq 50); do grep -q http "$TMP/srv.out" && break; sleep 0.1; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$TMP/srv.out" | head -1)
# shellcheck disable=SC2086
taskset -c 1 target/release/conclave-agent join "$URL/load" --participants "$N" $EXTRA \
  --video "$VIDEO" $COUNT_ONLY --duration "$DUR" --report-every 5 --json > "$TMP/agent.out" 2> "$TMP/agent.err" &
AG=$!
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
sleep 5
s0=$(cpu $SRV); a0=$(cpu $AG); t0=$(date +%s.%N)
sleep $((DUR - 7))
s1=$(cpu $SRV); a1=$(cpu $AG); t1=$(date +%s.%N)
UPORT=$(grep -o 'media on UDP 127.0.0.1:[0-9]*' "$TMP/srv.out" | grep -o '[0-9]*$')
drops=$(awk -v p=":$(printf '%04X' "$UPORT") " 'NR>1 && index($2" ",p)>0 {s+=$NF} END {print s+0}' /proc/net/udp)
rss=$(awk '/VmRSS/{print $2}' /proc/$SRV/status)
arss=$(awk '/VmRSS/{print $2}' /proc/$AG/status)
wait $AG || true
python3 - "$N" "$s0" "$s1" "$a0" "$a1" "$t0" "$t1" "$(getconf CLK_TCK)" "$rss" "$arss" "$drops" "$TMP/agent.out" <<'PY'
import json, sys
n, s0, s1, a0, a1, t0, t1, tick, rss, arss, drops, out = sys.argv[1:]
dt = float(t1) - float(t0)
srv = (int(s1) - int(s0)) / int(tick) / dt * 100
ag = (int(a1) - int(a0)) / int(tick) / dt * 100
lines = [json.loads(l) for l in open(out) if l.startswith("{")]
summary = [x for x in lines if x.get("type") == "summary"][-1]
reports = [x for x in lines if x.get("type") == "report"]
def total(rep, key):
    return rep["totals"]["audio"][key] + rep["totals"]["video"][key]
steady = float("nan")
if reports:
    lost = total(summary, "lost") - total(reports[0], "lost")
    got = total(summary, "packets") - total(reports[0], "packets")
    steady = 100 * lost / max(1, lost + got)
t, el = summary["totals"], summary["elapsed_s"]
conn = sum(1 for p in summary["participants"] if p["connected"])
grouped = sum(1 for p in summary["participants"] if p.get("in_group"))
codes = len({p.get("security_code") for p in summary["participants"] if p.get("security_code")})
dec = t["audio"].get("decrypted", 0) + t["video"].get("decrypted", 0)
fail = t["audio"].get("decrypt_failures", 0) + t["video"].get("decrypt_failures", 0)
e2ee = f" decrypted={dec} decrypt_failures={fail}" if dec or fail else ""
sent = sum(p["sent_bytes"] for p in summary["participants"]) * 8 / el / 1e6
recv = (t["audio"]["bytes"] + t["video"]["bytes"]) * 8 / el / 1e6
print(f"N={n} server_cpu={srv:.0f}% agent_cpu={ag:.0f}% server_rss={int(rss)//1024}MiB "
      f"agent_rss={int(arss)//1024}MiB connected={conn}/{n} in_group={grouped}/{n} codes={codes} sent={sent:.1f}Mbps recv={recv:.1f}Mbps "
      f"loss_audio={t['audio_loss_percent']:.2f}% loss_video={t['video_loss_percent']:.2f}% "
      f"loss_after_5s={steady:.2f}% server_socket_drops={drops}{e2ee}")
PY
grep '^error' "$TMP/agent.err" || true
