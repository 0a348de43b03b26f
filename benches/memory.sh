#!/usr/bin/env bash
# Memory bench (issue 14, goal 1): the resident memory prov_mqtt_transport adds to a C process that
# registers one device (peak RSS minus the process's RSS before the first create), its breakdown at
# the peak (benches/memory.c says how each part is found), and what stays after destroy. MQTT/TLS
# and MQTT/WSS, against the local emulator (retry-after 1, one poll), loopback only. Prints figures;
# never fails because a figure is large.
#
#   benches/memory.sh            the library as shipped: cargo's dist profile (fat LTO), stripped
#   benches/memory.sh --smoke    the debug library (what scripts/test.sh builds): proves it runs
#   MEMORY_PROFILE=release       another cargo profile (release: no LTO)
#   MEMORY_LIB=FILE              a library built already (scripts/bench.sh passes its shipped one)
#   MEMORY_RUNS=N                runs per transport (default 3; smoke 1)
#   MEMORY_EVICT=1               only the library pages a registration really touches get mapped
#                                (benches/memory.c: no read-around, the rest evicted before create;
#                                on Linux 6.18 the text's faults read ahead anyway: read-only data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TD=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${1:-}" = --smoke ]; then PROFILE=debug; RUNS=${MEMORY_RUNS:-1}; else PROFILE=${MEMORY_PROFILE:-dist}; RUNS=${MEMORY_RUNS:-3}; fi
if [ $PROFILE = debug ]; then
  cargo build --quiet -p dps-emulator
  EMU=$TD/debug/dps-emulator
else
  cargo build --quiet --release -p dps-emulator
  EMU=$TD/release/dps-emulator
fi
if [ -n "${MEMORY_LIB:-}" ]; then
  SO=$MEMORY_LIB
else
  if [ $PROFILE = debug ]; then
    cargo build --quiet -p prov_mqtt_transport --lib
  else
    cargo build --quiet --profile "$PROFILE" -p prov_mqtt_transport --lib
  fi
  SO=$TD/$PROFILE/libprov_mqtt_transport.so
fi
# how many of cmake/hot-symbols.txt's names the library has, so that a stale list shows
# (an installed library is stripped: its symbols are in the debug file the package puts beside it)
SYMBOLS=$SO
DEBUG_FILE=$(dirname "$SO")/.debug/$(basename "$(readlink -f "$SO")").debug
[ -n "$(nm "$SO" 2>/dev/null | head -1)" ] || [ ! -f "$DEBUG_FILE" ] || SYMBOLS=$DEBUG_FILE
HOT=$(scripts/hot-symbols.sh --count "$SYMBOLS")
WORK=$(mktemp -d)
trap 'kill "${EMU_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# the library as installed: its SONAME (libprov_mqtt_transport.so.0) next to it
mkdir -p "$WORK/lib"
cp "$SO" "$WORK/lib/libprov_mqtt_transport.so"
[ $PROFILE = debug ] || strip "$WORK/lib/libprov_mqtt_transport.so"
ln -s libprov_mqtt_transport.so "$WORK/lib/libprov_mqtt_transport.so.0"
. benches/common.sh
build_memory_driver
start_emulator memory
: >"$WORK/results"
for i in $(seq "$RUNS"); do
  for t in mqtt ws; do
    regid=mem-$t-$i-$$
    key=$(python3 -c 'import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(base64.b64decode(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).digest()).decode())' "$GROUP_KEY" "$regid")
    token=$("$EMU" sas --scope $SCOPE --registration-id "$regid" --key "$key")
    if [ $t = mqtt ]; then port=$MQTT_PORT; ws=(); else port=$WS_PORT; ws=(--ws); fi
    "$WORK/memory" "${ws[@]}" --uri "localhost:$port" --scope $SCOPE --registration-id "$regid" \
      --trusted-ca "$WORK/certs/root-ca.pem" --sas-token "$token" >"$WORK/out" 2>"$WORK/err" || {
      echo "memory: the $t registration failed" >&2; cat "$WORK/out" "$WORK/err" >&2; exit 1; }
    printf '%s %s\n' $t "$(tail -1 "$WORK/out")" >>"$WORK/results"
  done
