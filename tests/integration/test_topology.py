"""Three hosts in network namespaces: a client outside, the gateway with two interfaces, and a
device inside that the outside cannot route to. The outside reaches the device only through a
mapping, for TCP and UDP, over IPv4 and IPv6: not directly, and not the device's other services
(ssh on TCP 22, snmp on UDP 161, which no mapping forwards) through any of the gateway's
addresses. Every "cannot reach" has a positive control in the same test: the same probe, from
the same namespace, reaching a service where one is reachable, so a probe that fails for its
own reasons cannot pass for a wall.

    client (pgc)              gateway (pgg)                 device (pgd)
    198.51.100.2  ---------- 198.51.100.1 | 192.0.2.1 ---------- 192.0.2.10
    2001:db8:1::2            2001:db8:1::1 | 2001:db8:2::1        2001:db8:2::10

The gateway does not forward packets (ip_forward = 0): only portgate carries traffic across.

The device also runs two encoders: VLC 3 serving an H.264 clip over RTSP (192.0.2.10:8554, RTP
over UDP only), and GStreamer's RTSP server (192.0.2.10:8556, UDP or interleaved TCP, Digest
authentication). Players outside (ffprobe, GStreamer's rtspsrc) must decode frames through the
rtsp mappings, and a plain TCP forward of the same port must fail, as it does on a router.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import BINARY, assert_no_sanitizer_report, ffprobe_frames, vlc_command

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nethelper.py")
PY = sys.executable

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="topology tests need root and iproute2 (ip netns) to build network namespaces")


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class Topology:
    def __init__(self):
        tag = str(os.getpid() % 100000)
        self.c, self.g, self.d = f"pgc{tag}", f"pgg{tag}", f"pgd{tag}"
        self.procs = []

    def ns(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def up(self):
        for n in (self.c, self.g, self.d):
            sh("ip", "netns", "add", n)
            self.ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "pgc0", "netns", self.c, "type", "veth", "peer", "name", "pgge",
           "netns", self.g)
        sh("ip", "link", "add", "pgd0", "netns", self.d, "type", "veth", "peer", "name", "pggi",
           "netns", self.g)
        for ns, dev, addrs in ((self.c, "pgc0", ["198.51.100.2/24", "2001:db8:1::2/64"]),
                               (self.g, "pgge", ["198.51.100.1/24", "2001:db8:1::1/64"]),
                               (self.g, "pggi", ["192.0.2.1/24", "2001:db8:2::1/64"]),
                               (self.d, "pgd0", ["192.0.2.10/24", "2001:db8:2::10/64"])):
            for a in addrs:
                extra = ["nodad"] if ":" in a else []
                self.ns(ns, "ip", "addr", "add", a, "dev", dev, *extra)
            self.ns(ns, "ip", "link", "set", dev, "up")
        for v in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
            self.ns(self.g, "sysctl", "-qw", v)
        # The client even knows a route to the inside through the gateway, and the device one
        # back: if anything but portgate carried packets across, the direct tests would pass.
        self.ns(self.c, "ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
        self.ns(self.c, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:1::1")
        self.ns(self.d, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        self.ns(self.d, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1")

    def start(self, ns, *cmd, wait_ready=True, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(cmd), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, **kw)
        self.procs.append(p)
        if wait_ready:
            line = p.stdout.readline()
            assert line.strip() == "ready", line
        return p

    def down(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for n in (self.c, self.g, self.d):
            sh("ip", "netns", "del", n, check=False)


# The device's ports that no mapping forwards (its ssh and snmp), and a port free on every
# address of the gateway, where a test starts a service to show that a probe can get there.
OTHER = {"tcp-client": 22, "udp-client": 161}
CONTROL_PORT = 9000
OUTSIDE = {4: "198.51.100.1", 6: "2001:db8:1::1"}
INSIDE = {4: "192.0.2.1", 6: "2001:db8:2::1"}
DEVICE = {4: "192.0.2.10", 6: "2001:db8:2::10"}

RTSP_TOOLS = all(shutil.which(t) for t in ("cvlc", "ffmpeg", "ffprobe", "gst-launch-1.0"))


@pytest.fixture(scope="module")
def topo(tmp_path_factory, request):
    t = Topology()
    try:
        t.up()
        for host in ("192.0.2.10", "2001:db8:2::10"):
            t.start(t.d, PY, HELPER, "tcp-echo", host, "80")
            t.start(t.d, PY, HELPER, "udp-echo", host, "5000")
            # The device's other services, which no mapping forwards.
            t.start(t.d, PY, HELPER, "tcp-echo", host, str(OTHER["tcp-client"]))
            t.start(t.d, PY, HELPER, "udp-echo", host, str(OTHER["udp-client"]))
        if RTSP_TOOLS:
            clip = request.getfixturevalue("clip")
            t.start(t.d, *vlc_command(clip, "192.0.2.10", 8554), wait_ready=False)
            t.ns(t.d, PY, HELPER, "wait-tcp", "192.0.2.10", "8554")
            t.start(t.d, PY, HELPER, "gst-rtsp", "192.0.2.10", "8556", "admin", "secret")
            t.start(t.d, PY, HELPER, "gst-rtsp", "2001:db8:2::10", "8557")
        log = tmp_path_factory.mktemp("topo") / "portgate.log"
        logf = open(log, "w")
        gw = subprocess.Popen(
            ["ip", "netns", "exec", t.g, BINARY, "run",
             "--map", "tcp:198.51.100.1:8080=192.0.2.10:80,name=web4",
             "--map", "udp:198.51.100.1:5000=192.0.2.10:5000,name=udp4",
             "--map", "tcp:[2001:db8:1::1]:8080=[2001:db8:2::10]:80,name=web6",
             "--map", "udp:[::]:5000=[2001:db8:2::10]:5000,name=udp6",
             "--map", "tcp:[2001:db8:1::1]:8081=192.0.2.10:80,name=web6to4",
             "--map", "rtsp:198.51.100.1:554=192.0.2.10:8554,rtp-ports=30000-30099,name=enc4",
             "--map", "rtsp:[2001:db8:1::1]:554=192.0.2.10:8554,rtp-ports=30100-30199,name=enc6",
             "--map", "rtsp:198.51.100.1:8556=192.0.2.10:8556,rtp-ports=30200-30299,name=gst",
             "--map", "rtsp:198.51.100.1:8557=[2001:db8:2::10]:8557,rtp-ports=30300-30399,"
                      "name=gst6",
             "--map", "tcp:198.51.100.1:8554=192.0.2.10:8554,name=plain"],
            stdout=logf, stderr=logf)
        t.procs.append(gw)
        deadline = time.time() + 10
        while "configuration applied" not in log.read_text() and time.time() < deadline:
            time.sleep(0.05)
        t.log = log
        yield t
        # Stop it as an operator would, so sanitizer builds report leaks, and fail on a report.
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait(20)
        assert_no_sanitizer_report(rc, log.read_text())
    finally:
        t.down()


def client(t, mode, host, port, msg):
    return t.ns(t.c, PY, HELPER, mode, host, str(port), msg, check=False)


def probes(t, ns, todo):
    """Runs the probes [(mode, host, port)] from namespace ns at once (each waits up to 3 s
    for an answer that does not come); returns their results in order. A probe's message is
    its own address, so a result can only be its own echo."""
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, PY, HELPER, mode, host, str(port),
                               f"{mode} {host} {port}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for mode, host, port in todo]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=30)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def answered(r, mode, host, port):
    return r.returncode == 0 and r.stdout.strip() == f"{mode} {host} {port}"


@contextlib.contextmanager
def serving(t, ns, mode, hosts, port):
    """Echo servers for the probes of mode (tcp-client, udp-client) on hosts:port in namespace
    ns, for the block."""
    server = mode.replace("client", "echo")
    started = [t.start(ns, PY, HELPER, server, h, str(port)) for h in hosts]
    try:
        yield
    finally:
        for p in started:
            p.kill()
            p.wait()
            t.procs.remove(p)


@pytest.mark.parametrize("mode,host,port", [
    ("tcp-client", "198.51.100.1", 8080),
    ("udp-client", "198.51.100.1", 5000),
    ("tcp-client", "2001:db8:1::1", 8080),
    ("udp-client", "2001:db8:1::1", 5000),
    ("tcp-client", "2001:db8:1::1", 8081),
])
def test_outside_reaches_device_through_mapping(topo, mode, host, port):
    r = client(topo, mode, host, port, f"via gateway {host} {port}")
    assert r.returncode == 0, r.stderr + topo.log.read_text()
    assert r.stdout.strip() == f"via gateway {host} {port}"


@pytest.mark.parametrize("mode,host,port", [
    ("tcp-client", "192.0.2.10", 80),
    ("udp-client", "192.0.2.10", 5000),
    ("tcp-client", "2001:db8:2::10", 80),
    ("udp-client", "2001:db8:2::10", 5000),
    ("tcp-client", "198.51.100.1", 80),     # not mapped
    ("udp-client", "198.51.100.1", 5001),   # not mapped
])
def test_outside_cannot_reach_device_directly(topo, mode, host, port):
    # Positive control: the same probe from the same namespace reaches a service on the
    # gateway's outside address of the same family.
    near = OUTSIDE[6 if ":" in host else 4]
    with serving(topo, topo.g, mode, [near], CONTROL_PORT):
        r = client(topo, mode, near, CONTROL_PORT, "control")
    assert r.returncode == 0 and r.stdout.strip() == "control", r.stderr
    r = client(topo, mode, host, port, "direct")
    assert r.returncode != 0, r.stdout


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mode", ["tcp-client", "udp-client"])
def test_device_other_ports_unreachable_through_gateway(topo, mode, family):
    """The device's other services (no mapping forwards them) are reachable neither on the
    device's address nor through the gateway's outside or inside addresses, on the same port.
    Controls: the service answers the same probe on the inside (from the gateway), and the
    same probe from the outside reaches a service on each of the gateway's addresses."""
    port, gw = OTHER[mode], [OUTSIDE[family], INSIDE[family]]
    (inside,) = probes(topo, topo.g, [(mode, DEVICE[family], port)])
    assert answered(inside, mode, DEVICE[family], port), inside.stderr
    with serving(topo, topo.g, mode, gw, CONTROL_PORT):
        todo = [(mode, h, CONTROL_PORT) for h in gw] + [(mode, h, port)
                                                         for h in gw + [DEVICE[family]]]
        results = probes(topo, topo.c, todo)
    for (m, h, p), r in zip(todo, results):
        if p == CONTROL_PORT:
            assert answered(r, m, h, p), (h, p, r.stdout, r.stderr)
        else:
            assert r.returncode != 0 and not r.stdout.strip(), (h, p, r.stdout)


