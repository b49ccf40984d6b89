"""UDP mappings through the real binary over loopback sockets."""
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import BINARY, assert_no_sanitizer_report, free_ports

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nethelper.py")

# Every test here runs with one worker and with several: a client's datagrams must keep reaching
# the one worker that holds its session.
pytestmark = pytest.mark.parametrize("variant", ["1w", "3w"], indirect=True)


def udp_client(host="127.0.0.1", family=socket.AF_INET, source=None, timeout=3):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    return s


def test_echo(gateway, udp_echo):
    srv = udp_echo()
    port = free_ports()
    # 2 s: a client held up for a moment on a busy machine keeps its one session.
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port},idle-timeout=2s")
    c = udp_client()
    for i in range(20):
        c.sendto(b"dgram %d" % i, ("127.0.0.1", port))
        d, a = c.recvfrom(100)
        assert d == b"dgram %d" % i and a == ("127.0.0.1", port)
    # One session: the target saw one peer for all of them.
    assert len(srv.peers) == 1
    g.wait_log("idle for 2000ms (idle-timeout)")
    line = [l for l in g.log().splitlines() if "ended after" in l][0]
    assert "20 datagrams (" in line and "to target, 20 datagrams" in line


def test_many_concurrent_clients(gateway, udp_echo):
    srv = udp_echo()
    port = free_ports()
    # 3 s: 100 client threads in one Python process; none may wait long enough between two of
    # its datagrams, on a busy machine, for its session to end.
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port},idle-timeout=3s")
    idle_fds = g.fds()
    n = 100
    clients = [udp_client() for _ in range(n)]
    errors = []

    def run(i, c):
        try:
            for j in range(10):
                msg = b"client %d msg %d" % (i, j)
                c.sendto(msg, ("127.0.0.1", port))
                d, _ = c.recvfrom(100)
                if d != msg:
                    errors.append((i, j, d))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(srv.peers) == n  # one session, so one socket towards the target, per client
    # Idle expiry ends every session, and their sockets are closed.
    g.wait_log("idle for 3000ms (idle-timeout)", n, timeout=15)
    fds = g.fds()
    assert fds <= idle_fds, fds
    for c in clients:
        c.close()


def test_reply_from_the_address_the_client_used(gateway, udp_echo):
    """A wildcard listener answers from the local address each client sent to."""
    srv = udp_echo()
    port = free_ports(host="0.0.0.0")
    gateway("--map", f"udp:0.0.0.0:{port}=127.0.0.1:{srv.port}")
    for local in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        c = udp_client()
        c.sendto(b"x", (local, port))
        d, a = c.recvfrom(10)
        assert a == (local, port), a
        c.close()


def test_ipv6_and_v6_to_v4(gateway, udp_echo):
    srv4 = udp_echo()
    srv6 = udp_echo(host="::1", family=socket.AF_INET6)
    p1 = free_ports(host="::1", family=socket.AF_INET6)
    p2 = free_ports(host="::", family=socket.AF_INET6)
    gateway("--map", f"udp:[::1]:{p1}=[::1]:{srv6.port}",
            "--map", f"udp:[::]:{p2}=127.0.0.1:{srv4.port}")
    for port, srv in ((p1, srv6), (p2, srv4)):
        c = udp_client(family=socket.AF_INET6)
        c.sendto(b"six", ("::1", port))
        d, a = c.recvfrom(10)
        assert d == b"six" and a[0] == "::1" and a[1] == port
        c.close()


def test_port_range(gateway, udp_echo):
    srv = udp_echo()
    ports = free_ports(4)
    gateway("--map", f"udp:127.0.0.1:{ports[0]}-{ports[-1]}=127.0.0.1:{srv.port}")
    for p in ports:
        c = udp_client()
        c.sendto(b"%d" % p, ("127.0.0.1", p))
        assert c.recvfrom(10)[0] == b"%d" % p
        c.close()


def test_allow_deny(gateway, udp_echo):
    srv = udp_echo()
    port = free_ports(host="0.0.0.0")
    g = gateway("--map", f"udp:0.0.0.0:{port}=127.0.0.1:{srv.port},allow=127.0.0.0/30,deny=127.0.0.2")
    ok = udp_client(source="127.0.0.1")
    ok.sendto(b"a", ("127.0.0.1", port))
    assert ok.recvfrom(10)[0] == b"a"
    bad = udp_client(source="127.0.0.2", timeout=0.5)
    bad.sendto(b"b", ("127.0.0.1", port))
    try:
        bad.recvfrom(10)
        raise AssertionError("a denied client got an answer")
    except socket.timeout:
        pass
    g.wait_log("udp dropped datagram from 127.0.0.2:")
    assert len(srv.peers) == 1