done
python3 - "$WORK/results" "${MEMORY_LIB:-cargo profile $PROFILE}${MEMORY_EVICT:+; MEMORY_EVICT=$MEMORY_EVICT}" "$HOT" <<'PY'
import json, sys, statistics
rows = [(l.split(" ", 1)[0], json.loads(l.split(" ", 1)[1])) for l in open(sys.argv[1])]
print(f"== memory the library adds to a C process registering one device ({sys.argv[2]}; KB)")
print(f"   hot-symbol order (cmake/hot-symbols.txt): {sys.argv[3]}")
cats = ["lib_text", "lib_ro", "lib_data", "heap", "arenas", "stacks", "anon", "other"]
for t in ("mqtt", "ws"):
    rs = [r for tt, r in rows if tt == t]
    if not rs:
        continue
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"-- {'MQTT/TLS' if t == 'mqtt' else 'MQTT/WSS'}, {len(rs)} run(s), medians")
    # The peak is the largest /proc/self/smaps sample. Since the library drops its pages after
    # the last destroy, the kernel's VmHWM reads lower than samples taken before (~280 KB here;
    # the kernel takes the high-water mark when pages go, from counters that are not exact),
    # while RSS stays at its peak from the registration until that release: the 1 ms samples
    # see it.
    print(f"   added at peak (largest sample - RSS before create): {med(lambda r: r['peak']['rss_kb'] - r['before']['rss_kb']):.0f}"
          f"   (VmHWM - before: {med(lambda r: r['vmhwm_kb'] - r['before']['rss_kb']):.0f})")
    print(f"   still added after destroy: {med(lambda r: r['after']['rss_kb'] - r['before']['rss_kb']):.0f}")
    print(f"   of the peak's addition, anonymous (no file behind it: heap, arenas, stacks, data): "
          f"{med(lambda r: r['peak']['anonymous_kb'] - r['before']['anonymous_kb']):.0f}; after destroy: "
          f"{med(lambda r: r['after']['anonymous_kb'] - r['before']['anonymous_kb']):.0f}")
    print(f"   {'part':<10} {'before':>8} {'peak':>8} {'after':>8} {'peak-before':>12}")
    for c in cats:
        b, p, a = (med(lambda r, s=s: r[s][c + '_kb']) for s in ("before", "peak", "after"))
        print(f"   {c:<10} {b:>8.0f} {p:>8.0f} {a:>8.0f} {p - b:>12.0f}")
    lp = lambda s, k: med(lambda r: r["libpages"][s][k])
    for part, name in (("text", "text"), ("ro", "read-only")):
        print(f"   library {name} pages (4 KiB): {lp('after', part + '_pages'):.0f} mapped; present in the page tables "
              f"before create {lp('before', part + '_present'):.0f}, after destroy {lp('after', part + '_present'):.0f}; "
              f"in the page cache before create {lp('before', part + '_cached'):.0f}, after {lp('after', part + '_cached'):.0f}")
    r = rs[len(rs) // 2]
    grown = {k: v - r["before"]["other_by_file"].get(k, 0) for k, v in r["peak"]["other_by_file"].items()}
    print("   other, grown at the peak by file: " + ", ".join(f"{k} +{v}" for k, v in sorted(grown.items(), key=lambda kv: -kv[1]) if v))
    for s in ("before", "peak", "after"):
        r = rs[len(rs) // 2][s]
        st = ", ".join(f"{k.split('#')[0]} {v}" for k, v in r["stack_by_thread"].items())
        print(f"   {s:<6}: threads {r['threads']}, malloc arenas besides the main one {r['arenas']}, "
              f"heap in use (mallinfo2) {r['heap_in_use'] / 1024:.0f}; stacks: {st}")
print("JSON " + json.dumps(rows))
PY