def test_device_sees_the_gateway_not_the_client(topo):
    r = client(topo, "tcp-client", "198.51.100.1", 8080, "who")
    assert r.returncode == 0
    log = topo.log.read_text()
    assert "map web4: tcp 198.51.100.2:" in log and "-> 192.0.2.10:80 ended" in log


# ---- RTSP: an encoder inside, players outside ----

rtsp = pytest.mark.skipif(not RTSP_TOOLS, reason="needs vlc-bin, ffmpeg and GStreamer")


def outside(t):
    return ("ip", "netns", "exec", t.c)


def rtp_sockets(t, lo, hi):
    """The gateway's UDP sockets bound in [lo, hi]."""
    out = t.ns(t.g, "ss", "-Huan").stdout
    ports = [int(m[1]) for m in re.finditer(r"\S+:(\d+)\s+\S+\s*$", out, re.M)]
    return [p for p in ports if lo <= p <= hi]


def wait_no_rtp_sockets(t, lo, hi, timeout=10):
    deadline = time.time() + timeout
    while rtp_sockets(t, lo, hi):
        assert time.time() < deadline, rtp_sockets(t, lo, hi)
        time.sleep(0.1)


@rtsp
def test_plain_forward_breaks_rtsp_over_udp(topo):
    """The problem the rtsp mappings solve: VLC sends RTP to the gateway's inside address,
    where nothing listens, and leaks its own address in its answers."""
    # Positive control: the same ffprobe, with the same arguments from the same namespace,
    # decodes the same encoder through the rtsp mapping. ffprobe_frames() says 0 for any
    # failure, its own included: without this, a broken player would pass the test.
    assert ffprobe_frames("rtsp://198.51.100.1/live", "udp", prefix=outside(topo),
                          timeout=20) >= 25
    wait_no_rtp_sockets(topo, 30000, 30099)
    assert ffprobe_frames("rtsp://198.51.100.1:8554/live", "udp", prefix=outside(topo),
                          timeout=20) == 0


