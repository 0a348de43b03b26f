"""A two-namespace network with a fixed one-way delay, for benchmarks under real latency.

This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set), so the delay is added in
user space: a TUN device in each namespace, and this process forwards every IP packet from one
to the other after `delay_ms` (FIFO per direction, so nothing is reordered). Every packet is
delayed, TCP SYN/SYN-ACK and TLS records included, exactly like `tc qdisc add ... netem delay`
on both veth ends: RTT = 2 x delay_ms.

    client namespace  NS_C  10.77.0.2  (dev pmtbc0)  --delay-->  server namespace  NS_S  10.77.1.1  (dev pmtbs0)

In the client namespace `localhost` resolves to 10.77.1.1 (`ip netns exec` bind-mounts
/etc/netns/NS_C/hosts over /etc/hosts), so clients keep the emulator's certificate name.

    python3 delaynet.py up DELAY_MS     # creates the namespaces, forwards until SIGTERM, then removes them
"""
import fcntl
import heapq
import os
import select
import signal
import struct
import subprocess
import sys
import time

NS_C, NS_S = "pmtb-c", "pmtb-s"
DEV_C, DEV_S = "pmtbc0", "pmtbs0"
IP_C, IP_S = "10.77.0.2", "10.77.1.1"
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def teardown():
    for ns in (NS_C, NS_S):
        sh("ip", "netns", "del", ns, check=False)
    for f in (f"/etc/netns/{NS_C}/hosts",):
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(f"/etc/netns/{NS_C}")
    except OSError:
        pass


def setup():
    teardown()
    fc, fs = tun(DEV_C), tun(DEV_S)
    for ns, dev, me, peer in ((NS_C, DEV_C, IP_C, IP_S), (NS_S, DEV_S, IP_S, IP_C)):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", dev, "netns", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{me}/32", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "route", "add", f"{peer}/32", "dev", dev)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
    os.makedirs(f"/etc/netns/{NS_C}", exist_ok=True)
    with open(f"/etc/netns/{NS_C}/hosts", "w") as f:
        f.write(f"{IP_S} localhost\n")
    return fc, fs


def describe(pkt):
    """'c>s SYN ACK len=..' for a TCP/IPv4 packet (DELAYNET_LOG=FILE)."""
    if len(pkt) < 40 or pkt[0] >> 4 != 4 or pkt[9] != 6:
        return f"len={len(pkt)}"
    ihl = (pkt[0] & 15) * 4
    tcp = pkt[ihl:]
    flags = tcp[13]
    names = [n for bit, n in ((2, "SYN"), (16, "ACK"), (1, "FIN"), (4, "RST"), (8, "PSH")) if flags & bit]
    data = len(pkt) - ihl - (tcp[12] >> 4) * 4
    sport, dport = struct.unpack("!HH", tcp[:4])
    return f"{sport}>{dport} {'/'.join(names)} data={data}"


def forward(fc, fs, delay_s):
    peer = {fc: fs, fs: fc}
    trace = open(os.environ["DELAYNET_LOG"], "w") if os.environ.get("DELAYNET_LOG") else None
    t0 = time.monotonic()
    queue = []  # (due, seq, out_fd, packet)
    seq = 0
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, pkt = heapq.heappop(queue)
            try:
                os.write(out, pkt)
            except OSError:
                pass
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        ready, _, _ = select.select([fc, fs], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                seq += 1
                if trace:
                    trace.write(f"{(now - t0) * 1000:10.2f} {'c>s' if fd == fc else 's>c'} {describe(pkt)}\n")
                    trace.flush()
                heapq.heappush(queue, (now + delay_s, seq, peer[fd], pkt))


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "up":
        sys.exit(__doc__)
    delay_s = float(sys.argv[2]) / 1000.0
    fc, fs = setup()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"delaynet up {NS_C}={IP_C} {NS_S}={IP_S} one-way={delay_s * 1000:g}ms", flush=True)
    try:
        forward(fc, fs, delay_s)
    finally:
        teardown()


if __name__ == "__main__":
    main()
