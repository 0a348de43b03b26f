#!/usr/bin/env bash
# Writes cmake/hot-symbols.txt: the library's functions (and named read-only data) that a device
# registration runs, in first-use order, for build.rs to hand to lld as --symbol-ordering-file, so
# that the code a registration runs is contiguous at the start of .text and the kernel's
# fault-around (64 KiB windows of the page cache) maps few pages besides it (issue 14, goal 1;
# BENCHMARKS.md section 7).
#
#   scripts/hot-symbols.sh [LIB]    LIB: an unstripped build of the library (default: the dist
#                                   profile's, built here first); its symbol names are the list's
#
# Four registrations against the local emulator (retry-after 1, one poll), each the customer's
# program (benches/memory.c around examples/c/prov_dev_sample.c): MQTT/TLS and MQTT/WSS, each with
# a symmetric key and with an X.509 certificate. Each runs under valgrind's lackey, which prints
# every instruction and load; the first occurrence of each address in the library is mapped to the
# symbol (nm -S) that holds it; then the same registration runs natively with its text pages traced
# (benches/memory.c, MEMORY_TRACE_TEXT=1), for the code valgrind's CPU does not reach. The list is
# run 1's symbols in first-use order, then the symbols runs 2-4 add, in theirs. Prints what the
# registrations execute: functions, their size, the pages their instructions are on.
#
# Mangled names carry hashes that change with rustc and dependency versions: run this again after
# such an update (benches/memory.sh prints how many of the list's names the library still has).
#   scripts/hot-symbols.sh --count LIB   prints how many of the list's names LIB has (a list gone
#                                   stale after such an update shows), builds and runs nothing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "${1:-}" = --count ]; then
  LIST=cmake/hot-symbols.txt
  [ -f $LIST ] || { echo "no $LIST"; exit 0; }
  total=$(grep -cv '^#' $LIST)
  if [ -z "$(nm "$2" 2>/dev/null | head -1)" ]; then
    echo "not checked: $2 has no symbol table"
  else
    have=$(nm --defined-only "$2" | awk '{print $NF}' | sort -u | comm -12 - <(grep -v '^#' $LIST | sort -u) | wc -l)
    echo "$have of its $total names in this library"
  fi
  exit 0
fi
TD=${CARGO_TARGET_DIR:-$ROOT/target}
command -v valgrind >/dev/null || { echo "hot-symbols: needs valgrind" >&2; exit 1; }
if [ -n "${1:-}" ]; then
  SO=$(readlink -f "$1")
else
  cargo rustc --quiet --locked -p prov_mqtt_transport --lib --crate-type cdylib,staticlib --profile dist
  SO=$TD/dist/libprov_mqtt_transport.so
fi
nm "$SO" >/dev/null 2>&1 && [ -n "$(nm "$SO" 2>/dev/null | head -1)" ] \
  || { echo "hot-symbols: $SO has no symbol table (give the unstripped build)" >&2; exit 1; }
