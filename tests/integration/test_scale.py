"""Many concurrent connections through one gateway: all held at once, all relaying, memory per
connection pair bounded, and every descriptor given back afterwards."""
import os
import resource
import subprocess
import sys
import threading
import time

import pytest

from conftest import BULK, ROOT, assert_spliced, connect, free_ports, roundtrip

WANTED = 50000
# Connections are spread over a range of ports on both sides: the kernel has about 28,000
# ephemeral ports per destination address and port.
NPORTS = 4
BATCH = 500


def raise_nofile(want):
    """Raises this process's descriptor limit (inherited by the gateway and the echo server)
    towards want: above the hard limit only with CAP_SYS_RESOURCE. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


# Both relay paths: on the splice path a few of the held connections also carry bulk flows.
BULK_CONNS = 4


@pytest.mark.parametrize("variant", ["splice-2w", "copy-2w"], indirect=True)
def test_many_concurrent_connections(gateway, tmp_path, variant):
    limit = raise_nofile(2 * WANTED + 1000)
    # The gateway holds two descriptors per connection pair.
    n = min(WANTED, (limit - 1000) // 2)
    if n < WANTED:
        print(f"descriptor limit {limit}: {n} connections instead of {WANTED} "
              "(raising the hard limit needs CAP_SYS_RESOURCE)")
    front, back = free_ports(NPORTS), free_ports(NPORTS)
    echo = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "integration",
                                                          "echo_server.py")] + [str(p) for p in back],
                            stdout=subprocess.PIPE, text=True)
    socks = []
    try:
        assert echo.stdout.readline().strip() == "ready"
        g = gateway("--map", f"tcp:127.0.0.1:{front[0]}-{front[-1]}=127.0.0.1:{back[0]}-{back[-1]}"
                    ",name=many")
        base_fds, base_rss = g.fds(), g.rss_kib()
        for start in range(0, n, BATCH):
            batch = [connect(front[i % NPORTS], timeout=30) for i in range(start, min(n, start + BATCH))]
            for i, s in enumerate(batch, start):
                s.sendall(b"%08d" % i)
            for i, s in enumerate(batch, start):
                assert s.recv(8) == b"%08d" % i
            socks += batch
        r = g.relay_stats()
        assert r["open"] == n
        assert all(k > 0 for k in r["per_worker"]), r
        per_pair = (g.rss_kib() - base_rss) / n
        print(f"{n} connection pairs open: {per_pair:.2f} KiB of gateway memory each "
              f"(RSS growth), {g.fds() - base_fds} descriptors more")
        # All of them relay again while all are held.
        for i, s in enumerate(socks):
            s.sendall(b"%08d" % (n - i))
        for i, s in enumerate(socks):
            assert s.recv(8) == b"%08d" % (n - i)
        # A few carry bulk flows at once, among all the others held.
        data = os.urandom(BULK)
        results = []
        threads = [threading.Thread(target=lambda s=s: results.append(roundtrip(s, data) == data))
                   for s in socks[::n // BULK_CONNS][:BULK_CONNS]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == [True] * BULK_CONNS
        if not sanitized(g.proc.pid):
            assert per_pair <= 2.0
        for s in socks:
            s.close()
        socks = []
        deadline = time.time() + 60
        while g.relay_stats()["open"] > 0:
            assert time.time() < deadline, "connections never closed"
            time.sleep(0.2)
        st = assert_spliced(g, "many", variant, more_than=BULK)
        assert st["accepted"] == n and st["open"] == 0
        assert st["bytes to targets"] == st["bytes to clients"] == 16 * n + BULK_CONNS * BULK
        r = g.relay_stats()
        assert g.fds() == base_fds + 2 * r["spare"]
    finally:
        for s in socks:
            s.close()
        echo.kill()
        echo.wait()
