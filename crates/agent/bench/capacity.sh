#!/bin/bash
# The capacity run of issue 10 on this machine: one 50-person meeting
# (everyone sends 360p video and audio and receives what the SFU's slots
# give it: 9 cameras and 9 microphones) plus 200 audio-only listeners in 20
# other rooms of 10, each room with one speaker. Every participant is in its
# room's MLS group and SFrame-encrypts what it sends; receivers count
# packets (`--count-only`). The server is not pinned; everything shares the
# machine's cores.
#
#   crates/agent/bench/capacity.sh [DUR]        # default 40 s
#   BIG=30 LISTENERS=100 crates/agent/bench/capacity.sh   # a smaller mix
#
# Prints, per agent process, loss over the whole run and after the joins
# (from the second report on), and the server's CPU (sampled from /proc
# between t=17 s and t=DUR-4 s), RSS and kernel socket drops, and the
# server's warnings and disconnections.
# Needs target/release/conclave and target/release/conclave-agent, python3.
set -eu
DUR=${1:-40}; BIG=${BIG:-50}; LISTENERS=${LISTENERS:-200}
cd "$(dirname "$0")/../../.."
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
RUST_LOG=${RUST_LOG:-info} target/release/conclave --listen 127.0.0.1:0 --udp-port 0 > "$TMP/srv.out" 2> "$TMP/srv.err" &
SRV=$!
PIDS+=("$SRV")
for _ in $(seq 50); do grep -q http "$TMP/srv.out" && break; sleep 0.1; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$TMP/srv.out" | head -1)
# One invite secret for every room, so the three processes share groups.
SECRET=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
agent() { # name room args...
  local name=$1 room=$2; shift 2
  target/release/conclave-agent join "$URL/$room#s=$SECRET" --name "$name" --count-only \
    --duration "$DUR" --report-every 10 --json "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
  PIDS+=("$!")
}
ROOMS=$(( (LISTENERS + 9) / 10 ))
agent big big --participants "$BIG" --video 360p --audio on
agent speaker listen --participants "$ROOMS" --room-size 1 --video off --audio on
sleep 2
agent listener listen --participants "$LISTENERS" --room-size 10 --receive-only --join-interval-ms 20
cpu() { for p in "$@"; do awk '{printf "%d ", $14+$15}' "/proc/$p/stat"; done; }
sleep 15
c0=$(cpu "${PIDS[@]}"); t0=$(date +%s.%N)
sleep $((DUR - 21))
c1=$(cpu "${PIDS[@]}"); t1=$(date +%s.%N)
UPORT=$(grep -o 'media on UDP 127.0.0.1:[0-9]*' "$TMP/srv.out" | grep -o '[0-9]*$')
drops=$(awk -v p=":$(printf '%04X' "$UPORT") " 'NR>1 && index($2" ",p)>0 {s+=$NF} END {print s+0}' /proc/net/udp)
rss=$(awk '/VmRSS/{print $2}' /proc/$SRV/status)
for p in "${PIDS[@]:1}"; do wait "$p" || true; done
python3 - "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" "$rss" "$drops" "$TMP" <<'PY'
import json, sys
c0, c1, t0, t1, tick, rss, drops, tmp = sys.argv[1:]
cores = [(int(b) - int(a)) / int(tick) / (float(t1) - float(t0)) for a, b in zip(c0.split(), c1.split())]
print(f"server: {cores[0]:.2f} cores, RSS {int(rss)//1024} MiB, socket drops {drops}; "
      f"agents: big {cores[1]:.2f}, speaker {cores[2]:.2f}, listener {cores[3]:.2f} cores")
for name in ["big", "speaker", "listener"]:
    lines = [json.loads(l) for l in open(f"{tmp}/{name}.out") if l.startswith("{")]
    summaries = [x for x in lines if x.get("type") == "summary"]
    if not summaries:
        print(f"{name}: no summary; stderr: {open(f'{tmp}/{name}.err').read()[-500:]}")
        continue
    s = summaries[-1]
    reports = [x for x in lines if x.get("type") == "report"]
    def total(rep, key):
        return rep["totals"]["audio"][key] + rep["totals"]["video"][key]
    steady = float("nan")
    if len(reports) >= 2:
        lost = total(s, "lost") - total(reports[1], "lost")
        got = total(s, "packets") - total(reports[1], "packets")
        steady = 100 * lost / max(1, lost + got)
    ps = s["participants"]
    t, el = s["totals"], s["elapsed_s"]
    conn = sum(1 for p in ps if p["connected"])
    grouped = sum(1 for p in ps if p.get("in_group"))
    pps = (t["audio"]["packets"] + t["video"]["packets"]) / el
    print(f"{name}: {len(ps)} participants, connected {conn}, in group {grouped}, "
          f"received {pps:.0f} pps (audio {t['audio']['packets']/el:.0f}, video {t['video']['packets']/el:.0f}), "
          f"loss audio {t['audio_loss_percent']:.2f}% video {t['video_loss_percent']:.2f}%, "
          f"loss after the second report {steady:.2f}%")
PY
grep -h '^error' "$TMP"/*.err | sort | uniq -c | head || true
grep -E 'WARN|ERROR|disconnect' "$TMP/srv.err" | sed 's/^[^ ]* *//' | cut -c1-160 | sort | uniq -c | sort -rn | head || true