cargo build --quiet --release -p dps-emulator
EMU=$TD/release/dps-emulator
WORK=$(mktemp -d)
trap 'kill "${EMU_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lib"
cp "$SO" "$WORK/lib/libprov_mqtt_transport.so"
ln -s libprov_mqtt_transport.so "$WORK/lib/libprov_mqtt_transport.so.0"
. benches/common.sh
build_memory_driver
start_emulator hot-symbols --device hot-x509-mqtt --device hot-x509-ws
traces=()
for run in mqtt-sym ws-sym mqtt-x509 ws-x509; do
  t=${run%-*}
  if [ $t = mqtt ]; then port=$MQTT_PORT; ws=(); else port=$WS_PORT; ws=(--ws); fi
  if [ "${run#*-}" = sym ]; then
    regid=hot-sym-$t
    key=$(python3 -c 'import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(base64.b64decode(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).digest()).decode())' "$GROUP_KEY" "$regid")
    cred=(--sas-token "$("$EMU" sas --scope $SCOPE --registration-id "$regid" --key "$key")")
  else
    regid=hot-x509-$t
    cred=(--cert "$WORK/certs/device-$regid.pem" --key "$WORK/certs/device-$regid-key.pem")
  fi
  # lackey's trace, one line per instruction or data access: kept, in order, the first time each
  # address appears ("I addr,size" and " L addr,size"; stores do not touch read-only pages)
  valgrind --tool=lackey --trace-mem=yes --log-fd=9 "$WORK/memory" "${ws[@]}" --uri "localhost:$port" \
    --scope $SCOPE --registration-id "$regid" --trusted-ca "$WORK/certs/root-ca.pem" "${cred[@]}" \
    9>&1 >"$WORK/$run.out" 2>"$WORK/$run.err" \
    | awk '$1 == "I" || $1 == "L" || $1 == "M" { split($2, a, ","); k = $1 a[1]; if (!(k in s)) { s[k] = 1; print $1, a[1], a[2] } }' \
      >"$WORK/$run.trace"
  grep -q '^assigned' "$WORK/$run.out" || { echo "hot-symbols: the $run registration failed" >&2; cat "$WORK/$run.out" "$WORK/$run.err" >&2; exit 1; }
  base=$(tail -1 "$WORK/$run.out" | sed -n 's/.*"lib_base":"\(0x[0-9a-f]*\)".*/\1/p')
  traces+=("$run=$base=$WORK/$run.trace")
  # the same registration natively, its text pages traced (benches/memory.c, MEMORY_TRACE_TEXT=1)
  MEMORY_TRACE_TEXT=1 "$WORK/memory" "${ws[@]}" --uri "localhost:$port" --scope $SCOPE --registration-id "$regid" \
    --trusted-ca "$WORK/certs/root-ca.pem" "${cred[@]}" >"$WORK/$run.native" 2>"$WORK/$run.err" \
    || { echo "hot-symbols: the native $run registration failed" >&2; cat "$WORK/$run.native" "$WORK/$run.err" >&2; exit 1; }
  tail -1 "$WORK/$run.native" | sed -n 's/.*"text_exec_pages":"\([0-9a-f,]*\)".*/\1/p' | tr , '\n' >"$WORK/$run.pages"
  traces+=("$run-native=0=$WORK/$run.pages")