def test_max_sessions_evicts_the_oldest(gateway, udp_echo, variant):
    if variant.workers != 1:
        pytest.skip("which session is evicted is exact with one worker; see the next test")
    srv = udp_echo()
    port = free_ports()
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port},max-sessions=3")
    clients = [udp_client() for _ in range(4)]
    for c in clients:
        c.sendto(b"hi", ("127.0.0.1", port))
        assert c.recvfrom(10)[0] == b"hi"
        time.sleep(0.05)
    g.wait_log("evicted: max-sessions (3) reached")
    # The first client's session was the one idle longest.
    evicted = [l for l in g.log().splitlines() if "evicted" in l][0]
    assert f"udp 127.0.0.1:{clients[0].getsockname()[1]} ->" in evicted
    # It gets a new session when it comes back.
    clients[0].sendto(b"back", ("127.0.0.1", port))
    assert clients[0].recvfrom(10)[0] == b"back"


def test_max_sessions_across_workers(gateway, udp_echo, variant):
    """max-sessions bounds the sessions of all workers together."""
    if variant.workers == 1:
        pytest.skip("for several workers")
    srv = udp_echo()
    port = free_ports()
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port},max-sessions=3,name=u")
    clients = [udp_client(timeout=0.5) for _ in range(12)]
    answered = 0
    unanswered = []
    for c in clients:
        c.sendto(b"hi", ("127.0.0.1", port))
        try:
            answered += c.recvfrom(10)[0] == b"hi"
        except socket.timeout:
            unanswered.append(c)
        assert g.map_stats("u")["open"] <= 3
    st = g.map_stats("u")
    assert st["open"] == 3
    # Each new client beyond 3 either evicted an idle session on its worker, or (its worker
    # having none) was dropped and counted.
    assert st["evicted"] + st["refused by limits"] == 12 - 3
    # Every client not dropped is answered: on a machine busy with other tests, maybe later
    # than the 0.5 s each waited above.
    want = 12 - st["refused by limits"]
    deadline = time.time() + 5
    while answered < want and unanswered and time.time() < deadline:
        ready, _, _ = select.select(unanswered, [], [], deadline - time.time())
        for c in ready:
            answered += c.recvfrom(10)[0] == b"hi"
            unanswered.remove(c)
    assert answered == want
    assert st["accepted"] == answered


def test_icmp_errors_do_not_kill_the_listener(gateway, udp_echo):
    dead = free_ports()
    port = free_ports()
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{dead},idle-timeout=300ms")
    c = udp_client(timeout=0.3)
    for _ in range(5):
        c.sendto(b"anyone?", ("127.0.0.1", port))
        time.sleep(0.05)
    g.wait_log("ICMP errors: idle for 300ms")
    line = [l for l in g.log().splitlines() if "ended after" in l][0]
    assert " 0 ICMP errors" not in line
    # The target comes up on that port: the same mapping now works.
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", dead))
    c.sendto(b"now?", ("127.0.0.1", port))
    d, a = srv.recvfrom(10)
    srv.sendto(b"yes", a)
    assert c.recvfrom(10)[0] == b"yes"
    srv.close()
    assert g.proc.poll() is None


def test_large_datagrams(gateway, udp_echo):
    srv = udp_echo()
    port = free_ports()
    gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port}")
    c = udp_client()
    for size in (0, 1, 1400, 9000, 65507):
        payload = os.urandom(size)
        c.sendto(payload, ("127.0.0.1", port))
        assert c.recvfrom(70000)[0] == payload


def test_reload_keeps_udp_sessions(gateway, udp_echo):
    """Sessions of an unchanged mapping survive a reload that adds and removes another."""
    srv, other = udp_echo(), udp_echo()
    p1, p2 = free_ports(), free_ports()
    conf = f"[map u]\nproto = udp\nlisten = 127.0.0.1:{p1}\ntarget = 127.0.0.1:{srv.port}\n"
    g = gateway(config=conf)
    c = udp_client()
    c.sendto(b"1", ("127.0.0.1", p1))
    assert c.recvfrom(10)[0] == b"1"
    out = g.reload(conf + f"[map v]\nproto = udp\nlisten = 127.0.0.1:{p2}\n"
                          f"target = 127.0.0.1:{other.port}\n")
    assert "1 mappings added, 0 changed, 0 removed, 1 unchanged" in out
    c.sendto(b"2", ("127.0.0.1", p2))
    assert c.recvfrom(10)[0] == b"2"
    out = g.reload(conf)
    assert "1 removed, 1 unchanged" in out
    g.wait_log("its mapping was removed or moved")  # v's session ended with its socket
    c.sendto(b"3", ("127.0.0.1", p1))
    assert c.recvfrom(10)[0] == b"3"
    assert len(srv.peers) == 1  # the same session (one socket towards the target) throughout
    assert f"udp 127.0.0.1:{c.getsockname()[1]} -> 127.0.0.1:{srv.port} ended" not in g.log()