@rtsp
@pytest.mark.parametrize("url,lo", [("rtsp://198.51.100.1/live", 30000),
                                    ("rtsp://[2001:db8:1::1]/live", 30100)])
def test_vlc_over_udp_through_the_gateway(topo, url, lo):
    assert ffprobe_frames(url, "udp", prefix=outside(topo)) >= 25
    # TEARDOWN frees the ports.
    wait_no_rtp_sockets(topo, lo, lo + 99)


@rtsp
def test_two_players_at_once(topo):
    procs = [subprocess.Popen(list(outside(topo)) + [
        "ffprobe", "-v", "error", "-rtsp_transport", "udp", "-count_frames", "-select_streams",
        "v", "-show_entries", "stream=nb_read_frames", "-read_intervals", "%+3",
        "rtsp://198.51.100.1/live"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    counts = [int(re.search(r"nb_read_frames=(\d+)", o)[1]) for o in outs]
    assert min(counts) >= 10, counts
    wait_no_rtp_sockets(topo, 30000, 30099)


@rtsp
@pytest.mark.parametrize("transport,lo", [("tcp", None), ("udp", 30200)])
def test_gstreamer_server_with_digest(topo, transport, lo):
    """Interleaved TCP passes through; UDP is relayed; Digest (computed by the client over the
    URL it used) still verifies at the device."""
    url = "rtsp://admin:secret@198.51.100.1:8556/test"
    # The first is the second's positive control: the same arguments, but the password.
    assert ffprobe_frames(url, transport, prefix=outside(topo)) >= 25
    assert ffprobe_frames(url.replace("secret", "wrong"), transport, prefix=outside(topo)) == 0
    if lo is not None:
        wait_no_rtp_sockets(topo, lo, lo + 99)


def gst_frames(t, url, transport="udp", extra=()):
    """Whether GStreamer's rtspsrc, outside, gets 50 H.264 frames from url."""
    r = t.ns(t.c, "timeout", "25", "gst-launch-1.0", "rtspsrc", f"location={url}",
             f"protocols={transport}", *extra, "!", "rtph264depay", "!", "h264parse", "!",
             "fakesink", "num-buffers=50", check=False)
    # The sink ends the pipeline (EOS) once 50 frames came through. rtspsrc sometimes reports
    # an error while it tears down after that, which says nothing about the relay.
    return "Got EOS from element \"pipeline0\"" in r.stdout


@rtsp
@pytest.mark.parametrize("url,lo", [
    ("rtsp://[2001:db8:1::1]:554/live", 30100),   # an IPv6 player, the IPv4 VLC encoder
    ("rtsp://198.51.100.1:8557/test", 30300),     # an IPv4 player, an IPv6 GStreamer encoder
])
def test_player_of_the_other_family_over_udp(topo, url, lo):
    """A player opens its RTP sockets for the family of the SDP's c= lines: they must name the
    family of the address the player used, whatever the device's. (ffprobe ignores c= for
    unicast; GStreamer's rtspsrc does not: "Invalid address family" in its udpsink, and no
    frames, when an IPv6 player was told c=IN IP4 0.0.0.0.) ffprobe, over UDP too, is the
    control that the stream comes through."""
    assert ffprobe_frames(url, "udp", prefix=outside(topo)) >= 25
    wait_no_rtp_sockets(topo, lo, lo + 99)
    assert gst_frames(topo, url, "udp"), topo.log.read_text()[-3000:]
    wait_no_rtp_sockets(topo, lo, lo + 99)


@rtsp
def test_gstreamer_player(topo):
    r = topo.ns(topo.c, "timeout", "25", "gst-launch-1.0", "rtspsrc",
                "location=rtsp://198.51.100.1:8556/test", "user-id=admin", "user-pw=secret",
                "protocols=udp", "!", "rtph264depay", "!", "h264parse", "!", "fakesink",
                "num-buffers=50", check=False)
    # The sink ends the pipeline (EOS) once 50 frames came through. rtspsrc sometimes reports
    # an error while it tears down after that, which says nothing about the relay.
    assert "Got EOS from element \"pipeline0\"" in r.stdout, r.stdout + r.stderr


@rtsp
def test_abrupt_disconnect_frees_the_ports(topo):
    p = subprocess.Popen(list(outside(topo)) + [
        "ffprobe", "-v", "error", "-rtsp_transport", "udp", "-count_frames", "-read_intervals",
        "%+30", "rtsp://198.51.100.1/live"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 15
    while len(rtp_sockets(topo, 30000, 30099)) < 4:
        assert time.time() < deadline, "the stream never started"
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    wait_no_rtp_sockets(topo, 30000, 30099)
    assert "stream ended (the control connection closed)" in topo.log.read_text()
