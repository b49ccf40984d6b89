"""RTSP mappings through the real binary, with a real encoder: VLC serving an H.264 clip, and
ffprobe (and raw requests) as the player. On loopback; the namespace topology is in
test_topology.py."""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import ffprobe_frames, free_ports, is_refused, vlc_command

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cvlc", "ffmpeg", "ffprobe", "setpriv")),
    reason="needs vlc-bin, ffmpeg (tools/bootstrap installs them)")


def wait_tcp(host, port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {host}:{port}")


def start_vlc(clip, host, port):
    p = subprocess.Popen(vlc_command(clip, host, port), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_tcp(host, port)
    return p


@pytest.fixture
def vlc(clip):
    procs = []

    def make(host="127.0.0.1"):
        port = free_ports()
        procs.append(start_vlc(clip, host, port))
        return port

    yield make
    for p in procs:
        p.kill()
        p.wait()


def frames(url, transport="udp"):
    return ffprobe_frames(url, transport)


class Rtsp:
    """A raw RTSP client: one request, one answer."""

    def __init__(self, port, host="127.0.0.1", source=None):
        self.s = socket.create_connection((host, port), timeout=10,
                                          source_address=(source, 0) if source else None)
        self.buf = b""
        self.cseq = 0

    def read_answer(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            rest += self.s.recv(65536)
        self.buf = rest[n:]
        return int(lines[0].split()[1]), headers, rest[:n].decode()

    def ask(self, method, url, **headers):
        self.cseq += 1
        text = f"{method} {url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n"
        text += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        self.s.sendall(text.encode() + b"\r\n")
        return self.read_answer()

    def close(self):
        self.s.close()


def track_url(c, port):
    """The control URL of the video track, from a DESCRIBE on connection c."""
    status, _, sdp = c.ask("DESCRIBE", f"rtsp://127.0.0.1:{port}/live", Accept="application/sdp")
    assert status == 200
    return re.findall(r"a=control:(\S+)", sdp)[-1]


def free_rtp_ports(n):
    """rtp-ports of n ports (an even start, an odd end) that nothing holds now, for a range so
    small that a port of it taken elsewhere (by a test running beside this one) would exhaust
    it: from free_ports, which hands them to no other test."""
    ports = free_ports(n + 1)
    lo = ports[0] + ports[0] % 2
    return f"{lo}-{lo + n - 1}"


def rtsp_gateway(gateway, device_port, extra="", rtp="20000-20199"):
    port = free_ports()
    g = gateway("--map", f"rtsp:127.0.0.1:{port}=127.0.0.1:{device_port},rtp-ports={rtp},"
                f"name=enc{extra}")
    return g, port


def test_udp_stream_decodes_through_the_gateway(gateway, vlc):
    dev = vlc()
    g, port = rtsp_gateway(gateway, dev)
    base = g.fds()
    assert frames(f"rtsp://127.0.0.1:{port}/live") >= 25
    g.wait_log("stream ended (TEARDOWN)")
    st = g.map_stats("enc")
    # The RTP went through the gateway's ports, not straight from the device to the player.
    assert st["rtsp sessions"] == 1
    assert st["datagrams to clients"] >= 25
    assert st["rtp bytes to clients"] > 10000
    assert st["rtp datagrams from strangers"] == 0
    assert g.fds() == base  # the four RTP sockets are closed again


@pytest.fixture
def gst_device():
    """GStreamer's RTSP server (which, unlike VLC's, serves RTP interleaved) at /test."""
    procs = []

    def make(*login):
        """login: USER, PASSWORD for a device with Digest authentication."""
        port = free_ports()
        p = subprocess.Popen(["/usr/bin/python3", os.path.join(os.path.dirname(__file__),
                                                              "nethelper.py"),
                              "gst-rtsp", "127.0.0.1", str(port), *login],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(p)
        assert p.stdout.readline().strip() == b"ready"
        return port

    yield make
    for p in procs:
        p.kill()
        p.wait()


def test_rtsps_stream_decodes_interleaved_and_refuses_udp(gateway, gst_device, tmp_path):
    """rtsps: ffprobe plays rtsps:// with RTP interleaved in the TLS connection; the device
    speaks plain RTSP and its URLs come back as rtsps://; a SETUP for UDP is answered 461
    with the reason, and the device never sees it."""
    from conftest import BINARY
    dev = gst_device()
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    port = free_ports()
    g = gateway("--map", f"rtsps:127.0.0.1:{port}=127.0.0.1:{dev},name=enc,"
                f"cert={tmp_path}/c.crt,key={tmp_path}/c.key")
    assert frames(f"rtsps://localhost:{port}/test", transport="tcp") >= 25
    st = g.map_stats("enc")
    assert st["tls handshakes"] >= 1 and st["rtsp sessions"] == 0
    # A raw client over TLS: the answers name rtsps://, and UDP is refused.
    import ssl
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.crt"))
    raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname="localhost")
    c = Rtsp.__new__(Rtsp)
    c.s, c.buf, c.cseq = raw, b"", 0
    status, headers, sdp = c.ask("DESCRIBE", f"rtsps://localhost:{port}/test",
                                 Accept="application/sdp")
    assert status == 200
    assert headers["content-base"].startswith(f"rtsps://localhost:{port}/"), headers
    track = re.findall(r"a=control:(\S+)", sdp)[-1]
    status, headers, body = c.ask("SETUP", track, Transport="RTP/AVP;unicast;client_port=5000-5001")
    assert status == 461, (status, headers)
    c.close()
    g.wait_log("RTP over UDP would leave the TLS connection")


def test_two_players_at_once(gateway, vlc):
    dev = vlc()
    g, port = rtsp_gateway(gateway, dev)
    got = []
    threads = [threading.Thread(target=lambda: got.append(frames(f"rtsp://127.0.0.1:{port}/live")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and min(got) >= 25, got
    g.wait_log("stream ended (TEARDOWN)", 2)
    assert g.map_stats("enc")["rtsp sessions"] == 2


def test_describe_and_setup_name_the_gateway(gateway, vlc):
    dev = vlc()
    g, port = rtsp_gateway(gateway, dev)
    c = Rtsp(port)
    status, h, sdp = c.ask("DESCRIBE", f"rtsp://127.0.0.1:{port}/live", Accept="application/sdp")
    assert status == 200
    assert h["content-base"].startswith(f"rtsp://127.0.0.1:{port}/live")
    controls = re.findall(r"a=control:(\S+)", sdp)
    assert controls and all(u.startswith(f"rtsp://127.0.0.1:{port}/") for u in controls)
    assert f":{dev}" not in sdp and f":{dev}" not in h["content-base"]
    assert int(h["content-length"]) == len(sdp)

    status, h, _ = c.ask("SETUP", controls[-1], Transport="RTP/AVP;unicast;client_port=5000-5001")
    assert status == 200, h
    m = re.search(r"client_port=(\d+)-(\d+)", h["transport"])
    assert (int(m[1]), int(m[2])) == (5000, 5001)  # what the client announced, as it was
    m = re.search(r"server_port=(\d+)-(\d+)", h["transport"])
    assert 20000 <= int(m[1]) < 20200 and int(m[2]) == int(m[1]) + 1 and int(m[1]) % 2 == 0
    # Closing the control connection frees the stream.
    c.close()
    g.wait_log("stream ended (the control connection closed)")


def test_multicast_is_refused_in_order(gateway, vlc):
    """The gateway answers what it refuses itself, in order among the device's answers."""
    dev = vlc()
    g, port = rtsp_gateway(gateway, dev)
    c = Rtsp(port)
    url = f"rtsp://127.0.0.1:{port}/live"
    # Pipelined: the SETUP's refusal must wait for the device's answer to the OPTIONS before
    # it. (VLC itself answers only the first of pipelined requests, so only one goes to it.)
    c.s.sendall((f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"
                 f"SETUP {url}/trackID=1 RTSP/1.0\r\nCSeq: 2\r\n"
                 "Transport: RTP/AVP;multicast;destination=233.252.0.1;port=5000-5001\r\n\r\n"
                 ).encode())
    answers = [c.read_answer() for _ in range(2)]
    c.s.sendall(f"OPTIONS {url} RTSP/1.0\r\nCSeq: 3\r\n\r\n".encode())
    answers.append(c.read_answer())
    assert [a[1].get("cseq") for a in answers] == ["1", "2", "3"]
    assert answers[0][0] == 200 and answers[2][0] == 200
    assert answers[1][0] == 461 and answers[1][1]["server"] == "portgate"
    g.wait_log("SETUP refused: multicast transports are not relayed")
    assert g.map_stats("enc")["rtsp requests refused"] == 1
    c.close()


def test_max_sessions_and_rtp_ports_exhausted(gateway, vlc):
    dev = vlc()
    port, tiny = free_ports(2)
    g = gateway("--map", f"rtsp:127.0.0.1:{port}=127.0.0.1:{dev},max-sessions=1,name=one",
                "--map", f"rtsp:127.0.0.1:{tiny}=127.0.0.1:{dev},rtp-ports={free_rtp_ports(4)},"
                "name=tiny")
    a, b = Rtsp(port), Rtsp(port)
    url = track_url(a, port)
    assert a.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5000-5001")[0] == 200
    status, h, _ = b.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5002-5003")
    assert status == 453
    g.wait_log("SETUP refused: max-sessions (1) reached")
    a.close()
    g.wait_log("stream ended (the control connection closed)")
    # The place is free again.
    assert b.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5002-5003")[0] == 200
    b.close()

    a, b = Rtsp(tiny), Rtsp(tiny)
    url = track_url(a, tiny)
    assert a.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5000-5001")[0] == 200
    assert b.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5002-5003")[0] == 453
    g.wait_log("SETUP refused: every pair of rtp-ports is in use")
    a.close()
    b.close()


def test_malformed_request_gets_400_and_close(gateway, vlc):
    dev = vlc()
    g, port = rtsp_gateway(gateway, dev)
    c = Rtsp(port)
    c.s.sendall(b"GARBAGE\r\n\r\n")
    status, h, _ = c.read_answer()
    assert status == 400
    assert c.s.recv(100) == b""
    g.wait_log("the client sent malformed RTSP (start line without a space)")
    c.close()
    # The mapping goes on serving.
    assert Rtsp(port).ask("OPTIONS", f"rtsp://127.0.0.1:{port}/live")[0] == 200


def fake_device(tcp_echo, timeout=60, garbage=False, server_port=6970, batch=False,
                after_play=b""):
    """A minimal RTSP device: 200 to everything, a Transport with server ports for SETUP, and
    a new Session (with the given timeout) for a SETUP that names none. With garbage, it
    answers nonsense instead. With batch, it answers the requests that came in 0.2 s at once,
    in one send. after_play is sent right after the answer to a PLAY. The client ports the
    gateway announced are in .client_ports, the requests' CSeqs in .cseqs, the interleaved
    frames the client sent in .frames."""
    sessions = iter(range(10000000, 99999999))
    client_ports = []
    cseqs = []
    frames = []

    def handler(c):
        buf = b""
        answers = b""
        if batch:
            c.settimeout(0.2)
        while True:
            try:
                d = c.recv(65536)
            except socket.timeout:
                c.sendall(answers)
                answers = b""
                continue
            if not d:
                return
            buf += d
            while buf[:1] == b"$" and len(buf) >= 4 and len(buf) >= 4 + (buf[2] << 8 | buf[3]):
                frames.append(buf[:4 + (buf[2] << 8 | buf[3])])  # interleaved, from the client
                buf = buf[len(frames[-1]):]
            while b"\r\n\r\n" in buf and buf[:1] != b"$":
                head, buf = buf.split(b"\r\n\r\n", 1)
                if garbage:
                    c.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
                    continue
                lines = head.decode().split("\r\n")
                hdr = dict((k.strip().lower(), v.strip())
                           for k, v in (l.split(":", 1) for l in lines[1:]))
                extra = ""
                if lines[0].startswith("SETUP") and "interleaved" in hdr["transport"]:
                    sid = hdr.get("session") or str(next(sessions))
                    extra = f"Transport: {hdr['transport']}\r\nSession: {sid}\r\n"
                elif lines[0].startswith("SETUP"):
                    cp = re.search(r"client_port=(\d+)-(\d+)", hdr["transport"])
                    client_ports.append((int(cp[1]), int(cp[2])))
                    sid = hdr.get("session") or str(next(sessions))
                    extra = (f"Transport: RTP/AVP;unicast;client_port={cp[1]}-{cp[2]};"
                             f"server_port={server_port}-{server_port + 1};"
                             f"source=127.0.0.1;ssrc=1A2B3C4D\r\n"
                             f"Session: {sid};timeout={timeout}\r\n")
                cseqs.append(hdr.get("cseq"))
                answer = f"RTSP/1.0 200 OK\r\nCSeq: {hdr['cseq']}\r\n{extra}\r\n".encode()
                if lines[0].startswith("PLAY"):
                    answer += after_play
                if batch:
                    answers += answer
                else:
                    c.sendall(answer)
    dev = tcp_echo(handler=handler)
    dev.client_ports = client_ports
    dev.cseqs = cseqs
    dev.frames = frames
    return dev


def session_of(headers):
    return headers["session"].split(";")[0]


def test_thousands_of_sessions_leak_nothing(gateway, tcp_echo):
    dev = fake_device(tcp_echo)
    # 5 streams at a time at most.
    g, port = rtsp_gateway(gateway, dev.port, rtp=free_rtp_ports(20))
    base = g.fds()
    url = f"rtsp://127.0.0.1:{port}/x"
    n = 1500
    for i in range(n):
        c = Rtsp(port)
        status, h, _ = c.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5000-5001")
        assert status == 200, (i, status)
        assert "source=127.0.0.1" in h["transport"] and "ssrc=1A2B3C4D" in h["transport"]
        if i % 2 == 0:
            assert c.ask("TEARDOWN", url, Session=session_of(h))[0] == 200
        c.close()  # every other one without TEARDOWN
    deadline = time.time() + 30
    while g.map_stats("enc")["open"] > 0:
        assert time.time() < deadline
        time.sleep(0.1)
    st = g.map_stats("enc")
    assert st["rtsp sessions"] == n
    assert g.fds() == base
    assert g.log().count("stream ended (TEARDOWN)") == n // 2
    assert g.log().count("stream ended (the control connection closed)") == n // 2


def test_session_timeout_frees_the_ports(gateway, tcp_echo):
    dev = fake_device(tcp_echo, timeout=1)
    g, port = rtsp_gateway(gateway, dev.port)
    base = g.fds()
    c = Rtsp(port)
    assert c.ask("SETUP", f"rtsp://127.0.0.1:{port}/x",
                 Transport="RTP/AVP;unicast;client_port=5000-5001")[0] == 200
    assert g.fds() == base + 2 + 4  # the connection's two sockets, the stream's four
    g.wait_log("stream ended (no RTSP nor RTP for 1000ms: session timeout)", timeout=5)
    assert g.fds() == base + 2
    # The control connection goes on.
    assert c.ask("OPTIONS", f"rtsp://127.0.0.1:{port}/x")[0] == 200
    c.close()


def test_malformed_device_loses_the_connection(gateway, tcp_echo):
    dev = fake_device(tcp_echo, garbage=True)
    g, port = rtsp_gateway(gateway, dev.port)
    c = Rtsp(port)
    with pytest.raises((EOFError, ConnectionResetError)):
        c.ask("OPTIONS", f"rtsp://127.0.0.1:{port}/x")
    g.wait_log("rtsp filter: the device sent malformed RTSP (bad method)")
    c.close()


def test_session_spans_connections(gateway, tcp_echo):
    """RFC 2326 lets a session use several connections: a player may send its keep-alives or
    its TEARDOWN on a new one and close the first. The session's ports stay while a connection
    of the same client that named its id is open, and no longer."""
    device_rtp, player_rtp = free_ports(2), free_ports(2)
    dev = fake_device(tcp_echo, server_port=device_rtp[0])
    g, port = rtsp_gateway(gateway, dev.port)
    base = g.fds()
    url = f"rtsp://127.0.0.1:{port}/x"
    a = Rtsp(port)
    status, h, _ = a.ask("SETUP", url,
                         Transport=f"RTP/AVP;unicast;client_port={player_rtp[0]}-{player_rtp[1]}")
    assert status == 200
    sid = session_of(h)
    out_port = int(re.search(r"server_port=(\d+)", h["transport"])[1])
    # A second track of the same session, on the same connection: no second session.
    assert a.ask("SETUP", url + "/2", Session=sid,
                 Transport="RTP/AVP;unicast;client_port=5002-5003")[0] == 200
    assert g.fds() == base + 2 + 8
    b = Rtsp(port)
    assert b.ask("GET_PARAMETER", url, Session=sid)[0] == 200  # a keep-alive on a new connection
    a.close()
    g.wait_log(f"session {sid} goes on, held by another connection of the client")
    assert g.fds() == base + 2 + 8

    # The stream still relays: RTP from the device's server port to the gateway's inside port
    # reaches the player from the outside port it was told.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as d, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as player:
        d.bind(("127.0.0.1", device_rtp[0]))
        player.bind(("127.0.0.1", player_rtp[0]))
        player.settimeout(5)
        d.sendto(b"\x80" + b"rtp" * 10, ("127.0.0.1", dev.client_ports[0][0]))
        data, src = player.recvfrom(2048)
        assert data == b"\x80" + b"rtp" * 10 and src == ("127.0.0.1", out_port)

    # A TEARDOWN on the second connection ends the session the first one set up.
    assert b.ask("TEARDOWN", url, Session=sid)[0] == 200
    g.wait_log("stream ended (TEARDOWN)", 2)
    assert g.fds() == base + 2
    b.close()
    assert g.map_stats("enc")["rtsp sessions"] == 1

    # Another client address naming the id does not keep a session alive: the session ends
    # with the connection that set it up.
    a = Rtsp(port)
    status, h, _ = a.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5000-5001")
    sid = session_of(h)
    stranger = Rtsp(port, source="127.0.0.2")
    assert stranger.ask("GET_PARAMETER", url, Session=sid)[0] == 200
    a.close()
    g.wait_log("stream ended (the control connection closed)")
    assert g.fds() == base + 2
    stranger.close()
    assert f"session {sid} goes on" not in g.log()


def test_pipelined_requests_beyond_the_queue(gateway, tcp_echo):
    """A client may pipeline more requests than the gateway keeps awaiting answers (16): the
    rest wait in its input, and go on as soon as answers make room, even when the device
    answers a whole batch in one segment (nothing else wakes the client's side then)."""
    dev = fake_device(tcp_echo, batch=True)
    g, port = rtsp_gateway(gateway, dev.port)
    c = Rtsp(port)
    url = f"rtsp://127.0.0.1:{port}/x"
    n = 40
    c.s.sendall(b"".join(f"OPTIONS {url} RTSP/1.0\r\nCSeq: {i}\r\n\r\n".encode()
                         for i in range(1, n + 1)))
    answers = [c.read_answer() for _ in range(n)]
    assert [a[1]["cseq"] for a in answers] == [str(i) for i in range(1, n + 1)]
    assert all(a[0] == 200 for a in answers)
    c.close()


def test_pipelined_requests_beyond_a_buffer(gateway, tcp_echo):
    """More pipelined requests than the relay's buffer holds (400 of 460 bytes: 184 KB) wait in
    the client's socket while 16 await their answers, rather than being taken for one message
    too large to parse; all are answered, in order."""
    dev = fake_device(tcp_echo, batch=True)
    g, port = rtsp_gateway(gateway, dev.port)
    c = Rtsp(port)
    url = f"rtsp://127.0.0.1:{port}/x"
    n, pad = 400, "p" * 400
    c.s.sendall(b"".join(f"OPTIONS {url} RTSP/1.0\r\nCSeq: {i}\r\nX-Pad: {pad}\r\n\r\n".encode()
                         for i in range(1, n + 1)))
    c.s.settimeout(30)
    answers = [c.read_answer() for _ in range(n)]
    assert [a[1]["cseq"] for a in answers] == [str(i) for i in range(1, n + 1)]
    assert "message larger than" not in g.log()
    c.close()


def test_long_cseq_is_refused(gateway, tcp_echo):
    """A CSeq the gateway cannot keep whole could never match its answer: the SETUP's RTP ports
    and its place in max-sessions would stay held, and the device's Transport would reach the
    client unrewritten. It is a malformed request: 400, and the device never sees it."""
    dev = fake_device(tcp_echo)
    g, port = rtsp_gateway(gateway, dev.port)
    base = g.fds()
    url = f"rtsp://127.0.0.1:{port}/x"
    c = Rtsp(port)
    assert c.ask("OPTIONS", url)[0] == 200
    cseq = "7" * 33
    c.s.sendall(f"SETUP {url} RTSP/1.0\r\nCSeq: {cseq}\r\n"
                "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n".encode())
    status, h, _ = c.read_answer()
    assert status == 400 and "transport" not in h
    assert c.s.recv(100) == b""
    c.close()
    g.wait_log("the client sent malformed RTSP (CSeq longer than 32 bytes)")
    assert dev.cseqs == ["1"]
    deadline = time.time() + 5
    while g.fds() != base and time.time() < deadline:
        time.sleep(0.05)
    assert g.fds() == base
    assert g.map_stats("enc")["rtsp sessions"] == 0
    # The longest CSeq kept whole still matches its answer.
    c = Rtsp(port)
    cseq = "7" * 32
    c.s.sendall(f"SETUP {url} RTSP/1.0\r\nCSeq: {cseq}\r\n"
                "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n".encode())
    status, h, _ = c.read_answer()
    assert status == 200 and h["cseq"] == cseq
    assert re.search(r"server_port=(\d+)", h["transport"])[1] != "6970"
    c.close()


def test_own_answers_wait_for_the_end_of_a_frame(gateway, tcp_echo):
    """The gateway's own answers go out between the device's messages, never inside a frame it
    is passing in pieces: a SETUP the gateway refuses while the device is half-way through a
    65,539-byte frame is answered right after the frame's last byte."""
    frame = b"$\x00\xff\xff" + bytes(i % 253 for i in range(65535))

    def device(conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        cseq = re.search(rb"CSeq: (\d+)", buf)[1]
        conn.sendall(b"RTSP/1.0 200 OK\r\nCSeq: " + cseq + b"\r\n\r\n" + frame[:30000])
        time.sleep(1)  # the client's SETUP is refused meanwhile
        conn.sendall(frame[30000:])
        conn.recv(100)
    dev = tcp_echo(handler=device)
    g, port = rtsp_gateway(gateway, dev.port)
    c = Rtsp(port)
    url = f"rtsp://127.0.0.1:{port}/x"
    c.s.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
    got = b""
    while len(got) < 20000:
        got += c.s.recv(65536)
    c.s.sendall(f"SETUP {url} RTSP/1.0\r\nCSeq: 2\r\n"
                "Transport: RTP/AVP;multicast;destination=233.252.0.1\r\n\r\n".encode())
    while b"461" not in got[-200:] or not got.endswith(b"\r\n\r\n"):
        d = c.s.recv(65536)
        assert d, got[-200:]
        got += d
    head_end = got.index(b"\r\n\r\n") + 4
    assert got[head_end:head_end + len(frame)] == frame
    assert got[head_end + len(frame):].startswith(b"RTSP/1.0 461 Unsupported Transport")
    c.close()


def test_answers_are_matched_by_one_cseq(gateway, tcp_echo):
    """A request with two CSeq headers is refused: the gateway and the device could match its
    answer by different ones. And an answer to no request the client sent ends the connection,
    before its Transport (the device's own ports) reaches the client."""
    dev = fake_device(tcp_echo)
    g, port = rtsp_gateway(gateway, dev.port)
    url = f"rtsp://127.0.0.1:{port}/x"
    c = Rtsp(port)
    c.s.sendall(f"SETUP {url} RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n"
                "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n".encode())
    assert c.read_answer()[0] == 400
    assert c.s.recv(100) == b""
    g.wait_log("the client sent malformed RTSP (more than one CSeq)")
    assert dev.cseqs == []

    def wrong_cseq(conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        conn.sendall(b"RTSP/1.0 200 OK\r\nCSeq: 99\r\nTransport: RTP/AVP;unicast;"
                     b"client_port=30000-30001;server_port=6970-6971\r\nSession: 1\r\n\r\n")
        conn.recv(100)
    bad = tcp_echo(handler=wrong_cseq)
    g, port = rtsp_gateway(gateway, bad.port)
    c = Rtsp(port)
    c.s.sendall(f"SETUP rtsp://127.0.0.1:{port}/x RTSP/1.0\r\nCSeq: 1\r\n"
                "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n".encode())
    got = b""
    while True:
        try:
            d = c.s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        got += d
    assert b"6970" not in got and b"30000" not in got
    g.wait_log("the device answered no request the client sent (CSeq 99)")


@pytest.mark.parametrize("size", [65535, 1000])
def test_largest_interleaved_frame(gateway, tcp_echo, size):
    """An interleaved frame may carry 65,535 bytes (RFC 2326 10.12), more than the relay's
    buffer: it streams through, both ways, byte for byte."""
    down = b"$\x01" + size.to_bytes(2, "big") + bytes(i % 251 for i in range(size))
    dev = fake_device(tcp_echo, after_play=down)
    g, port = rtsp_gateway(gateway, dev.port)
    c = Rtsp(port)
    url = f"rtsp://127.0.0.1:{port}/x"
    status, h, _ = c.ask("SETUP", url, Transport="RTP/AVP/TCP;unicast;interleaved=0-1")
    assert status == 200
    assert c.ask("PLAY", url, Session=session_of(h))[0] == 200
    while len(c.buf) < len(down):
        d = c.s.recv(65536)
        assert d, "the gateway closed the connection"
        c.buf += d
    assert c.buf[:len(down)] == down
    c.buf = c.buf[len(down):]
    # The same frame from the client, then a request behind it: the device gets both.
    c.s.sendall(down)
    assert c.ask("OPTIONS", url)[0] == 200
    assert dev.frames == [down]
    c.close()
    # A frame from a client that set up no interleaved transport is no RTSP: 400, and the
    # device never sees what it carries.
    c = Rtsp(port)
    c.s.sendall(b"$\x00\x00\x1a" + f"OPTIONS {url} RTSP/1.0\r\n\r\n".encode()[:26])
    assert c.read_answer()[0] == 400
    g.wait_log("malformed RTSP (an interleaved frame before any interleaved SETUP)")
    assert dev.frames == [down]
    c.close()


@pytest.mark.parametrize("variant", ["1w", "2w"], indirect=True)
def test_reload_between_tcp_and_rtsp_keeps_the_port(gateway, tcp_echo, variant):
    """A reload that turns a plain tcp mapping into an rtsp one, and back, keeps its socket:
    new connections take the new protocol (rtsp runs on one worker, so the other workers'
    sockets close), established ones keep theirs."""
    dev = fake_device(tcp_echo)
    port = free_ports()
    conf = ("[map enc]\nproto = {proto}\nlisten = 127.0.0.1:{port}\n"
            "target = 127.0.0.1:{dev}\n{extra}")
    tcp = conf.format(proto="tcp", port=port, dev=dev.port, extra="")
    rtsp = conf.format(proto="rtsp", port=port, dev=dev.port, extra="rtp-ports = 20600-20699\n")
    url = f"rtsp://127.0.0.1:{port}/x"
    setup = {"Transport": "RTP/AVP;unicast;client_port=5000-5001"}

    def server_port(c):
        status, h, _ = c.ask("SETUP", url, **setup)
        assert status == 200
        return int(re.search(r"server_port=(\d+)", h["transport"])[1])

    g = gateway(config=tcp)
    plain = Rtsp(port)
    assert server_port(plain) == 6970  # plain tcp: the device's answer as it was
    for conf_now, want in ((rtsp, "rtsp"), (tcp, "tcp"), (rtsp, "rtsp")):
        out = g.reload(conf_now)
        assert "configuration applied: 0 mappings added, 1 changed" in out, out
        for _ in range(8):  # whichever worker's socket the kernel would have picked
            c = Rtsp(port)
            p = server_port(c)
            assert (20600 <= p < 20700) if want == "rtsp" else p == 6970
            c.close()
        assert server_port(plain) == 6970  # the established connection is still plain tcp
    plain.close()


def test_each_refusal_is_logged_with_its_own_count(gateway, tcp_echo):
    """Refusals are logged at most once a second, each kind on its own: a SETUP refused for
    max-sessions right after a client refused by deny is logged, and its count of lines not
    logged does not include the other kind."""
    dev = fake_device(tcp_echo)
    g, port = rtsp_gateway(gateway, dev.port, extra=",max-sessions=1,deny=127.0.0.2")
    assert is_refused(port, source="127.0.0.2")
    url = f"rtsp://127.0.0.1:{port}/x"
    a, b = Rtsp(port), Rtsp(port)
    assert a.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5000-5001")[0] == 200
    assert b.ask("SETUP", url, Transport="RTP/AVP;unicast;client_port=5002-5003")[0] == 453
    g.wait_log("tcp refused 127.0.0.2:")
    g.wait_log("SETUP refused: max-sessions (1) reached (0 more refusals not logged)")
    a.close()
    b.close()


def interleaved_device(tcp_echo, frames):
    """A device that answers PLAY with 200 and then the given interleaved frames (RFC 2326
    10.12: "$", channel, 16-bit length, data), and any other request with 200 and a
    Content-Base naming itself."""
    def handler(c):
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                cseq = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("cseq")]
                if lines[0].startswith("PLAY"):
                    c.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq[0]}\r\n\r\n".encode() + frames)
                else:
                    c.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq[0]}\r\nContent-Base: "
                              f"rtsp://127.0.0.1:{dev.port}/x/\r\n\r\n".encode())
    dev = tcp_echo(handler=handler)
    return dev


@pytest.mark.parametrize("variant", ["splice", "copy"], indirect=True)
def test_interleaved_bulk_is_filtered_not_spliced(gateway, tcp_echo, variant):
    """An rtsp mapping copies on both paths: its filter must see every byte to find the RTSP
    messages among the interleaved frames. 2 MiB of frames after a PLAY arrive whole, none of
    them spliced even with splice on, and the device's next answer is still rewritten."""
    payload = os.urandom(1400)
    frames = b"".join(b"$\x00" + len(payload).to_bytes(2, "big") + payload for _ in range(1500))
    dev = interleaved_device(tcp_echo, frames)
    g, port = rtsp_gateway(gateway, dev.port)
    url = f"rtsp://127.0.0.1:{port}/x"
    c = Rtsp(port)
    assert c.ask("PLAY", url)[0] == 200
    got = c.buf
    while len(got) < len(frames):
        d = c.s.recv(262144)
        assert d, len(got)
        got += d
    assert got == frames
    c.buf = b""
    status, h, _ = c.ask("GET_PARAMETER", url)
    assert status == 200 and h["content-base"] == f"rtsp://127.0.0.1:{port}/x/"
    c.close()
    deadline = time.time() + 10  # the counters grow when the connection has ended
    st = g.map_stats("enc")
    while st["open"] > 0:
        assert time.time() < deadline, st
        time.sleep(0.05)
        st = g.map_stats("enc")
    assert st["bytes to clients"] > len(frames)
    assert st["bytes spliced"] == 0, st


# ---- device-auth: the gateway answers the device's own login ----

def auth_header(request):
    """The Authorization values of a request head (text)."""
    return re.findall(r"(?im)^authorization:[ \t]*(.*?)\r?$", request)


def cseq_of(request):
    return re.search(r"(?im)^cseq:\s*(\S+)", request)[1]


def auth_device(tcp_echo, challenge):
    """A device that wants a login: a request without Authorization is answered 401 with the
    challenge given (WWW-Authenticate lines), one with it 200 (challenge None: every request
    200). The heads of the requests it got are in .requests."""
    requests = []

    def handler(c):
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                text = head.decode()
                requests.append(text)
                if challenge is None or auth_header(text):
                    c.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq_of(text)}\r\n\r\n".encode())
                else:
                    c.sendall(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq_of(text)}\r\n"
                              f"{challenge}\r\n".encode())
    dev = tcp_echo(handler=handler)
    dev.requests = requests
    return dev


def test_device_auth_digest_plays_without_credentials(gateway, gst_device):
    """GStreamer's server with Digest authentication, behind an rtsp mapping with device-auth:
    ffprobe gives no credentials and plays it, RTP interleaved and over UDP; the same player
    through a mapping without device-auth is refused by the device."""
    dev = gst_device("admin", "s3cret")
    g, port = rtsp_gateway(gateway, dev, extra=",device-auth=admin:s3cret")
    for transport in ("tcp", "udp"):
        assert frames(f"rtsp://127.0.0.1:{port}/test", transport) >= 25, transport
    st = g.map_stats("enc")
    assert st["rtsp device-auth answers"] == 2 and st["rtsp device-auth failures"] == 0, st
    assert st["rtsp sessions"] == 1  # the UDP one's
    assert "s3cret" not in g.log()
    plain, plain_port = rtsp_gateway(gateway, dev, rtp="20200-20299")
    assert frames(f"rtsp://127.0.0.1:{plain_port}/test", "tcp") == 0


def test_device_auth_wrong_password_gets_502(gateway, gst_device):
    """A password the device refuses: the player gets 502 from the gateway with the reason
    (never the device's 401, which would invite it to try passwords), the log says why, naming
    the user but never the password, and the failure is counted."""
    dev = gst_device("admin", "s3cret")
    g, port = rtsp_gateway(gateway, dev, extra=",device-auth=admin:not-it")
    url = f"rtsp://127.0.0.1:{port}/test"
    r = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "502 Bad Gateway" in r.stderr, r.stderr
    g.wait_log("DESCRIBE answered 502: the device refused device-auth's credentials "
               "(user \"admin\")")
    c = Rtsp(port)
    status, h, body = c.ask("DESCRIBE", url, Authorization="Basic YWRtaW46czNjcmV0")
    assert status == 502 and "www-authenticate" not in h, h
    assert body == "the device refused device-auth's credentials\n"
    c.close()
    st = g.map_stats("enc")
    assert st["rtsp device-auth failures"] == 2 and st["rtsp device-auth answers"] == 2, st
    assert "not-it" not in g.log()


def test_device_auth_behind_rtsps(gateway, gst_device, tmp_path):
    """rtsps with device-auth from a file: ffprobe plays rtsps:// with no credentials, RTP
    interleaved in the TLS connection."""
    from conftest import BINARY
    dev = gst_device("admin", "s3cret")
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    login = tmp_path / "device-login"
    login.write_text("admin:s3cret\n")
    login.chmod(0o600)
    port = free_ports()
    g = gateway("--map", f"rtsps:127.0.0.1:{port}=127.0.0.1:{dev},name=enc,"
                f"cert={tmp_path}/c.crt,key={tmp_path}/c.key,device-auth=file:{login}")
    assert frames(f"rtsps://localhost:{port}/test", transport="tcp") >= 25
    st = g.map_stats("enc")
    assert st["tls handshakes"] >= 1 and st["rtsp device-auth answers"] == 1, st


def test_device_auth_players_authorization_never_reaches_the_device(gateway, tcp_echo):
    """A player's own Authorization is removed: the device sees the gateway's Digest only,
    answering its challenge for the request as the device got it (its URL), the first time by
    sending the challenged request again with the same CSeq, then from the start with the
    nonce's next count. The answers are right for RFC 7616's MD5 with qop=auth."""
    import hashlib
    dev = auth_device(tcp_echo, 'WWW-Authenticate: Basic realm="cam"\r\n'
                                'WWW-Authenticate: Digest realm="cam", nonce="abc", qop="auth"\r\n')
    g, port = rtsp_gateway(gateway, dev.port, extra=",device-auth=admin:s3cret")
    url = f"rtsp://127.0.0.1:{port}/x"
    c = Rtsp(port)
    guess = 'Digest username="guess", realm="cam", nonce="abc", uri="/x", response="00"'
    status, h, _ = c.ask("OPTIONS", url, Authorization=guess)
    assert status == 200 and h["cseq"] == "1"
    assert c.ask("DESCRIBE", url, Authorization="Basic Z3Vlc3M6Z3Vlc3M=")[0] == 200
    c.close()
    assert [cseq_of(r) for r in dev.requests] == ["1", "1", "2"]
    assert auth_header(dev.requests[0]) == []
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
    for r, nc in zip(dev.requests[1:], ("00000001", "00000002")):
        (value,) = auth_header(r)
        method, uri = r.split(" ")[:2]
        assert uri == f"rtsp://127.0.0.1:{dev.port}/x"
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', value[len("Digest "):]))
        assert value.startswith("Digest ") and fields["username"] == "admin"
        assert fields["uri"] == uri and fields["nc"] == nc and fields["qop"] == "auth"
        want = md5(f"{md5('admin:cam:s3cret')}:abc:{nc}:{fields['cnonce']}:auth:"
                   f"{md5(method + ':' + uri)}")
        assert fields["response"] == want
    assert g.map_stats("enc")["rtsp device-auth answers"] == 1


def test_device_auth_basic(gateway, tcp_echo):
    """A device that asks for Basic gets Basic of device-auth's user and password, on the
    challenged request sent again and on every request after it."""
    import base64
    dev = auth_device(tcp_echo, 'WWW-Authenticate: Basic realm="x"\r\n')
    g, port = rtsp_gateway(gateway, dev.port, extra=",device-auth=admin:s3cret")
    url = f"rtsp://127.0.0.1:{port}/x"
    c = Rtsp(port)
    assert c.ask("DESCRIBE", url)[0] == 200
    assert c.ask("OPTIONS", url)[0] == 200
    c.close()
    basic = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert [auth_header(r) for r in dev.requests] == [[], [basic], [basic]]


def test_device_auth_check_lists_it_and_never_prints_a_password(tmp_path):
    """portgate check lists device-auth as it lists any key (the file form keeps the password
    out of it); its errors never repeat a password."""
    from conftest import BINARY
    port = free_ports()
    head = f"[map enc]\nproto = rtsp\nlisten = 127.0.0.1:{port}\ntarget = 192.0.2.10:554\n"
    conf = tmp_path / "p.conf"
    conf.write_text(head + "device-auth = admin:s3cret\n")
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and " device-auth=admin:s3cret " in r.stdout, r.stdout + r.stderr
    login = tmp_path / "login"
    login.write_text("admin:s3cret\n")
    login.chmod(0o640)
    conf.write_text(head + f"device-auth = file:{login}\n")
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and f" device-auth=file:{login} " in r.stdout, r.stdout + r.stderr
    assert "s3cret" not in r.stdout
    login.chmod(0o644)
    long = tmp_path / "long"
    long.write_text("admin:" + "s3cret" * 50 + "\n")
    long.chmod(0o600)
    for value, error in ((f"file:{login}", "readable by every user; chmod o-r it"),
                         ("s3cret-only", '"(not shown)": USER:PASSWORD, or file:/PATH'),
                         ("admin:s3cret pw", '"(not shown)": a blank in it'),
                         (f"file:{long}", "a password of at most 255"),
                         (f"file:{tmp_path}/none", "No such file or directory")):
        conf.write_text(head + f"device-auth = {value}\n")
        r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 1 and f"p.conf:5: [map enc] device-auth: " in r.stderr, r.stderr
        assert error in r.stderr and "s3cret" not in r.stdout + r.stderr, r.stderr
    conf.write_text(head.replace("rtsp", "tcp") + "device-auth = admin:s3cret\n")
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "device-auth applies to " in r.stderr
    assert "s3cret" not in r.stdout + r.stderr


# ---- auth = login: players log in to the gateway ----

def _passwd(g, user, password, *opts):
    from conftest import BINARY
    r = subprocess.run([BINARY, "passwd", "-c", str(g.conf), "--password-stdin", *opts, user],
                       input=password + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def login_gateway(gateway, tmp_path, device_port, extra=""):
    """An rtsps mapping "enc" with auth = login before device_port; its port and the gateway."""
    from conftest import BINARY
    if not (tmp_path / "c.crt").exists():
        assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                              capture_output=True).returncode == 0
    port = free_ports()
    conf = (f"[map enc]\nproto = rtsps\nlisten = 127.0.0.1:{port}\n"
            f"target = 127.0.0.1:{device_port}\ncert = {tmp_path}/c.crt\n"
            f"key = {tmp_path}/c.key\nauth = login\n{extra}")
    return gateway(config=conf), port


def tls_rtsp(tmp_path, port):
    """A raw RTSP client over TLS to the gateway at port."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.crt"))
    c = Rtsp.__new__(Rtsp)
    c.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname="localhost")
    c.buf, c.cseq = b"", 0
    return c


def challenges(headers_text):
    return re.findall(r"(?im)^www-authenticate:[ \t]*(.*?)\r?$", headers_text)


def digest_for(user, password, method, uri, challenge, alg="MD5", nc="00000001"):
    """The Authorization a Digest player sends, answering challenge (a WWW-Authenticate value)."""
    import hashlib
    h = (lambda s: hashlib.new("md5" if alg == "MD5" else "sha256", s.encode()).hexdigest())
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[len("Digest "):]))
    realm, nonce = fields["realm"], fields["nonce"]
    resp = h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:{nc}:cn:auth:{h(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm={alg}, qop=auth, nc={nc}, cnonce="cn", response="{resp}"')


def test_login_players_digest_ffprobe_and_gstreamer(gateway, gst_device, tmp_path):
    """auth = login on rtsps: ffprobe and GStreamer play rtsps:// as a gateway user by Digest
    (the device has no login of its own); without the password, with a wrong one, or as a user
    without Digest keys, they do not play; each login and failure is a log line and counted."""
    dev = gst_device()
    g, port = login_gateway(gateway, tmp_path, dev)
    _passwd(g, "alice", "alice-password-1", "--digest")
    _passwd(g, "bob", "bob-password-1")  # no Digest keys
    url = f"rtsps://localhost:{port}/test"
    assert frames(f"rtsps://alice:alice-password-1@localhost:{port}/test", "tcp") >= 25
    g.wait_log("login: map enc: user alice logged in from 127.0.0.1 (a player, by Digest)")
    r = subprocess.run(["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", "user-id=alice",
                        "user-pw=alice-password-1", "protocols=tcp", "tls-validation-flags=0",
                        "!", "fakesink", "num-buffers=40", "signal-handoffs=false"],
                       capture_output=True, text=True, timeout=60)
    g.wait_log("user alice logged in from 127.0.0.1 (a player, by Digest)", count=2)
    st = g.map_stats("enc")
    assert st["rtsp logins"] == 2, (st, r.stderr)
    assert frames(url, "tcp") == 0  # no credentials
    assert frames(f"rtsps://alice:wrong-password@localhost:{port}/test", "tcp") == 0
    assert frames(f"rtsps://bob:bob-password-1@localhost:{port}/test", "tcp") == 0
    g.wait_log("user bob from 127.0.0.1 answered Digest, but has no Digest keys: portgate "
               "passwd --digest bob makes them")
    st = g.map_stats("enc")
    assert st["rtsp logins"] == 2 and st["rtsp failed logins"] >= 2, st
    assert "alice-password" not in g.log() and "wrong-password" not in g.log()


def test_login_players_raw(gateway, tcp_echo, tmp_path):
    """The gateway's side, request by request: the device sees nothing before a login, and never
    the player's Authorization; a 401 carries Digest SHA-256, Digest MD5 and Basic; Basic and
    both Digests log in; users limits who may; a nonce not the gateway's (or another
    connection's: a seen answer logs in nowhere else) gets a new one marked stale, an answer
    for another URL or realm, a malformed Authorization, an over-long user name and an answer
    before the login are refused; a changed password ends the connection, even one that sends
    nothing; a request whose login is being checked when the player half-closes still goes on;
    five failures get 403."""
    import base64
    dev = auth_device(tcp_echo, None)
    seen = dev.requests
    g, port = login_gateway(gateway, tmp_path, dev.port, extra="users = alice, carol\n")
    for u in ("alice", "bob", "carol"):
        _passwd(g, u, f"{u}-password-1", "--digest")
    # carol has a second factor, which a player cannot give.
    lines = g.users.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("user carol "))
    lines.insert(i + 1, "totp carol JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP 0")
    g.users.write_text("\n".join(lines) + "\n")
    url = f"rtsps://localhost:{port}/x"
    c = tls_rtsp(tmp_path, port)
    # No credentials: 401 with the three challenges, the device asked nothing.
    head = first_challenge(c, url)
    assert head.startswith("RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"), head
    ch = challenges(head)
    assert [x.split(",")[0] for x in ch] == ['Digest realm="portgate"'] * 2 + [
        'Basic realm="portgate"'], ch
    assert "algorithm=SHA-256" in ch[0] and "algorithm=MD5" in ch[1] and 'qop="auth"' in ch[1]
    c.cseq = 1
    # A malformed Authorization, an answer for another URL or realm, an over-long user: 401.
    assert c.ask("OPTIONS", url, Authorization="Digest username=alice")[0] == 401
    assert c.ask("OPTIONS", url, Authorization=digest_for(
        "alice", "alice-password-1", "OPTIONS", url + "x", ch[1]))[0] == 401
    assert c.ask("OPTIONS", url, Authorization=digest_for(
        "alice", "alice-password-1", "OPTIONS", url,
        ch[1].replace('realm="portgate"', 'realm="other"')))[0] == 401
    assert c.ask("OPTIONS", url, Authorization="Basic " + base64.b64encode(
        b"a" * 64 + b":alice-password-1").decode())[0] == 401
    # A nonce not the gateway's, and one of another connection's: a new one, stale=true.
    forged = ch[1].replace("nonce=\"", "nonce=\"A")
    c.s.sendall(f"OPTIONS {url} RTSP/1.0\r\nCSeq: 9\r\nAuthorization: "
                f"{digest_for('alice', 'alice-password-1', 'OPTIONS', url, forged)}\r\n\r\n"
                .encode())
    while b"\r\n\r\n" not in c.buf:
        c.buf += c.s.recv(65536)
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"RTSP/1.0 401 ") and b"stale=true" in head, head
    other = tls_rtsp(tmp_path, port)
    theirs = challenges(first_challenge(other, url))[1]
    assert c.ask("OPTIONS", url, Authorization=digest_for(
        "alice", "alice-password-1", "OPTIONS", url, theirs))[0] == 401
    other.close()
    assert seen == []
    # (One refusal line a second: the first is logged.)
    g.wait_log("OPTIONS answered 401: a Digest answer without its username, realm, nonce, uri or "
               "response")
    # Digest SHA-256 logs in (the uri may be a URL the request's lies under, as live555 sends
    # its base URL); the device gets the request without any Authorization.
    status, h, _ = c.ask("DESCRIBE", url + "/track1", Authorization=digest_for(
        "alice", "alice-password-1", "DESCRIBE", url, ch[0], alg="SHA-256"))
    assert status == 200 and h["cseq"] == str(c.cseq), h
    assert len(seen) == 1 and "DESCRIBE " in seen[0] and not auth_header(seen[0]), seen
    # Later requests on the connection go on (the player's credentials removed, or none).
    assert c.ask("OPTIONS", url, Authorization="Basic Z3Vlc3M6Z3Vlc3M=")[0] == 200
    assert c.ask("OPTIONS", url)[0] == 200
    assert len(seen) == 3 and not any(auth_header(r) for r in seen)
    # A changed password ends the connection, which sends nothing meanwhile (a playing stream):
    # the player must connect and log in again.
    _passwd(g, "alice", "alice-password-2")
    c.s.settimeout(10)
    assert c.s.recv(65536) == b"", "the connection outlived the password"
    c.close()
    g.wait_log("the login of alice ended (a password changed, the user is gone, or 12 hours "
               "passed)")
    # A login being checked when the player half-closes: its request still goes on.
    n = len(seen)
    got = tls_half_closed(tmp_path, port, f"OPTIONS {url} RTSP/1.0\r\nCSeq: 5\r\nAuthorization: "
                          f"Basic {base64.b64encode(b'alice:alice-password-2').decode()}\r\n\r\n"
                          .encode())
    assert got.startswith(b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n"), got
    assert len(seen) == n + 1
    # Basic, and Digest MD5, each on a connection of its own.
    basic = "Basic " + base64.b64encode(b"alice:alice-password-2").decode()
    c = tls_rtsp(tmp_path, port)
    assert c.ask("OPTIONS", url, Authorization=basic)[0] == 200
    c.close()
    g.wait_log("user alice logged in from 127.0.0.1 (a player, by Basic)")
    c = tls_rtsp(tmp_path, port)
    md5 = challenges(first_challenge(c, url))[1]
    assert c.ask("OPTIONS", url, Authorization=digest_for(
        "alice", "alice-password-2", "OPTIONS", url, md5))[0] == 200
    c.close()
    g.wait_log("user alice logged in from 127.0.0.1 (a player, by Digest)")
    # An answer (not a request) before a login: 400, and the connection ends.
    c = tls_rtsp(tmp_path, port)
    c.s.sendall(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
    assert c.read_answer()[0] == 400
    c.close()
    # users: bob's password is right, but he may not; carol's second factor: refused.
    before = len(seen)
    c = tls_rtsp(tmp_path, port)
    assert c.ask("OPTIONS", url, Authorization="Basic " + base64.b64encode(
        b"bob:bob-password-1").decode())[0] == 401
    assert c.ask("OPTIONS", url, Authorization="Basic " + base64.b64encode(
        b"carol:carol-password-1").decode())[0] == 401
    g.wait_log("login: map enc: user bob from 127.0.0.1 may not use it (users)")
    g.wait_log("user carol from 127.0.0.1 has a second factor, which a player cannot give")
    # Wrong passwords: the fifth failure from the address bans it (403), whatever comes next.
    status = None
    for _ in range(5):
        status = c.ask("OPTIONS", url, Authorization="Basic " + base64.b64encode(
            b"alice:nope-nope-nope").decode())[0]
        if status == 403:
            break
    assert c.ask("OPTIONS", url, Authorization=basic)[0] == 403
    c.close()
    assert len(seen) == before
    g.wait_log("failed logins within 5 minutes")
    st = g.map_stats("enc")
    assert st["rtsp logins"] == 4 and st["rtsp failed logins"] >= 6, st
    assert "password-1" not in g.log() and "nope-nope" not in g.log()


def tls_half_closed(tmp_path, port, request):
    """Sends request over TLS to the gateway at port, then ends its half of the TCP stream (a FIN,
    which the gateway takes as the end of the client's stream), and returns all it gets."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.crt"))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                d = s.recv(65536)
                assert d, "the gateway closed in the handshake"
                inc.write(d)
        tls.write(request)
        s.sendall(out.read())
        s.shutdown(socket.SHUT_WR)
        got = b""
        while (d := s.recv(65536)):
            inc.write(d)
            try:
                while (r := tls.read(65536)):
                    got += r
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        return got


def first_challenge(c, url):
    """Sends OPTIONS without credentials as c's first request: the head of the answer (text),
    every WWW-Authenticate line kept."""
    c.s.sendall(f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
    while b"\r\n\r\n" not in c.buf:
        c.buf += c.s.recv(65536)
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    c.cseq = 1
    return head.decode()


def test_login_check_refusals(tmp_path):
    """check: users needs auth; with auth = login its names are users' names; a plain rtsp
    mapping has no auth (its passwords would cross the network in the clear)."""
    from conftest import BINARY
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    head = (f"[map enc]\nproto = rtsps\nlisten = 127.0.0.1:{free_ports()}\n"
            f"target = 192.0.2.10:554\ncert = {tmp_path}/c.crt\nkey = {tmp_path}/c.key\n")
    conf = tmp_path / "p.conf"
    for extra, want in (("users = alice\n", "users: applies with auth = login or auth = "
                         "client-cert"),
                        ("auth = login\nusers = al ice\n", "users"),
                        ("auth = login\nusers = a/b\n", "a user's name"),
                        ("auth = password\n", "login (players log in to the gateway")):
        conf.write_text(head + extra)
        r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 1 and want in r.stderr, (extra, r.stderr)
    conf.write_text(head + "auth = login\nusers = alice, bob\n")
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "auth=login users=alice,bob" in r.stdout, r.stdout + r.stderr
    conf.write_text(head.replace("rtsps", "rtsp").replace(f"cert = {tmp_path}/c.crt\nkey = "
                                                          f"{tmp_path}/c.key\n", "")
                    + "auth = login\n")
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "auth" in r.stderr, r.stderr