def test_burst_keeps_datagram_boundaries(gateway, udp_echo):
    """A burst of equal-sized datagrams (which portgate sends on with segmentation offload) and
    of mixed sizes arrives as the same datagrams, each whole, none merged or split."""
    srv = udp_echo()
    port = free_ports()
    gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.port}")
    c = udp_client(timeout=2)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sizes = [1000] * 150 + [1, 1472, 1472, 300, 300, 300, 9000, 9000] * 5
    sent = {}
    for i, size in enumerate(sizes):
        head = b"%06d:" % i
        payload = (head + os.urandom(size))[:size] if size > len(head) else os.urandom(size)
        sent[payload] = i
        c.sendto(payload, ("127.0.0.1", port))
    got = []
    try:
        while len(got) < len(sizes):
            got.append(c.recvfrom(70000)[0])
    except socket.timeout:
        pass
    assert len(got) >= 0.95 * len(sizes), len(got)  # loopback: no loss expected, allow a little
    for d in got:
        assert d in sent, (len(d), d[:8])  # each arrived whole, exactly as sent


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2 for a network namespace of its own")
def test_segmentation_refused_for_one_batch_only(tmp_path, variant):
    """Equal datagrams leave as one GSO send, unless they are longer than the path's MTU: the
    kernel then refuses the send (EMSGSIZE; EINVAL on older kernels). That batch must go
    datagram by datagram, which the kernel can fragment, and offload stay on for the next.
    In a namespace whose loopback has a 1,280-byte MTU, bursts of 32 datagrams of 1,400 bytes
    are queued while the gateway is stopped, so that each reaches it as one batch."""
    ns = f"pgmtu{os.getpid()}"
    sh = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)
    sh("ip", "netns", "add", ns)
    procs = []
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up", "mtu", "1280")
        echo_port, port = free_ports(2)
        echo = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, HELPER, "udp-echo",
                                 "127.0.0.1", str(echo_port)], stdout=subprocess.PIPE, text=True)
        procs.append(echo)
        assert echo.stdout.readline().strip() == "ready"
        conf = tmp_path / "portgate.conf"
        conf.write_text(f"[gateway]\nworkers = {variant.workers}\nadmin = off\n"
                        f"admin-socket = off\n[map big]\nproto = udp\n"
                        f"listen = 127.0.0.1:{port}\ntarget = 127.0.0.1:{echo_port}\n")
        log = tmp_path / "portgate.log"
        with open(log, "w") as logf:
            gw = subprocess.Popen(["ip", "netns", "exec", ns, BINARY, "run", "-c", str(conf)],
                                  stdout=logf, stderr=logf)
        procs.append(gw)
        deadline = time.time() + 10
        while "configuration applied" not in log.read_text():
            assert time.time() < deadline and gw.poll() is None, log.read_text()
            time.sleep(0.05)
        for size in (1400, 1400, 500):
            gw.send_signal(signal.SIGSTOP)
            client = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, HELPER,
                                       "udp-burst", "127.0.0.1", str(port), str(size), "32"],
                                      stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            gw.send_signal(signal.SIGCONT)
            out, _ = client.communicate(timeout=30)
            assert int(out) == 32, (size, out, log.read_text())
            time.sleep(1.1)  # past the one-a-second limit of the log line
        text = log.read_text()
        # Each oversized batch was refused and resent: offload was tried again for the second.
        assert text.count("segmentation offload refused for a batch") >= 2, text
        assert "sending datagram by datagram" not in text, text
        gw.send_signal(signal.SIGTERM)
        assert_no_sanitizer_report(gw.wait(15), log.read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_eviction_flood_is_logged_once_a_second(gateway, variant):
    """10,000 clients, one datagram each, through a mapping of 100 sessions: every new client
    evicts the session idle the longest (or, on a worker with none, is dropped). The log says so
    at most once a second per worker and reason, with how many it did not say, rather than a
    line per datagram."""
    # The target answers nothing: an answer to a session the gateway has just evicted would go
    # to that session's port, which a test running beside this one may have taken since.
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    port = free_ports()
    g = gateway("--map", f"udp:127.0.0.1:{port}=127.0.0.1:{srv.getsockname()[1]},"
                "max-sessions=100,name=flood")
    start = time.time()
    for i in range(10000):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((f"127.1.{i // 256}.{i % 256}", 0))  # 10,000 client addresses on loopback
            s.sendto(b"x", ("127.0.0.1", port))
    # The gateway is done when its counts stop moving. (Datagrams may be lost when the
    # listener's buffer overflows while it makes sessions, more so in a sanitizer build: UDP may
    # drop.)
    deadline = time.time() + 30
    st, last = g.map_stats("flood"), None
    while st != last and time.time() < deadline:
        time.sleep(0.5)
        st, last = g.map_stats("flood"), st
    elapsed = time.time() - start
    assert st["evicted"] >= 3000, st  # thousands of clients evicted someone
    log = g.log()
    evictions = log.count("evicted: max-sessions (100) reached")
    assert evictions <= (elapsed + 2) * variant.workers, (evictions, elapsed)
    assert "more evictions not logged" in log
    srv.close()
