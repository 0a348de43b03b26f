"""Runs the benchmarks of issues 6 and 14 and writes BENCHMARKS.md and PNG plots.

Called by scripts/bench.sh (which builds and installs everything first); not a test: it prints
figures and never fails on a slow result. Sections:

  1 round trips   emulator timeline, delay_ms=50 on loopback, and real RTT (delaynet, 100 ms)
  2 latency       registration wall time at 20 ms and 100 ms RTT, us vs Python vs Node
  3 setup         open / first dowork -> TCP accept, with a trusted CA and with the system store
  4 idle dowork   ns per call and syscalls per call while a registration waits
  5 fleet         N concurrent registrations in one process against one emulator process
  6 footprint     installed .so and static sample sizes, peak RSS and CPU of one registration
  7 memory        what the library adds to a C process (benches/memory.sh's output, --memory)
  8 wake-ups      the I/O thread while waiting and idle (benches/wakeups.py's output, --wakeups)
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCOPE = "0ne00bench0"
NS_C, NS_S, IP_S = "pmtb-c", "pmtb-s", "10.77.1.1"
CLK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """(min, p25, p75, max) of xs."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return (float("nan"),) * 4
    q = lambda p: xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]
    return (xs[0], q(0.25), q(0.75), xs[-1])


def raise_nofile(want):
    """RLIMIT_NOFILE to `want`, or as high as this process may go."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def device_key(group_key, regid):
    k = base64.b64decode(group_key)
    return base64.b64encode(hmac.new(k, regid.encode(), hashlib.sha256).digest()).decode()


def load_now():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Ctx:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="prov-bench.")
        self.certs = os.path.join(self.work, "certs")
        subprocess.run([a.emu, "certs", "--out", self.certs], check=True, capture_output=True)
        self.ca = os.path.join(self.certs, "root-ca.pem")
        self.group_key = base64.b64encode(os.urandom(32)).decode()
        self.seq = 0

    def regid(self, tag):
        self.seq += 1
        return f"{tag}-{self.seq}"


@contextmanager
def emulator(ctx, netns=False, timeline=None, extra=(), nofile=None):
    """The emulator as its own process; yields (proc, mqtt_port, ws_port)."""
    cmd = [ctx.a.emu, "serve", "--certs", ctx.certs, "--scope", SCOPE, "--group-key", ctx.group_key]
    if netns:
        cmd = ["ip", "netns", "exec", NS_S] + cmd + ["--bind", IP_S, "--mqtt-port", "8883", "--ws-port", "443"]
    else:
        cmd += ["--mqtt-port", "0", "--ws-port", "0"]
    if timeline:
        cmd += ["--timeline", timeline]
    cmd += list(extra)

    def pre():
        if nofile:
            raise_nofile(nofile)

    err = open(os.path.join(ctx.work, "emulator.err"), "ab")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=pre)
    line = p.stdout.readline()
    m = re.search(r"mqtt=\S+:(\d+) ws=\S+:(\d+)", line)
    if not m:
        p.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    try:
        yield p, int(m.group(1)), int(m.group(2))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        err.close()


@contextmanager
def delaynet(one_way_ms):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "delaynet.py"), "up", str(one_way_ms)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("delaynet up"):
        p.kill()
        raise RuntimeError("delaynet failed: " + line + p.stderr.read())
    try:
        yield
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_client(ctx, client, ws, regid, netns=True, timeout=90):
    """One registration by one client process; wall time, in-client time, peak RSS, CPU."""
    key = device_key(ctx.group_key, regid)
    env = dict(os.environ)
    if client == "us":
        token = subprocess.run([ctx.a.emu, "sas", "--scope", SCOPE, "--registration-id", regid,
                                "--key", key], check=True, capture_output=True, text=True).stdout.strip()
        cmd = [ctx.a.cdriver, "--uri", "localhost", "--scope", SCOPE, "--registration-id", regid,
               "--trusted-ca", ctx.ca, "--sas-token", token] + (["--ws"] if ws else [])
    elif client == "python":
        cmd = [ctx.a.py, os.path.join(HERE, "peers", "py_register.py"), "--scope", SCOPE,
               "--regid", regid, "--ca", ctx.ca, "--key", key] + (["--ws"] if ws else [])
    else:
        env["NODE_PATH"] = ctx.a.node_modules
        env["NODE_EXTRA_CA_CERTS"] = ctx.ca
        cmd = ["node", os.path.join(HERE, "peers", "node_register.js"), "--scope", SCOPE,
               "--regid", regid, "--key", key] + (["--ws"] if ws else [])
    if netns:
        cmd = ["ip", "netns", "exec", NS_C] + cmd
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, errtext = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, errtext = p.communicate()
    wall = time.monotonic() - t
    # communicate() reaped it; the rusage of all children so far is cumulative, so take deltas
    r = {"client": client, "ws": ws, "regid": regid, "wall_s": wall, "rc": p.returncode}
    if client == "us":
        r["ok"] = p.returncode == 0 and "assigned hub=" in out
        r["register_s"] = wall
    else:
        lines = [l for l in out.splitlines() if l.startswith("{")]
        j = json.loads(lines[-1]) if lines else {"ok": False, "error": (errtext or out)[-300:]}
        r.update(ok=j.get("ok", False), register_s=j.get("register_s"), error=j.get("error"))
    if not r["ok"]:
        log(f"{client} {'wss' if ws else 'mqtt'} {regid} failed: {r.get('error') or errtext[-300:]}")
    return r


def run_client_wait4(ctx, client, ws, regid, netns):
    # Same as run_client, but reaps with os.wait4 to get this process's own peak RSS.
    key = device_key(ctx.group_key, regid)
    env = dict(os.environ)
    if client == "us":
        token = subprocess.run([ctx.a.emu, "sas", "--scope", SCOPE, "--registration-id", regid,
                                "--key", key], check=True, capture_output=True, text=True).stdout.strip()
        cmd = [ctx.a.cdriver, "--uri", "localhost", "--scope", SCOPE, "--registration-id", regid,
               "--trusted-ca", ctx.ca, "--sas-token", token] + (["--ws"] if ws else [])
    elif client == "python":
        cmd = [ctx.a.py, os.path.join(HERE, "peers", "py_register.py"), "--scope", SCOPE,
               "--regid", regid, "--ca", ctx.ca, "--key", key] + (["--ws"] if ws else [])
    else:
        env["NODE_PATH"] = ctx.a.node_modules
        env["NODE_EXTRA_CA_CERTS"] = ctx.ca
        cmd = ["node", os.path.join(HERE, "peers", "node_register.js"), "--scope", SCOPE,
               "--regid", regid, "--key", key] + (["--ws"] if ws else [])
    if netns:
        cmd = ["ip", "netns", "exec", NS_C] + cmd
    # Peak RSS through GNU time: a child this Python process starts by vfork/fork inherits its
    # ~20 MB high-water mark into ru_maxrss; time's own child starts from time's small image.
    rss_file = os.path.join(ctx.work, "maxrss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
    outf = tempfile.TemporaryFile(mode="w+")
    errf = tempfile.TemporaryFile(mode="w+")
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=outf, stderr=errf, text=True, env=env)
    deadline = t + 90
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
        time.sleep(0.002)
    wall = time.monotonic() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    outf.seek(0)
    errf.seek(0)
    out, errtext = outf.read(), errf.read()
    try:
        maxrss = int(open(rss_file).read().split()[-1])
    except (OSError, ValueError, IndexError):
        maxrss = None
    r = {"client": client, "ws": ws, "regid": regid, "wall_s": wall, "rc": p.returncode,
         "maxrss_kb": maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}
    if client == "us":
        r["ok"] = p.returncode == 0 and "assigned hub=" in out
        r["register_s"] = wall
    else:
        lines = [l for l in out.splitlines() if l.startswith("{")]
        j = json.loads(lines[-1]) if lines else {"ok": False, "error": (errtext or out)[-300:]}
        r.update(ok=j.get("ok", False), register_s=j.get("register_s"), error=j.get("error"))
    if not r["ok"]:
        log(f"{client} {'wss' if ws else 'mqtt'} {regid} failed: {r.get('error') or errtext[-300:]}")
    return r


def timeline_of(path, regid):
    """Events of the first connection of regid: {packet/topic kind: t_ms} (first occurrence)."""
    if not os.path.exists(path):
        return None
    conns = []
    with open(path) as f:
        for line in f:
            c = json.loads(line)
            if c.get("regid") == regid:
                conns.append(c)
    if not conns:
        return None
    conns.sort(key=lambda c: c["conn"])
    ev = {}
    for e in conns[0]["events"]:
        name = e["packet"]
        topic = e.get("topic") or ""
        if name == "PUBLISH" and e["dir"] == "in":
            name = "REGISTER" if "iotdps-register" in topic else "POLL"
        elif name == "PUBLISH":
            name = "REPLY"
        ev.setdefault(f"{e['dir']}:{name}", e["t_ms"])
    return ev


CLIENTS = ("us", "python", "node")
# issue 14's outside measurement, quoted (see the report's section on the SDK's transport)
SDK_COMPARISON = [
    ("time not spent waiting for the server", "36.7–48.0 ms", "11.5–14.1 ms", "0.29"),
    ("time inside `dowork`", "39–52 ms", "5.5–8.5 ms", "0.16"),
    ("heap allocations / bytes (valgrind)", "240,804 / 8.95 MB", "5,297 / 0.27 MB", "0.02 / 0.03"),
    ("CPU", "0.10 s", "0.07–0.08 s", "0.71"),
    ("peak RSS of the process", "8.26–8.39 MB", "9.30–9.56 MB", "1.14"),
    ("stripped program, linked statically", "0.30 MB (+ OpenSSL shared)", "4.26 MB", ""),
]
LABEL = {"us": "prov_mqtt_transport (C driver)", "python": "Python azure-iot-device 2.14.0",
         "node": "Node azure-iot-provisioning-device-mqtt 1.8.1"}
SHORT = {"us": "us", "python": "Python", "node": "Node"}


# --- 1. round trips ----------------------------------------------------------------------------
def bench_round_trips(ctx, runs):
    res = {"delay_ms": [], "rtt": []}
    delay = 50
    for knob in ("delay_ms", "latency_ms"):
        tl = os.path.join(ctx.work, f"rt-{knob}.jsonl")
        log(f"1. round trips: emulator {knob}=50, no added network latency")
        flag = "--" + knob.replace("_", "-")
        with delaynet(0), emulator(ctx, netns=True, timeline=tl,
                                   extra=[flag, str(delay), "--retry-after", "1", "--polls", "0"]):
            run_client(ctx, "us", False, ctx.regid("warmup"))  # the emulator's first handshake is slow
            for ws in (False, True):
                for client in CLIENTS:
                    for _ in range(runs):
                        regid = ctx.regid(f"rtd-{client}-{'ws' if ws else 'mqtt'}")
                        r = run_client(ctx, client, ws, regid)
                        time.sleep(0.3)  # the connection's timeline line is written at close
                        ev = timeline_of(tl, regid)
                        if not (r["ok"] and ev and "in:REGISTER" in ev):
                            continue
                        res["delay_ms"].append({
                            "knob": knob, "client": client, "ws": ws,
                            "mqtt_waits_before_publish": round((ev["in:REGISTER"] - ev["in:CONNECT"]) / delay),
                            "t_connect_to_register_ms": ev["in:REGISTER"] - ev["in:CONNECT"],
                            "t_connect_to_subscribe_ms": ev["in:SUBSCRIBE"] - ev["in:CONNECT"],
                            "events": ev})
    one_way = 50
    rtt = 2 * one_way
    tl = os.path.join(ctx.work, "rt-rtt.jsonl")
    log(f"1. round trips: real RTT {rtt} ms (delaynet), emulator without delay")
    with delaynet(one_way), emulator(ctx, netns=True, timeline=tl,
                                     extra=["--retry-after", "1", "--polls", "0"]):
        run_client(ctx, "us", False, ctx.regid("warmup"))
        for ws in (False, True):
            for client in CLIENTS:
                for _ in range(runs):
                    regid = ctx.regid(f"rtr-{client}-{'ws' if ws else 'mqtt'}")
                    r = run_client(ctx, client, ws, regid)
                    time.sleep(0.3)
                    ev = timeline_of(tl, regid)
                    if not (r["ok"] and ev and "in:REGISTER" in ev):
                        continue
                    acc = ev["in:ACCEPT"]
                    res["rtt"].append({
                        "client": client, "ws": ws, "rtt_ms": rtt,
                        # the TCP handshake's round trip ends before ACCEPT (SYN, SYN-ACK; the ACK
                        # reaches the server 1.5 RTT after the client started): +1 / +2 below
                        "before_connect_sent": round((ev["in:CONNECT"] - acc) / rtt) + 1,
                        "mqtt_waits": round((ev["in:REGISTER"] - ev["in:CONNECT"]) / rtt),
                        "before_publish": round((ev["in:REGISTER"] - acc) / rtt) + 1,
                        "before_first_reply": round((ev["out:REPLY"] - acc) / rtt) + 2,
                        "subscribe_after_connect_ms": ev["in:SUBSCRIBE"] - ev["in:CONNECT"],
                        "events": ev})
    return res


# --- 2. latency --------------------------------------------------------------------------------
def bench_latency(ctx, runs, rtts, transports):
    out = []
    for rtt in rtts:
        log(f"2. latency: RTT {rtt} ms, {runs} runs per client and transport")
        with delaynet(rtt / 2), emulator(ctx, netns=True, extra=["--retry-after", "1", "--polls", "0"]):
            run_client(ctx, "us", False, ctx.regid("warmup"))
            for ws in transports:
                for i in range(runs):
                    for client in CLIENTS:  # interleaved so load changes hit all alike
                        regid = ctx.regid(f"lat-{client}")
                        r = run_client_wait4(ctx, client, ws, regid, netns=True)
                        r["rtt_ms"] = rtt
                        out.append(r)
    return out


# --- 3. setup ----------------------------------------------------------------------------------
def bench_setup(ctx, procs, reps):
    log(f"3. setup: {procs} processes x {reps} handles")
    rows = []
    for native in (False, True):
        for _ in range(procs if not native else max(1, procs // 2)):
            cmd = [ctx.a.bench, "setup", "--ca", ctx.ca, "--reps", str(reps)] + (["--native"] if native else [])
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            rows += [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    # which files does one run open? (the system trust store must not be read with a CA given)
    opened = {}
    for native in (False, True):
        f = os.path.join(ctx.work, f"strace-setup-{native}.txt")
        cmd = ["strace", "-f", "-qq", "-e", "trace=openat,open", "-o", f, ctx.a.bench, "setup",
               "--ca", ctx.ca, "--reps", "1"] + (["--native"] if native else [])
        subprocess.run(cmd, capture_output=True, timeout=60)
        text = open(f).read()
        hits = [l for l in text.splitlines() if re.search(r"/etc/ssl|ca-certificates|/usr/lib/ssl|\.pem|\.crt", l)
                and ctx.certs not in l]
        opened[native] = len(hits)
    return {"rows": rows, "trust_store_opens": opened}


# --- 4. idle dowork ----------------------------------------------------------------------------
def bench_idle(ctx, runs, loop_ms):
    log(f"4. idle dowork: {runs} runs of {loop_ms} ms per transport, and a syscall count")
    out = {"timing": [], "syscalls": []}
    with emulator(ctx, extra=["--retry-after", "3", "--polls", "0"]) as (_, mport, wport):
        for ws in (False, True):
            uri = f"localhost:{wport if ws else mport}"
            base = [ctx.a.bench, "idle", "--uri", uri, "--ca", ctx.ca, "--group-key", ctx.group_key,
                    "--scope", SCOPE] + (["--ws"] if ws else [])
            for _ in range(runs):
                p = subprocess.run(base + ["--ms", str(loop_ms)], capture_output=True, text=True, timeout=60)
                for l in p.stdout.splitlines():
                    if '"mode":"idle"' in l:
                        j = json.loads(l)
                        j["ws"] = ws
                        out["timing"].append(j)
            # syscalls of the calling thread: strace attached to that thread only, counted
            # between two getppid() markers the driver makes around the loop
            p = subprocess.Popen(base + ["--ms", str(loop_ms), "--wait-go"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            tid = json.loads(p.stdout.readline())["tid"]
            f = os.path.join(ctx.work, f"strace-idle-{ws}.txt")
            st = subprocess.Popen(["strace", "-qq", "-p", str(tid), "-o", f], stderr=subprocess.DEVNULL)
            time.sleep(0.7)
            p.stdin.write("go\n")
            p.stdin.flush()
            j = json.loads(p.stdout.readline())
            time.sleep(0.1)
            st.send_signal(signal.SIGINT)
            st.wait(10)
            p.wait(30)
            lines = open(f).read().splitlines()
            marks = [i for i, l in enumerate(lines) if l.startswith("getppid")]
            between = lines[marks[0] + 1:marks[1]] if len(marks) >= 2 else None
            out["syscalls"].append({"ws": ws, "calls": j["calls"], "ns_per_call_traced": j["ns_per_call"],
                                    "syscalls": None if between is None else len(between),
                                    "still_waiting": j["still_waiting"]})
    return out


# --- 5. fleet ----------------------------------------------------------------------------------
# descriptors the driver needs besides one per connection (stdio, epoll, eventfd, the runtime's)
FLEET_SPARE_FDS = 50


def bench_fleet(ctx, sizes, ws=False):
    out = []
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for asked in sizes:
        # one process cannot hold more sockets than its hard RLIMIT_NOFILE (not raisable here)
        n = min(asked, hard - FLEET_SPARE_FDS) if hard != resource.RLIM_INFINITY else asked
        log(f"5. fleet: {n} concurrent registrations ({'wss' if ws else 'mqtt'})")
        extra = ["--retry-after", "1", "--polls", "0", "--connect-timeout-ms", "120000"]
        with emulator(ctx, extra=extra, nofile=65536) as (emu, mport, wport):
            cpu0 = proc_cpu_s(emu.pid)
            load0 = load_now()
            cmd = [ctx.a.bench, "fleet", "--n", str(n), "--uri", f"localhost:{wport if ws else mport}",
                   "--ca", ctx.ca, "--group-key", ctx.group_key, "--scope", SCOPE] + (["--ws"] if ws else [])

            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                               preexec_fn=lambda: raise_nofile(65536))
            emu_cpu = proc_cpu_s(emu.pid) - cpu0
            emu_hwm = proc_hwm_kb(emu.pid)
            lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
            if not lines:
                log("fleet failed:", p.stderr[-500:])
                continue
            j = json.loads(lines[-1])
            j.update(emu_cpu_s=emu_cpu, emu_hwm_kb=emu_hwm, load_before=load0, load_after=load_now(),
                     asked=asked, nofile_hard=hard)
            out.append(j)
    return out


# --- 6. footprint ------------------------------------------------------------------------------
def w_file(w, path):
    """A committed write-up (what the figures led to), included as it is."""
    if os.path.exists(path):
        with open(path) as f:
            w(f.read().strip())
        w("")


def bench_output(path):
    """What another bench printed: its figures (the `JSON ` line) and the rest of its text."""
    text, rows = [], None
    with open(path) as f:
        for line in f:
            if line.startswith("JSON "):
                rows = json.loads(line[5:])
            else:
                text.append(line.rstrip("\n"))
    return {"text": "\n".join(text).strip(), "rows": rows}


def memory_added(mem):
    """Median KB the library adds at the peak, per transport (benches/memory.sh's rows)."""
    out = {}
    for t in ("mqtt", "ws"):
        rs = [r for tt, r in mem["rows"] if tt == t]
        if rs:
            out[t] = med([r["peak"]["rss_kb"] - r["before"]["rss_kb"] for r in rs])
    return out


MEMORY_PARTS = [("lib_text", "library text"), ("lib_ro", "library read-only data"), ("lib_data", "library data"),
                ("heap", "main heap"), ("arenas", "malloc arenas"), ("stacks", "thread stacks"),
                ("anon", "other anonymous"), ("other", "other files (libc, NSS)")]


def so_size(path):
    return os.path.getsize(path) if path and os.path.exists(path) else None


# --- report ------------------------------------------------------------------------------------
def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{nd}f}"


