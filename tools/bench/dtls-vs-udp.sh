#!/usr/bin/env bash
# DTLS next to plain UDP on one gateway (issue 15; docs/benchmarks.md, "DTLS"): QoS 1 uplink,
# 100 motes, one message in flight each, predefined topic, alternating UDP and DTLS runs on a
# fresh mosquitto and gateway per round. Every report goes to OUTDIR as JSON; summarise with
# tools/bench/summary.py OUTDIR.
#
#   tools/bench/dtls-vs-udp.sh OUTDIR [ROUNDS] [MOTES] [SECONDS]
#
# BIN (default target/release) holds mqtt-sn-gateway and mqtt-sn; mosquitto and openssl must
# be installed. KINDS="dtls" runs one kind only; DTLS_EXTRA adds lines to the [[dtls]] section
# (e.g. 'engine = "openssl"'); DTLS_TOOL_EXTRA adds options to the DTLS runs of the bench (e.g.
# "--dtls-engine mbedtls"); BENCH_EXTRA adds options to every bench run (e.g. the scale run of
# docs/benchmarks.md: MOTES 10000, SECONDS 60, BENCH_EXTRA="-c 3 --connect-rate 1000
# --connect-timeout 120s --hold 5s"); TOOL_THREADS sets the bench's worker threads (1). The
# running gateway's pid is in OUTDIR/gateway.pid (for perf). Only loopback addresses are used.
set -euo pipefail
OUT=${1:?usage: dtls-vs-udp.sh OUTDIR [ROUNDS] [MOTES] [SECONDS]}
ROUNDS=${2:-3}
MOTES=${3:-100}
SECS=${4:-10}
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for tool in "$BIN/mqtt-sn-gateway" "$BIN/mqtt-sn" "$MOSQ"; do
    [ -x "$tool" ] || { echo "missing $tool (cargo build --release; apt-get install mosquitto)" >&2; exit 2; }
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ulimit -n 20000

free_port() { # a free port for both TCP and UDP on 127.0.0.1
    python3 - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
PY
}

# One key per mote: identity bench-N, a random 16-byte key.
if [ ! -f "$OUT/motes.psk" ]; then
    python3 -c 'import secrets, sys
for i in range(max(int(sys.argv[1]), 10000)):
    print(f"bench-{i}:{secrets.token_hex(16)}")' "$MOTES" > "$OUT/motes.psk"
    chmod 600 "$OUT/motes.psk"
fi

run() { # run ROUND KIND
    local round=$1 kind=$2 mq gw dt mqpid gwpid
    mq=$(free_port); gw=$(free_port); dt=$(free_port)
    # A burst of 10 000 motes queues far more than mosquitto's default 1 000 messages for the
    # bench's subscriber, and mosquitto drops the rest (after it acknowledged them).
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$mq" > "$OUT/mosquitto.conf"
    "$MOSQ" -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
    mqpid=$!
    cat > "$OUT/gateway.toml" <<TOML
[gateway]
max_sessions = 200000
connect_rate = 0

[broker]
url = "mqtt://127.0.0.1:$mq"

[predefined_topics]
1 = "bench/p"

[[udp]]
bind = "127.0.0.1:$gw"
discovery = "off"

[[dtls]]
bind = "127.0.0.1:$dt"
psk_file = "motes.psk"
max_handshakes = 20000
handshake_timeout = "60s"
${DTLS_EXTRA:-}
[log]
level = "warn"
TOML
    sleep 0.3
    "$BIN/mqtt-sn-gateway" --config "$OUT/gateway.toml" > "$OUT/gateway-$round-$kind.log" 2>&1 &
    gwpid=$!
    echo "$gwpid" > "$OUT/gateway.pid"
    sleep 1
    local target=(--gateway "127.0.0.1:$gw")
    # shellcheck disable=SC2206 # DTLS_TOOL_EXTRA is split into words on purpose
    [ "$kind" = dtls ] && target=(--gateway "127.0.0.1:$dt" --dtls --psk-file "$OUT/motes.psk" ${DTLS_TOOL_EXTRA:-})
    echo "round $round $kind: load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/log.txt"
    "$BIN/mqtt-sn" bench "${target[@]}" --broker "mqtt://127.0.0.1:$mq" \
        --gateway-pid "$gwpid" --broker-pid "$mqpid" --threads "${TOOL_THREADS:-1}" --json --quiet \
        -n "$MOTES" -q 1 --predefined 1=bench/p -d "${SECS}s" --label "$kind" ${BENCH_EXTRA:-} \
        -o "$OUT/$round-$kind.json" > /dev/null || echo "round $round $kind: bench failed" | tee -a "$OUT/log.txt"
    kill "$gwpid" "$mqpid" 2>/dev/null || true
    wait "$gwpid" "$mqpid" 2>/dev/null || true
}

for r in $(seq 1 "$ROUNDS"); do
    for kind in ${KINDS:-udp dtls}; do
        run "$r" "$kind"
    done
done
