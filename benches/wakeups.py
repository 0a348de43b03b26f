#!/usr/bin/env python3
"""Idle cost (issue 14, goal 4): the I/O thread's wake-ups and syscalls while N registrations wait
out a retry-after, and while idle between registrations (every handle destroyed).

    benches/wakeups.py --emu DPS_EMULATOR --bench BENCH [--n 1,1000] [--window-s 60] [--ws]

`bench wakeups` (examples/bench.rs) opens N registrations against the emulator (retry-after longer
than the window, so every one is waiting), then for each window prints the I/O thread's id and
waits; this script attaches `strace -c` to that one thread, lets the window run, and prints the
thread's context switches (voluntary: it slept and was woken; involuntary: preempted) and its
syscalls. Loopback only. Prints figures; never fails because a figure is large.
"""
import argparse, base64, os, re, resource, shutil, signal, subprocess, sys, tempfile, time, json


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def strace_total(path):
    """Total calls from `strace -c` output."""
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(?:\S+\s+)?(\d+)\s+(?:\d+\s+)?total", text, re.M)
    if m:
        return int(m.group(1))
    m = re.search(r"^-+.*\n\s*\S+\s+\S+\s+\S+\s+(\d+)\s+.*total", text, re.M)
    return int(m.group(1)) if m else 0


def epoll_waits(text):
    for line in text.splitlines():
        f = line.split()
        if f and f[-1] == "epoll_wait":
            return int(f[3])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emu", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--n", default="1,1000")
    ap.add_argument("--window-s", type=float, default=60)
    ap.add_argument("--ws", action="store_true")
    a = ap.parse_args()
    raise_nofile()
    work = tempfile.mkdtemp(prefix="wakeups-")
    certs = os.path.join(work, "certs")
    subprocess.run([a.emu, "certs", "--out", certs], check=True, capture_output=True)
    group_key = base64.b64encode(os.urandom(32)).decode()
    # above 300 the transport reads retry-after as 1 (the SDK's rule): 300, for windows up to ~4 min
    retry = 300
    emu = subprocess.Popen([a.emu, "serve", "--certs", certs, "--group-key", group_key, "--retry-after", str(retry),
                            "--polls", "1", "--mqtt-port", "0", "--ws-port", "0"], stdout=subprocess.PIPE,
                           stderr=open(os.path.join(work, "emu.err"), "w"), text=True)
    m = re.search(r"mqtt=\S+:(\d+) ws=\S+:(\d+)", emu.stdout.readline())
    if not m:
        sys.exit("wakeups: the emulator did not start")
    port = m.group(2) if a.ws else m.group(1)
    results = []
    try:
        for n in [int(x) for x in a.n.split(",")]:
            cmd = [a.bench, "wakeups", "--uri", f"localhost:{port}", "--ca", os.path.join(certs, "root-ca.pem"),
                   "--group-key", group_key, "--n", str(n), "--ms", str(int(a.window_s * 1000)), "--wait-go"]
            if a.ws:
                cmd.append("--ws")
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for line in p.stdout:
                r = json.loads(line)
                if r["mode"] == "wakeups-ready":
                    out = os.path.join(work, f"strace-{n}-{r['phase']}")
                    st = subprocess.Popen(["strace", "-qq", "-c", "-p", str(r["io_tid"]), "-o", out],
                                          stderr=subprocess.DEVNULL)
                    time.sleep(0.5)  # attached
                    p.stdin.write("go\n")
                    p.stdin.flush()
                elif r["mode"] == "wakeups":
                    st.send_signal(signal.SIGINT)
                    st.wait()
                    p.stdin.write("go\n")  # the bench goes on only now (destroy is not the window's)
                    p.stdin.flush()
                    r["syscalls"] = strace_total(out)
                    r["strace"] = open(out).read() if os.path.exists(out) else ""
                    r["wakeups"] = epoll_waits(r["strace"])
                    results.append(r)
            if p.wait() != 0:
                sys.exit(f"wakeups: bench failed for n={n}")
    finally:
        emu.terminate()
        emu.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"== I/O thread wake-ups over {a.window_s:g} s ({'MQTT/WSS' if a.ws else 'MQTT/TLS'})")
    print("   wake-ups = the event loop's epoll_wait calls (each returns once per wake-up); context switches are")
    print("   counted under strace, whose syscall stops add some; CPU ticks are 1/100 s of the thread's CPU time")
    print(f"   {'connections':>11} {'phase':<8} {'wake-ups':>8} {'per s':>6} {'syscalls':>8} {'ctx switches':>12} {'CPU ticks':>9}")
    for r in results:
        n = r["n"] if r["phase"] == "waiting" else 0
        wakes = epoll_waits(r["strace"])
        print(f"   {n:>11} {r['phase']:<8} {wakes:>8} {wakes / r['window_s']:>6.2f} {r['syscalls']:>8} "
              f"{r['voluntary'] + r['involuntary']:>12} {r['cpu_ticks']:>9}")
    for r in results:
        calls = [l.split()[-1] + " " + l.split()[3] for l in r["strace"].splitlines()
                 if re.match(r"^\s*\d", l) and "total" not in l]
        print(f"   syscalls, {r['n']} {r['phase']}: " + ", ".join(calls))
    print("JSON " + json.dumps([{k: v for k, v in r.items() if k != "strace"} for r in results]))


if __name__ == "__main__":
    main()