def plots(res, plot_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(plot_dir, exist_ok=True)
    made = []

    def save(fig, name):
        """Value axes start at zero (a bar chart's do already; box and line plots' do not)."""
        for ax in fig.axes:
            if ax.get_ylim()[0] > 0:
                ax.set_ylim(bottom=0)
        fig.tight_layout()
        fig.savefig(os.path.join(plot_dir, name), dpi=110)
        plt.close(fig)
        made.append(name)
    colors = {"us": "#2a7ab9", "python": "#e0a030", "node": "#5a9e4b"}

    rt = res.get("round_trips", {}).get("rtt", [])
    if rt:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        groups = [(c, ws) for ws in (False, True) for c in CLIENTS]
        xs = range(len(groups))
        pub = [med([r["before_publish"] for r in rt if (r["client"], r["ws"]) == g]) for g in groups]
        rep = [med([r["before_first_reply"] for r in rt if (r["client"], r["ws"]) == g]) for g in groups]
        ax.bar([x - 0.2 for x in xs], pub, 0.4, label="before the register publish",
               color=[colors[g[0]] for g in groups])
        ax.bar([x + 0.2 for x in xs], rep, 0.4, label="before the first reply", color=[colors[g[0]] for g in groups],
               alpha=0.45)
        ax.set_xticks(list(xs), [f"{SHORT[c]}\n{'WSS' if ws else 'MQTT'}" for c, ws in groups])
        ax.set_ylabel("sequential round trips")
        ax.set_title("Round trips (TCP+TLS+[WS]+MQTT), counted at 100 ms RTT")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "round-trips.png")

    lat = [r for r in res.get("latency", []) if r["ok"]]
    if lat:
        rtts = sorted({r["rtt_ms"] for r in lat})
        wss = sorted({r["ws"] for r in lat})
        fig, axes = plt.subplots(1, len(rtts) * len(wss), figsize=(3.3 * len(rtts) * len(wss), 3.6), squeeze=False)
        for k, (rtt, ws) in enumerate([(r, w) for r in rtts for w in wss]):
            ax = axes[0][k]
            data = [[r["register_s"] for r in lat if r["client"] == c and r["rtt_ms"] == rtt and r["ws"] == ws]
                    for c in CLIENTS]
            bp = ax.boxplot(data, patch_artist=True, widths=0.6)
            for patch, c in zip(bp["boxes"], CLIENTS):
                patch.set_facecolor(colors[c])
            ax.set_xticks([1, 2, 3], [SHORT[c] for c in CLIENTS])
            ax.set_title(f"{rtt:g} ms RTT, {'WSS' if ws else 'MQTT'}", fontsize=9)
            ax.set_ylabel("registration time (s)" if k == 0 else "")
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle("Registration time (retry-after 1, one poll)", fontsize=10)
        save(fig, "latency.png")

    fl = res.get("fleet", [])
    if fl:
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.3))
        for ws, style in ((False, "o-"), (True, "s--")):
            sel = [f for f in fl if bool(f.get("ws")) == ws]
            if not sel:
                continue
            ns = [f["n"] for f in sel]
            label = "WSS" if ws else "MQTT"
            axes[0].plot(ns, [f["vm_hwm_kb"] / 1024 for f in sel], style, color=colors["us"], label=label)
            axes[1].plot(ns, [(f["vm_hwm_kb"] - f["rss0_kb"]) / f["n"] for f in sel], style, color=colors["us"],
                         label=label)
            axes[2].plot(ns, [f["n"] / f["total_s"] for f in sel], style, color=colors["us"], label=label)
            axes[3].plot(ns, [f["max_threads"] for f in sel], style, color=colors["us"], label=label)
        axes[0].set_title("peak RSS (MB)", fontsize=9)
        axes[1].set_title("RSS per registration (KB)", fontsize=9)
        axes[1].axhline(25, color="red", ls="--", lw=1, label="goal 25 KB")
        axes[2].set_title("registrations / s", fontsize=9)
        axes[3].set_title("threads", fontsize=9)
        axes[3].set_ylim(0, max(f["max_threads"] for f in fl) + 2)
        for ax in axes:
            ax.set_xlabel("concurrent registrations")
            ax.set_xlim(left=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save(fig, "fleet.png")

    fp = res.get("footprint_rows", [])
    if fp:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, key, title in ((axes[0], "rss_mb", "peak RSS of one registration (MB)"),
                               (axes[1], "cpu_s", "CPU per registration (s)")):
            ax.bar([SHORT[r["client"]] for r in fp], [r[key] for r in fp], color=[colors[r["client"]] for r in fp])
            ax.set_title(title, fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        save(fig, "footprint.png")

    mem = res.get("memory")
    if mem and mem["rows"]:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ts = [t for t in ("mqtt", "ws") if any(tt == t for tt, _ in mem["rows"])]
        bottom = [0.0] * len(ts)
        for k, (part, label) in enumerate(MEMORY_PARTS):
            vals = [max(0.0, med([r["peak"][part + "_kb"] - r["before"][part + "_kb"]
                                  for tt, r in mem["rows"] if tt == t])) for t in ts]
            ax.bar(["MQTT/TLS" if t == "mqtt" else "MQTT/WSS" for t in ts], vals, 0.5, bottom=bottom,
                   label=label, color=plt.cm.tab10(k))
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.axhline(1024, color="red", ls="--", lw=1, label="goal 1 MB")
        ax.set_ylabel("KB added at the peak")
        ax.set_title("Resident memory the library adds to a C process (one registration)", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        save(fig, "memory.png")

    st = res.get("setup", {}).get("rows", [])
    if st:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        cats = [("trusted CA, cold", False, True), ("trusted CA, warm", False, False),
                ("system store, cold", True, True)]
        vals = []
        for _, native, cold in cats:
            vals.append(med([r["first_dowork_to_accept_ms"] for r in st
                             if r["native"] == native and (r["rep"] == 0) == cold]))
        ax.barh([c[0] for c in cats], vals, color=colors["us"])
        ax.axvline(3, color="red", ls="--", lw=1, label="goal 3 ms")
        ax.set_xlabel("first dowork -> TCP accept (ms, median)")
        ax.legend(fontsize=8)
        save(fig, "setup.png")
    return made


def report(res, a, made):
    L = []
    w = L.append
    rel = os.path.relpath(a.plots, os.path.dirname(os.path.abspath(a.out)))
    w("# Benchmarks")
    w("")
    w("Produced by `scripts/bench.sh`" + (" --smoke (debug builds, tiny counts: not figures to quote)" if a.smoke else "") +
      f" on {res['when']} at commit `{res['commit']}`.")
    w(f"Machine: {res['cpu']}, {os.cpu_count()} cores, {res['mem']}, Linux {platform.release()}. "
      f"The bench ran at nice {res.get('nice', 0)}. "
      f"Load average at start {res['load_start']}, at end {res['load_end']}: the 2 cores are shared "
      "with other work, so absolute times carry that noise; every comparison below ran in the same "
      "session, interleaved.")
    w("")
    w("Clients: **us** = `examples/c/prov_dev_sample.c` linked against `libprov_mqtt_transport.so` as "
      "the CMake package installs it (fat LTO, stripped); **Python** = `azure-iot-device` 2.14.0; **Node** = "
      "`azure-iot-provisioning-device` 1.9.1 + `azure-iot-provisioning-device-mqtt` 1.8.1 (the "
      "versions `dps-emulator/fidelity` pins). All use a symmetric key (group enrollment) and the "
      "emulator's root CA. The SDK's C transport is not in the package registries this machine can "
      "reach, so it was not built; its figures in the issue are quoted, not measured.")
    w("")

    # summary
    rows = []
    rt = res.get("round_trips")
    if rt and rt.get("rtt"):
        v = med([r["before_publish"] for r in rt["rtt"] if r["client"] == "us" and not r["ws"]])
        rows.append(("1", "round trips before the register publish (MQTT/TLS 1.3)", "3", f"{v:g}", v <= 3))
    st = res.get("setup")
    if st:
        cold = [r["first_dowork_to_accept_ms"] for r in st["rows"] if not r["native"] and r["rep"] == 0]
        v = med(cold)
        rows.append(("3", "first dowork → TCP connect, trusted CA, cold (median)", "≤ 3 ms", f"{v:.2f} ms (max {max(cold):.2f})", v <= 3))
        o = st["trust_store_opens"][False]
        rows.append(("3", "system trust store files opened with a trusted CA", "0", str(o), o == 0))
    idle = res.get("idle")
    if idle and idle["timing"]:
        v = med([r["ns_per_call"] for r in idle["timing"]])
        rows.append(("4", "idle dowork, ns per call (median)", "≤ 1000 ns", f"{v:.0f} ns", v <= 1000))
        sc = [r["syscalls"] for r in idle["syscalls"] if r["syscalls"] is not None]
        if sc:
            rows.append(("4", "idle dowork, syscalls per call", "0", str(max(sc)), max(sc) == 0))
    fl = res.get("fleet")
    if fl:
        for ws in (False, True):
            sel = [f for f in fl if bool(f.get("ws")) == ws]
            if not sel:
                continue
            ns = " / ".join(f"{f['n']:,}" for f in sel)
            t = "WSS" if ws else "MQTT"
            th = sorted({f["max_threads"] for f in sel})
            rows.append(("5", f"threads at {ns} concurrent registrations ({t})", "constant",
                         " / ".join(str(f["max_threads"]) for f in sel), len(th) == 1))
            per = [(f["vm_hwm_kb"] - f["rss0_kb"]) / f["n"] for f in sel]
            rows.append(("5", f"RSS per registration at {ns} ({t})", "linear",
                         " / ".join(f"{x:.1f} KB" for x in per), max(per) < 1.3 * min(per)))
    if res.get("so_size"):
        v = res["so_size"] / 1e6
        rows.append(("6", "installed .so (fat LTO, stripped)", "≤ 1.5 MB", f"{v:.2f} MB", v <= 1.5))
    us = [r for r in res.get("footprint_rows", []) if r["client"] == "us"]
    if us:
        rows.append(("6", "peak RSS, one registration, C driver", "≤ 8.3 MB", f"{us[0]['rss_mb']:.2f} MB", us[0]["rss_mb"] <= 8.3))
        rows.append(("6", "CPU per registration, C driver process", "≤ 0.05 s", f"{us[0]['cpu_s']:.3f} s", us[0]["cpu_s"] <= 0.05))
    if res.get("static_size"):
        v = res["static_size"] / 1e6
        rows.append(("6", "stripped C sample linked statically against the installed .a", "≤ 1.6 MB", f"{v:.2f} MB", v <= 1.6))
    for ws in (False, True):
        big = [f for f in (fl or []) if f["n"] >= 10000 and bool(f.get("ws")) == ws]
        if big:
            per = [(f["vm_hwm_kb"] - f["rss0_kb"]) / f["n"] for f in big]
            ns = " / ".join(f"{f['n']:,}" for f in big)
            rows.append(("5", f"RSS per registration at {ns} concurrent ({'WSS' if ws else 'MQTT'})",
                         "≤ 25 KB", " / ".join(f"{x:.1f} KB" for x in per), max(per) <= 25))
    mem = res.get("memory")
    if mem and mem["rows"]:
        added = memory_added(mem)
        rows.append(("7", "resident memory the library adds, one registration, MQTT/TLS / WSS (median)", "≤ 1024 KB",
                     " / ".join(f"{v:.0f} KB" for v in added.values()), max(added.values()) <= 1024))
    wk = [r for out in res.get("wakeups", []) if out["rows"] for r in out["rows"] if not r.get("ws")]
    one = [r for r in wk if r["phase"] == "waiting" and r["n"] == 1]
    idle = [r for r in wk if r["phase"] != "waiting"]
    if one and idle and "wakeups" in one[0]:
        w1, wi = one[0]["wakeups"], max(r["wakeups"] for r in idle)
        rows.append(("8", f"I/O thread wake-ups in {one[0]['window_s']:.0f} s: 1 registration waiting / idle after destroy",
                     "keep-alive only / ≤ 2 (one-off: the closes' 2 s grace, the page release at 3 s)",
                     f"{w1} / {wi}", w1 <= 4 and wi <= 2))
    if rows:
        rows.sort(key=lambda r: r[0])
        w("## Summary against the goals of issues 6 and 14")
        w("")
        w("| § | figure | goal | measured | met |")
        w("|---|---|---|---|---|")
        for sec, what, goal, got, ok in rows:
            w(f"| {sec} | {what} | {goal} | {got} | {'yes' if ok else '**no**'} |")
        w("")
    w("## Against the SDK's own transport (measured outside this repository, quoted)")
    w("")
    w("The SDK's C transport cannot be built here (not in the registries this machine reaches). This table "
      "was measured from the outside, side by side in one run, with the real SDK provisioning LL client in "
      "the same process either with the SDK's transport or with this library (both processes also contain "
      "the LL client, c-shared-utility and OpenSSL, which the SDK needs anyway), before issue 14's changes; "
      "what the library adds to a process now is section 7.")
    w("")
    w("| per registration (MQTT, symmetric key, 2 s of server waits) | SDK transport | this library | ratio |")
    w("|---|---|---|---|")
    for row in SDK_COMPARISON:
        w("| " + " | ".join(row) + " |")
    w("")

    # 1
    if rt:
        w("## 1. Sequential round trips before the register publish")
        w("")
        w("**Method A — emulator packet delay of 50 ms, no network latency.** MQTT waits before the "
          "publish = (REGISTER in − CONNECT in) / 50 ms, from the emulator timeline. Two emulator knobs: "
          "`delay_ms` (the issue's: the connection sleeps inside its send and reads nothing meanwhile) "
          "and `latency_ms` (added for this bench: the packet waits in a queue, the connection keeps "
          "reading and answering, like a slow link).")
        w("")
        w("| client | transport | MQTT waits, `delay_ms` | MQTT waits, `latency_ms` | CONNECT→SUBSCRIBE, `latency_ms` (ms) | CONNECT→REGISTER, `latency_ms` (ms) |")
        w("|---|---|---|---|---|---|")
        for ws in (False, True):
            for c in CLIENTS:
                rows = {k: [r for r in rt["delay_ms"] if r["client"] == c and r["ws"] == ws
                            and r.get("knob", "delay_ms") == k] for k in ("delay_ms", "latency_ms")}
                if not any(rows.values()):
                    continue
                waits = {k: (f"{med([r['mqtt_waits_before_publish'] for r in v]):g}" if v else "–")
                         for k, v in rows.items()}
                lat = rows["latency_ms"]
                w(f"| {SHORT[c]} | {'WSS' if ws else 'MQTT'} | {waits['delay_ms']} | **{waits['latency_ms']}** "
                  f"| {fmt(med([r['t_connect_to_subscribe_ms'] for r in lat]), 1)} "
                  f"| {fmt(med([r['t_connect_to_register_ms'] for r in lat]), 1)} |")
        w("")
        w("With `delay_ms` every client shows 2: our SUBSCRIBE, sent back to back with CONNECT, sits in "
          "the emulator's buffer while it sleeps before CONNACK, and is answered one delay later, as if "
          "we had waited. With `latency_ms` the pipelining shows: our SUBSCRIBE arrives with CONNECT and "
          "its SUBACK travels with CONNACK (1 wait); the peers send SUBSCRIBE only after CONNACK (2). "
          "Either way the delay applies to MQTT packets only: TCP, TLS and the WebSocket upgrade are not "
          "counted. Method B counts them.")
        w("")
        w("**Method B — real RTT (the honest count).** Client and emulator in two network namespaces; "
          "every IP packet in either direction is delayed 50 ms (RTT 100 ms), TCP SYN and TLS records "
          "included; the emulator adds no delay. This kernel has no netem (`CONFIG_NET_SCH_NETEM` is not "
          "set), so `benches/delaynet.py` does what `netem delay` would: a TUN device in each namespace "
          "and a forwarder that holds every packet for the one-way delay. From the timeline (ACCEPT is "
          "when the client's final handshake ACK arrives, 1.5 RTT after its SYN): round trips before the "
          "publish leaves the client = (REGISTER in − ACCEPT)/RTT + 1; before the first reply arrives = "
          "(reply out − ACCEPT)/RTT + 2; before CONNECT = (CONNECT in − ACCEPT)/RTT + 1 (TCP + TLS [+ WebSocket upgrade]).")
        w("")
        w("| client | transport | before CONNECT (TCP+TLS[+WS]) | MQTT waits | **before publish** | before first reply | SUBSCRIBE − CONNECT at server (ms) |")
        w("|---|---|---|---|---|---|---|")
        for ws in (False, True):
            for c in CLIENTS:
                rows = [r for r in rt["rtt"] if r["client"] == c and r["ws"] == ws]
                if rows:
                    w(f"| {SHORT[c]} | {'WSS' if ws else 'MQTT'} | {med([r['before_connect_sent'] for r in rows]):g} "
                      f"| {med([r['mqtt_waits'] for r in rows]):g} | **{med([r['before_publish'] for r in rows]):g}** "
                      f"| {med([r['before_first_reply'] for r in rows]):g} "
                      f"| {fmt(med([r['subscribe_after_connect_ms'] for r in rows]))} |")
        w("")
        w("Goal: 3 before the publish over MQTT/TLS 1.3 (TCP 1 + TLS 1 + one MQTT wait, for SUBACK, "
          "because CONNECT and SUBSCRIBE leave together); WSS adds the HTTP upgrade round trip. The peers "
          "wait for CONNACK before they SUBSCRIBE (SUBSCRIBE arrives one RTT after CONNECT): 4 for Node "
          "on MQTT, as the issue says of the SDK's C transport. Python needs one more because "
          "`azure-iot-device` negotiates TLS 1.2 (two handshake round trips; the emulator logs "
          "`TLSv1_2` for it, `TLSv1_3` for us and Node). Node over WSS sometimes needs one more "
          "before CONNECT (4 here, 3 in an earlier run): MQTT.js over `ws` writes CONNECT as a dozen "
          "tiny WebSocket frames, and Nagle holds the tail until the first ones are acknowledged "
          "(seen in a packet trace of `benches/delaynet.py` with `DELAYNET_LOG=FILE`).")
        if "round-trips.png" in made:
            w("")
            w(f"![round trips]({rel}/round-trips.png)")
        w("")

    # 2
    lat = res.get("latency")
    if lat:
        w("## 2. Registration wall time under real latency")
        w("")
        w("delaynet namespaces (as above) at 20 ms and 100 ms RTT; emulator retry-after 1, one poll "
          "(register → 202 → wait 1 s → poll → 200). *register* is measured inside the client "
          "(Python/Node: around `register()`; us: the whole C process, so it includes process start). "
          "*process* is the whole process wall time (interpreter start and imports included). "
          f"{res['latency_runs']} runs per cell, interleaved; median [min – max].")
        w("")
        w("| RTT | transport | client | ok | register median (s) | register min – max | process median (s) |")
        w("|---|---|---|---|---|---|---|")
        for rtt in sorted({r["rtt_ms"] for r in lat}):
            for ws in sorted({r["ws"] for r in lat}):
                for c in CLIENTS:
                    rows = [r for r in lat if r["client"] == c and r["rtt_ms"] == rtt and r["ws"] == ws]
                    good = [r for r in rows if r["ok"]]
                    if not rows:
                        continue
                    s = spread([r["register_s"] for r in good])
                    w(f"| {rtt:g} ms | {'WSS' if ws else 'MQTT'} | {SHORT[c]} | {len(good)}/{len(rows)} "
                      f"| {fmt(med([r['register_s'] for r in good]), 3)} | {fmt(s[0], 3)} – {fmt(s[3], 3)} "
                      f"| {fmt(med([r['wall_s'] for r in good]), 3)} |")
        if "latency.png" in made:
            w("")
            w(f"![latency]({rel}/latency.png)")
        w("")

    # 3
    st = res.get("setup")
    if st:
        rows = st["rows"]
        w("## 3. Set-up cost: open / first `dowork` to the TCP connect")
        w("")
        w("`bench setup` (examples/bench.rs): a local TCP listener stamps the accept; the handle is "
          "created with `uri = localhost:<port>` (name resolution included), `trusted_cert` set (or not: "
          "*system store*), opened, and `dowork` called once. *Cold* is the first handle of a fresh "
          "process (starts the I/O thread, builds the TLS configuration); *warm* is a later handle in the "
          "same process. *CPU* is the process's user+system time from `create` to the accept (all threads): the work done, whatever the scheduler does on a loaded machine. Median [max] over the runs.")
        w("")
        w("| case | runs | create+trusted_cert+open (ms) | first dowork returns (ms) | first dowork → TCP accept (ms) | CPU, create → accept (ms) |")
        w("|---|---|---|---|---|---|")
        for label, native, cold in (("trusted CA, cold", False, True), ("trusted CA, warm", False, False),
                                    ("system store, cold", True, True), ("system store, warm", True, False)):
            sel = [r for r in rows if r["native"] == native and (r["rep"] == 0) == cold]
            if not sel:
                continue
            g = lambda k: f"{fmt(med([r[k] for r in sel]), 3)} [{fmt(max(r[k] for r in sel), 3)}]"
            w(f"| {label} | {len(sel)} | {g('create_to_open_ms')} | {g('dowork_ms')} | {g('first_dowork_to_accept_ms')} | {g('cpu_ms')} |")
        w("")
        o = st["trust_store_opens"]
        w(f"Files of the system trust store opened (strace -f, openat): with a trusted CA **{o[False]}**, "
          f"without one {o[True]}. Goal: ≤ 3 ms to the TCP connect, and the system store untouched when "
          "a CA is given (`src/net/tls.rs` reads it lazily, once per process, only without one). "
          "Without a CA the store is read on the I/O runtime's blocking pool while TCP connects, so "
          "neither the first `dowork` nor the connect waits for it (the CPU column then does not "
          "include it; the TLS handshake starts when it is read). Before this bench it was read "
          "inside the first `dowork`: 4–53 ms with the caller blocked.")
        if "setup.png" in made:
            w("")
            w(f"![setup]({rel}/setup.png)")
        w("")

    # 4
    idle = res.get("idle")
    if idle:
        w("## 4. Idle `dowork` cost")
        w("")
        w("`bench idle`: a registration against the emulator (retry-after 3) gets its 202; while it waits "
          "for the poll, the calling thread runs `dowork` in a tight loop. Syscalls: `strace -p <tid>` on "
          "the calling thread only, counting calls between two `getppid()` markers around the loop.")
        w("")
        w("| transport | runs | ns per call (median) | min – max | calls in the traced loop | syscalls in it | syscalls per call |")
        w("|---|---|---|---|---|---|---|")
        for ws in (False, True):
            t = [r for r in idle["timing"] if r["ws"] == ws]
            s = [r for r in idle["syscalls"] if r["ws"] == ws]
            if not t:
                continue
            sp = spread([r["ns_per_call"] for r in t])
            sc = s[0] if s else {}
            per = (sc["syscalls"] / sc["calls"]) if sc.get("syscalls") is not None else None
            w(f"| {'WSS' if ws else 'MQTT'} | {len(t)} | {fmt(med([r['ns_per_call'] for r in t]))} | {fmt(sp[0])} – {fmt(sp[3])} "
              f"| {sc.get('calls', '–')} | {sc.get('syscalls', '–')} | {fmt(per, 6) if per is not None else '–'} |")
        w("")
        w("Goal: ≤ 1 µs and 0 syscalls per call. `dowork` takes the handle's lock, drains a "
          "non-blocking channel, reads the monotonic clock (vDSO) and checks the session's timers.")
        w("")

    # 5
    fl = res.get("fleet")
    if fl:
        w("## 5. Fleet: concurrent registrations in one process")
        w("")
        w("`bench fleet --n N`: one thread creates N handles (symmetric keys), opens them all at once and "
          "drives them the way N LL clients would (one `dowork` sweep over all handles per millisecond, "
          "register on CONNECTED, poll after 202); the emulator is a separate process (retry-after 1, one "
          "poll, so every registration takes ≥ 1 s by design). RLIMIT_NOFILE raised in both (65536, or the hard limit). "
          "RSS/registration = (peak RSS − RSS before the first handle) / N. CPU is user+system of the "
          "driver process: the transport's I/O thread (TCP, TLS, MQTT for every connection) and the "
          "calling thread (the driver's `dowork` sweeps over every handle each millisecond, which a "
          "gateway would also pay).")
        w("")
        w("| transport | N | ok | total (s) | registrations/s | p50 / p99 done (s) | peak RSS (MB) | RSS/registration (KB) | threads before → peak | CPU s/registration (all) | of which I/O thread | emulator CPU (s) | emulator peak RSS (MB) | load before → after |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for f in fl:
            n = f"{f['n']:,}" + (f" ({f['asked']:,} asked)" if f.get("asked", f["n"]) != f["n"] else "")
            w(f"| {'WSS' if f.get('ws') else 'MQTT'} | {n} | {f['ok']} | {fmt(f['total_s'], 2)} | {fmt(f['n'] / f['total_s'])} "
              f"| {fmt(f['done_p50_ms'] / 1000, 2)} / {fmt(f['done_p99_ms'] / 1000, 2)} "
              f"| {fmt(f['vm_hwm_kb'] / 1024)} | {fmt((f['vm_hwm_kb'] - f['rss0_kb']) / f['n'])} "
              f"| {f['threads0']} → {f['max_threads']} | {fmt(f['cpu_s'] / f['n'], 5)} | {fmt(f.get('io_cpu_s', float('nan')) / f['n'], 5)} | {fmt(f['emu_cpu_s'], 2)} "
              f"| {fmt(f['emu_hwm_kb'] / 1024)} | {f['load_before']} → {f['load_after']} |")
        w("")
        capped = [f for f in fl if f.get("asked", f["n"]) != f["n"]]
        if capped:
            w(f"{capped[0]['asked']:,} concurrent connections need that many descriptors in each process, "
              f"and this machine's hard RLIMIT_NOFILE is {capped[0]['nofile_hard']:,} (a container that may "
              f"not raise it): the run holds {capped[0]['n']:,}, leaving {FLEET_SPARE_FDS} for the "
              "processes' other descriptors.")
            w("")
        w("Goals: constant threads (one shared I/O thread plus at most two name-resolution threads, "
          "whatever N), linear memory, ≤ 25 KB of resident memory per registration at 10,000 and 20,000 "
          "(issue 14). On 2 shared cores the emulator (TLS server side for every "
          "device) competes with the driver for CPU; its CPU is shown next to ours.")
        if "fleet.png" in made:
            w("")
            w(f"![fleet]({rel}/fleet.png)")
        w("")

    # 6
    w("## 6. Footprint")
    w("")
    size = res.get("so_size")
    if size:
        w(f"`libprov_mqtt_transport.so` as the CMake package installs it (cargo's `dist` profile: fat LTO; "
          f"stripped at install): **{size / 1e6:.2f} MB** ({size:,} bytes). Goal ≤ 1.5 MB.")
        w("")
    size = res.get("static_size")
    if size:
        w(f"`examples/c/prov_dev_sample.c` linked statically against the installed `.a` (with the .pc's "
          f"`Libs.private`), stripped: **{size / 1e6:.2f} MB** ({size:,} bytes). Goal ≤ 1.6 MB.")
        w("")
    w_file(w, os.path.join(HERE, "size-experiments.md"))
    fp = res.get("footprint_rows")
    if fp:
        w("One registration per process, median over the latency runs at 20 ms RTT over MQTT. Peak RSS "
          "is GNU time's %M (max resident set of the process, started by `ip netns exec`, whose own "
          "2.5 MB is below every client's); CPU is user+system from wait4, including `time` and `ip` "
          "(about 2 ms) and, for the peers, interpreter start-up:")
        w("")
        w("| client | runs | peak RSS (MB) | CPU per registration (s) |")
        w("|---|---|---|---|")
        for r in fp:
            w(f"| {LABEL[r['client']]} | {r['runs']} | {fmt(r['rss_mb'], 2)} | {fmt(r['cpu_s'], 3)} |")
        w("")
        w("Goals: peak RSS ≤ 8.3 MB (the SDK's C process), CPU ≤ 0.05 s per registration.")
        if "footprint.png" in made:
            w("")
            w(f"![footprint]({rel}/footprint.png)")
        w("")
    mem = res.get("memory")
    if mem:
        w("## 7. Memory the library adds to a C process registering one device")
        w("")
        w("`benches/memory.sh` (benches/memory.c: examples/c/prov_dev_sample.c with /proc/self/smaps read "
          "before the first `create`, every millisecond during the registration, and 4 s after "
          "`destroy`, when the library has handed its pages back), against the installed library of section 6; localhost, retry-after 1, one poll; KB. "
          "*Added* = peak RSS (the largest sample) − the process's RSS before `create`.")
        w("")
        w("```")
        w(mem["text"])
        w("```")
        if "memory.png" in made:
            w("")
            w(f"![memory]({rel}/memory.png)")
        w("")
        w_file(w, os.path.join(HERE, "memory-notes.md"))
    wk = res.get("wakeups")
    if wk:
        w("## 8. Idle cost: the I/O thread's wake-ups")
        w("")
        w("`benches/wakeups.py` (`bench wakeups`): N registrations waiting out a retry-after of 300 s with "
          "`dowork` on every handle each millisecond, then every handle destroyed; the I/O thread's "
          "wake-ups (its `epoll_wait` calls), context switches (/proc/self/task/TID/status) and syscalls "
          "(`strace -c -p TID`) over each window. Goal: it wakes only for real timers (keep-alive, reply "
          "timeouts), and between registrations only for the one-off timers of the last destroy: the end "
          "of the closes' 2 s grace and, 3 s after it, the page release (src/net/release.rs).")
        w("")
        for out in wk:
            w("```")
            w(out["text"])
            w("```")
            w("")
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes) and not a.smoke:
        w(open(notes).read().strip())
        w("")
    w("## Reproduce")
    w("")
    w("    scripts/bench.sh           # as root; ~20 min once built; writes BENCHMARKS.md and docs/bench/*.png")
    w("    scripts/bench.sh --smoke   # debug builds, tiny counts, about 70 s once built (CI)")
    w("    BENCH_ONLY=5,7 scripts/bench.sh   # some sections only (1-6 run.py's, 7 memory, 8 wake-ups)")
    w("")
    w("What each section runs (scripts/bench.sh builds and installs everything first, then calls these):")
    w("")
    w("| § | command |")
    w("|---|---|")
    w("| 1–6 | `benches/run.py --only N --emu … --bench target/release/examples/bench --cdriver … --so … --static-sample …` |")
    w("| 5, one size | `target/release/examples/bench fleet --n N --uri localhost:PORT --ca root-ca.pem --group-key K --scope S [--ws]` against `dps-emulator serve --retry-after 1 --polls 0` |")
    w("| 6, sizes | `cmake -S cmake -B build/cmake && cmake --build build/cmake && cmake --install build/cmake --prefix P`, then `stat` of P/lib/libprov_mqtt_transport.so and of the static sample, stripped |")
    w("| 7 | `MEMORY_LIB=P/lib/libprov_mqtt_transport.so benches/memory.sh` |")
    w("| 8 | `benches/wakeups.py [--ws] --emu target/release/dps-emulator --bench target/release/examples/bench --n 1,1000 --window-s 60` |")
    w("")
    w("The raw results go to `$CARGO_TARGET_DIR/bench-out/results.json`; `benches/run.py --from-json "
      "FILE` renders the report again from them.")
    w("")
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emu", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--cdriver", required=True)
    ap.add_argument("--so", help="the installed, stripped shared library (its size)")
    ap.add_argument("--static-sample", help="the stripped C sample linked statically (its size)")
    ap.add_argument("--memory", help="benches/memory.sh's output (section 7)")
    ap.add_argument("--wakeups", action="append", default=[], help="benches/wakeups.py's output (section 8)")
    ap.add_argument("--py", required=True)
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plots", required=True)
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="1,2,3,4,5,6")
    ap.add_argument("--from-json", help="render the report from saved results, run nothing")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            res = json.load(f)
        st = res.get("setup")
        if st:
            st["trust_store_opens"] = {k in (True, "true", "True"): v for k, v in st["trust_store_opens"].items()}
        made = plots(res, a.plots)
        report(res, a, made)
        log(f"wrote {a.out} and {len(made)} plots in {a.plots} from {a.from_json}")
        return
    only = set(a.only.split(","))
    ctx = Ctx(a)
    res = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "mem": f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB RAM",
        "load_start": load_now(),
        "nice": os.nice(0),
    }
    smoke = a.smoke
    if "1" in only:
        res["round_trips"] = bench_round_trips(ctx, runs=1 if smoke else 3)
    if "2" in only or "6" in only:
        runs = 1 if smoke else 10
        res["latency_runs"] = runs
        res["latency"] = bench_latency(ctx, runs, rtts=[20] if smoke else [20, 100],
                                       transports=[False] if smoke else [False, True])
        fp = []
        for c in CLIENTS:
            rows = [r for r in res["latency"] if r["client"] == c and r["rtt_ms"] == 20 and not r["ws"] and r["ok"]]
            if rows:
                fp.append({"client": c, "runs": len(rows), "rss_mb": med([r["maxrss_kb"] for r in rows]) / 1024,
                           "cpu_s": med([r["cpu_s"] for r in rows])})
        res["footprint_rows"] = fp
    if "3" in only:
        res["setup"] = bench_setup(ctx, procs=2 if smoke else 20, reps=2 if smoke else 5)
    if "4" in only:
        res["idle"] = bench_idle(ctx, runs=1 if smoke else 5, loop_ms=200 if smoke else 1000)
    if "5" in only:
        res["fleet"] = bench_fleet(ctx, [50] if smoke else [1000, 10000, 20000])
        res["fleet"] += bench_fleet(ctx, [50] if smoke else [1000, 10000, 20000], ws=True)
    res["so_size"] = so_size(a.so)
    res["static_size"] = so_size(a.static_sample)
    if a.memory:
        res["memory"] = bench_output(a.memory)
    res["wakeups"] = [bench_output(f) for f in a.wakeups]
    res["load_end"] = load_now()
    made = plots(res, a.plots)
    report(res, a, made)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if os.environ.get("BENCH_KEEP"):
        log(f"kept the certificates, timelines and emulator logs in {ctx.work}")
    else:
        shutil.rmtree(ctx.work, ignore_errors=True)
    log(f"wrote {a.out} and {len(made)} plots in {a.plots}")


if __name__ == "__main__":
    main()
