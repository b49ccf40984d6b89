"""Reloads (SIGHUP) against what is running: established connections keep the settings they
started with, new ones take the new settings, and a reload that cannot apply changes nothing."""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BINARY, assert_no_sanitizer_report, connect, echo_roundtrip, ffprobe_frames,
                      free_ports, is_refused)

WORKERS = pytest.mark.parametrize("variant", ["1w", "4w"], indirect=True)

MAP = "[map m]\nproto = tcp\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{target}\n{extra}"


def talk(s, payload=b"ping"):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        d = s.recv(65536)
        assert d, "closed"
        got += d
    return got


@WORKERS
def test_removed_mapping_keeps_its_connections(gateway, tcp_echo):
    srv = tcp_echo()
    port, other = free_ports(), free_ports()
    keep = f"[map k]\nproto = tcp\nlisten = 127.0.0.1:{other}\ntarget = 127.0.0.1:{srv.port}\n"
    g = gateway(config=MAP.format(port=port, target=srv.port, extra="") + keep)
    open_conns = [connect(port) for _ in range(4)]
    for s in open_conns:
        assert talk(s) == b"ping"
    out = g.reload(keep)
    assert "0 mappings added, 0 changed, 1 removed, 1 unchanged" in out
    assert "map m: removed; its established connections go on" in out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # it stopped listening
    for s in open_conns:
        assert talk(s, b"still here") == b"still here"
        s.close()
    g.wait_log("map m: tcp 127.0.0.1:", count=4)  # each ended with its line
    assert echo_roundtrip(other) == b"hello portgate"