done
python3 - "$SO" "$ROOT/cmake/hot-symbols.txt" "${traces[@]}" <<'PY'
import bisect, re, subprocess, sys
so, out, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
secs = []
for l in subprocess.run(["readelf", "-SW", so], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", l)
    if m and int(m.group(2), 16):
        lo = int(m.group(2), 16)
        secs.append((lo, lo + int(m.group(3), 16), m.group(1)))
def section(a):
    return next((n for lo, hi, n in secs if lo <= a < hi), None)
# symbols with a size; aliases (one address, several names) are all listed
by_addr = {}
for l in subprocess.run(["nm", "-S", "--defined-only", so], capture_output=True, text=True, check=True).stdout.splitlines():
    f = l.split()
    if len(f) == 4 and int(f[1], 16) > 0 and f[2] in "tTrRdD":
        a, n = int(f[0], 16), int(f[1], 16)
        size, names = by_addr.get(a, (0, []))
        by_addr[a] = (max(size, n), names + [f[3]])
starts = sorted(by_addr)
def symbol(a):
    i = bisect.bisect_right(starts, a) - 1
    return starts[i] if i >= 0 and a < starts[i] + by_addr[starts[i]][0] else None
text = next((lo, hi) for lo, hi, n in secs if n == ".text")
# Natively the code runs on pages valgrind's run did not: other CPU paths (below). Every function
# on a page that ran natively and holds none that ran under valgrind is listed too, right after
# that registration's. (Run on a build without this list, a page mixing both is missed: run the
# script again on the new build.)
def on_page(p):
    i = bisect.bisect_right(starts, p + 4095)
    while i > 0 and starts[i - 1] + by_addr[starts[i - 1]][0] > p - (1 << 16):
        i -= 1
        a = starts[i]
        if a < p + 4096 and a + by_addr[a][0] > p and text[0] <= a < text[1]:
            yield a
per_run = []  # (name, what ran under valgrind in first-use order, the text pages run natively)
for run in runs:
    name, base, path = run.split("=", 2)
    if name.endswith("-native"):
        per_run[-1][2].update(int(p, 16) for p in open(path).read().split())
        continue
    base = int(base, 16)
    fns, first, pages, ro_pages, ibytes = set(), {}, set(), set(), 0
    for l in open(path):
        k, a, size = l.split()
        a = int(a, 16) - base
        if not 0 <= a < 1 << 30:
            continue
        s = section(a)
        if k == "I" and s == ".text":
            ibytes += int(size)
            pages.add(a >> 12)
        elif k != "I" and s == ".rodata":
            ro_pages.add(a >> 12)
        if s not in (".text", ".rodata"):
            continue
        y = symbol(a)
        if y is None:
            continue
        if k == "I":
            fns.add(y)
        first.setdefault(y, None)
    per_run.append((name, list(first), set()))
    print(f"hot-symbols: {name}: {len(fns)} functions executed, {sum(by_addr[f][0] for f in fns) // 1024} KB of them "
          f"({ibytes // 1024} KB of instructions run) on {len(pages)} of {(text[1] - text[0] + 4095) // 4096} text pages; "
          f"{len(ro_pages)} .rodata pages read")
ran_under_valgrind = {y for _, first, _ in per_run for y in first}
order, seen = [], set()
for name, first, native in per_run:
    order += [y for y in first if y not in seen]
    seen.update(first)
    add = [a for p in sorted(native) if not any(a in ran_under_valgrind for a in on_page(p)) for a in sorted(on_page(p))]
    add = [a for a in dict.fromkeys(add) if a not in seen]
    seen.update(add)
    order += add
    print(f"hot-symbols: {name}, natively: {len(native)} text pages run; {len(add)} functions on pages no valgrind "
          f"run executed added ({sum(by_addr[a][0] for a in add) // 1024} KB)")
# Under valgrind the CPU offers fewer features than the machine (no AVX-512, VAES, ADX, SHA-NI),
# so ring, memchr and httparse take other paths there than natively: every variant named after a
# CPU feature, of a crate the registrations ran code of, is listed too (after the rest; a few KB).
FEATURE = re.compile(r"avx|adx|vaes|vpclmul|clmul|shaext|sha_ni|_hw_|_hw$|bmi|sse4|ssse3")
def crate(n):
    if n.startswith("ring_core_"):
        return "ring_core"
    m = re.match(r"_ZN(\d+)", n)
    return n[len(m.group(0)):len(m.group(0)) + int(m.group(1))] if m else None
ran = {crate(n) for a in order if by_addr[a][0] and a >= text[0] and a < text[1] for n in by_addr[a][1]}
ran.discard(None)
variants = [a for a in starts if text[0] <= a < text[1] and a not in seen
            and any(FEATURE.search(n) and crate(n) in ran for n in by_addr[a][1])]
print(f"hot-symbols: {len(variants)} CPU-feature variants added ({sum(by_addr[a][0] for a in variants) // 1024} KB)")
order += variants
with open(out, "w") as f:
    f.write("# lld --symbol-ordering-file for the cdylib (build.rs): what a registration runs, first use first.\n")
    f.write("# Written by scripts/hot-symbols.sh (MQTT/TLS and MQTT/WSS, symmetric key and X.509); do not edit.\n")
    for a in order:
        for n in by_addr[a][1]:
            f.write(n + "\n")
total = sum(by_addr[a][0] for a in order)
print(f"hot-symbols: {sum(len(by_addr[a][1]) for a in order)} names ({len(order)} addresses, {total // 1024} KB) written to {out}")
PY
