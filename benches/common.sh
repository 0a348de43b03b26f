# Sourced by benches/memory.sh and scripts/hot-symbols.sh (both set ROOT, EMU and WORK, with the
# library to measure in $WORK/lib): the customer's program, and the emulator it registers with.

# $WORK/memory: benches/memory.c (examples/c/prov_dev_sample.c with /proc/self/smaps around it)
# linked against $WORK/lib.
build_memory_driver() {
  cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude -Iexamples/c benches/memory.c \
    -L"$WORK/lib" -lprov_mqtt_transport -Wl,-rpath,"$WORK/lib" -rdynamic -lpthread -o "$WORK/memory"
}

# start_emulator WHO [ARGS of `dps-emulator certs`]: certificates in $WORK/certs and an emulator
# on ephemeral ports (retry-after 1, one poll); sets GROUP_KEY, SCOPE, EMU_PID, MQTT_PORT, WS_PORT.
start_emulator() {
  local who=$1
  shift
  "$EMU" certs --out "$WORK/certs" "$@" >/dev/null
  GROUP_KEY=$(head -c 32 /dev/urandom | base64)
  SCOPE=0ne00000000
  "$EMU" serve --certs "$WORK/certs" --scope $SCOPE --group-key "$GROUP_KEY" --retry-after 1 --polls 1 \
    --mqtt-port 0 --ws-port 0 >"$WORK/emu.out" 2>"$WORK/emu.err" &
  EMU_PID=$!
  for _ in $(seq 100); do grep -q "mqtt=" "$WORK/emu.out" 2>/dev/null && break; sleep 0.05; done
  MQTT_PORT=$(sed -n 's/.*mqtt=[^ ]*:\([0-9]*\).*/\1/p' "$WORK/emu.out" | head -1)
  WS_PORT=$(sed -n 's/.*ws=[^ ]*:\([0-9]*\).*/\1/p' "$WORK/emu.out" | head -1)
  [ -n "$MQTT_PORT" ] || { echo "$who: the emulator did not start" >&2; cat "$WORK/emu.err" >&2; exit 1; }
}