@WORKERS
def test_tightened_allow_deny(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    g = gateway(config=MAP.format(port=port, target=srv.port, extra=""))
    a = connect(port, source="127.0.0.2")
    assert talk(a) == b"ping"
    out = g.reload(MAP.format(port=port, target=srv.port, extra="deny = 127.0.0.2\n"))
    assert "0 mappings added, 1 changed" in out
    assert is_refused(port, source="127.0.0.2")  # new connections from it are refused
    assert talk(a, b"kept") == b"kept"  # the established one keeps the settings it began with
    out = g.reload(MAP.format(port=port, target=srv.port, extra="allow = 127.0.0.3\n"))
    assert is_refused(port, source="127.0.0.2") and is_refused(port)
    assert echo_roundtrip(port, source="127.0.0.3") == b"hello portgate"
    assert talk(a, b"kept") == b"kept"
    a.close()


@WORKERS
def test_max_conns_lowered_below_the_open_count(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    g = gateway(config=MAP.format(port=port, target=srv.port, extra="max-conns = 10\n"))
    conns = [connect(port) for _ in range(5)]
    for s in conns:
        assert talk(s) == b"ping"
    out = g.reload(MAP.format(port=port, target=srv.port, extra="max-conns = 2\n"))
    assert "0 mappings added, 1 changed" in out
    for s in conns:
        assert talk(s) == b"ping"  # none is closed
    assert is_refused(port)  # 5 open, 2 allowed: a sixth is refused
    for s in conns[:4]:
        s.close()
    deadline = time.time() + 10
    while g.map_stats("m")["open"] > 1:
        assert time.time() < deadline
        time.sleep(0.05)
    assert echo_roundtrip(port) == b"hello portgate"  # 1 open: there is room again
    conns[4].close()


@WORKERS
def test_workers_change_waits_for_a_restart(gateway, tcp_echo, variant):
    srv = tcp_echo()
    port = free_ports()
    conf = "[gateway]\nworkers = {n}\n" + MAP.format(port=port, target=srv.port, extra="")
    g = gateway(config=conf.format(n=variant.workers))
    other = 3 if variant.workers != 3 else 2
    out = g.reload(conf.format(n=other))
    assert f"workers: {variant.workers} running; a change takes effect when portgate is " \
           "restarted" in out
    assert "configuration applied" in out
    assert g.relay_stats()["workers"] == variant.workers
    assert echo_roundtrip(port) == b"hello portgate"


def test_sighup_while_draining_is_ignored(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    g = gateway(config="[gateway]\ndrain-timeout = 30s\n" +
                MAP.format(port=port, target=srv.port, extra=""))
    s = connect(port)
    assert talk(s) == b"ping"
    g.proc.send_signal(signal.SIGTERM)
    g.wait_log("stopped accepting")
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log("SIGHUP while stopping: ignored")
    assert talk(s, b"draining") == b"draining"  # the drain goes on
    s.close()
    assert g.proc.wait(15) == 0
    assert "reloading the configuration" not in g.log()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root to give the gateway an /etc/hosts of its own")
def test_target_name_that_stops_resolving(tmp_path, tcp_echo):
    """A target named by a host name that no longer resolves at a reload: the reload fails and
    says why, and the running configuration (with the address resolved before) goes on."""
    srv = tcp_echo()
    port = free_ports()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 encoder.portgate.test\n")
    conf = tmp_path / "portgate.conf"
    # No admin interface: by default it would listen on 127.0.0.1:8088 and
    # /run/portgate/admin.sock and keep /var/lib/portgate/state.json, which a test running
    # beside this one (or the machine's own gateway) may hold.
    conf.write_text(f"[gateway]\nadmin = off\nadmin-socket = off\n"
                    f"[map m]\nproto = tcp\nlisten = 127.0.0.1:{port}\n"
                    f"target = encoder.portgate.test:{srv.port}\n")
    log = tmp_path / "portgate.log"
    with open(log, "w") as logf:
        # A mount namespace of its own, where /etc/hosts is the test's file.
        p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"', BINARY,
                              "run", "-c", str(conf)], stdout=logf, stderr=logf)
    try:
        deadline = time.time() + 10
        while "configuration applied" not in log.read_text():
            assert time.time() < deadline and p.poll() is None, log.read_text()
            time.sleep(0.05)
        assert echo_roundtrip(port) == b"hello portgate"
        hosts.write_text("127.0.0.1 localhost\n")
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "reload failed" not in log.read_text():
            assert time.time() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert 'target: cannot resolve "encoder.portgate.test"' in text
        assert "keeping the running configuration" in text
        assert echo_roundtrip(port) == b"hello portgate"
        hosts.write_text("127.0.0.1 localhost\n127.0.0.1 encoder.portgate.test\n")
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "configuration applied" not in log.read_text().split("reload failed")[-1]:
            assert time.time() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(15)
    assert_no_sanitizer_report(rc, log.read_text())


@pytest.mark.skipif(not all(shutil.which(t) for t in ("cvlc", "ffprobe", "setpriv")),
                    reason="needs vlc-bin and ffmpeg (tools/bootstrap installs them)")
def test_reload_while_an_rtsp_stream_plays(gateway, clip):
    """A player watching through an rtsp mapping goes on through reloads that change that
    mapping and others: its control connection and its RTP ports are untouched."""
    from conftest import vlc_command
    dev = free_ports()
    vlc = subprocess.Popen(vlc_command(clip, "127.0.0.1", dev), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", dev)) == 0:
                    break
            assert time.time() < deadline
            time.sleep(0.1)
        port, other = free_ports(), free_ports()
        conf = (f"[map enc]\nproto = rtsp\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{dev}\n"
                "rtp-ports = 20700-20799\n{extra}")
        g = gateway(config=conf.format(extra="max-sessions = 8\n"))
        got = []
        t = threading.Thread(target=lambda: got.append(
            ffprobe_frames(f"rtsp://127.0.0.1:{port}/live", "udp", seconds=6)))
        t.start()
        g.wait_log("rtsp 127.0.0.1:", timeout=20)  # a session is set up
        time.sleep(1)
        out = g.reload(conf.format(extra="max-sessions = 4\n"))
        assert "0 mappings added, 1 changed" in out
        out = g.reload(conf.format(extra="max-sessions = 4\n") +
                       f"[map web]\nproto = tcp\nlisten = 127.0.0.1:{other}\n"
                       f"target = 127.0.0.1:{dev}\n")
        assert "1 mappings added, 0 changed" in out
        t.join(60)
        assert got and got[0] >= 100, got  # 6 s at 25 frames a second, less the start
        assert "its mapping was removed" not in g.log()
        g.wait_log("stream ended (TEARDOWN)")
    finally:
        vlc.kill()
        vlc.wait()
