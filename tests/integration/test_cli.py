"""The command line, reload, shutdown, and start-up errors."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BINARY, BULK, ROOT, assert_no_sanitizer_report, assert_spliced, connect,
                      echo_roundtrip, free_ports, is_refused, recv_all, roundtrip)

# Reload, drain and counters are coordinated across the workers: these run with one and with
# more workers than this machine has cores.
WORKERS = pytest.mark.parametrize("variant", ["1w", "4w"], indirect=True)
# Those that relay bytes while the gateway reloads, drains or counts run on both relay paths
# too, and move bulk flows that the splice path splices (see test_tcp.py).
RELAY = pytest.mark.parametrize("variant", ["splice-1w", "splice-4w", "copy-1w", "copy-4w"],
                                indirect=True)


def run(*args, **kw):
    """Runs portgate to its end. A sanitizer's report fails the test here: in a sanitizer
    build its exit status could otherwise pass for the 1 of a configuration error."""
    r = subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=30, **kw)
    assert_no_sanitizer_report(r.returncode, r.stderr)
    return r


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "run" in r.stdout and "check" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("portgate ")
    for cmd in ("run", "check"):
        r = run(cmd, "--help")
        assert r.returncode == 0
        for opt in ("--config", "--map", "PROTO:LISTEN=TARGET", "max-conns-per-ip"):
            assert opt in r.stdout, (cmd, opt)
        # Every protocol of the table, and the keys a protocol adds.
        assert "PROTO    tcp, udp, tls, http, https, rtsp or rtsps\n" in r.stdout, r.stdout
        assert "rtsp: rtp-ports" in r.stdout, r.stdout


def test_usage_errors():
    r = run()
    assert r.returncode == 2
    r = run("frobnicate")
    assert r.returncode == 2 and 'unknown command "frobnicate"' in r.stderr
    r = run("run")
    assert r.returncode == 2 and "no mappings" in r.stderr
    r = run("check")
    assert r.returncode == 2 and "no mappings" in r.stderr
    r = run("run", "--bogus")
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = run("run", "--map")
    assert r.returncode == 2 and "needs a value" in r.stderr
    r = run("check", "-c", "a", "-c", "b")
    assert r.returncode == 2 and "-c given twice" in r.stderr
    r = run("check", "--map", "tcp:0.0.0.0:1=192.0.2.1:1", "extra")
    assert r.returncode == 2 and 'unexpected argument "extra"' in r.stderr


def test_check_example_config():
    r = run("check", "-c", os.path.join(ROOT, "examples", "portgate.conf"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ok"
    assert lines[1].split()[:4] == ["NAME", "PROTO", "LISTEN", "TARGET"]
    assert any("encoder-web" in l for l in lines)


def test_check_reports_every_error(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[gateway]\nlog-level = chatty\n"
                    "[map web]\nproto = tcp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.10:80\n"
                    "allow = 10.0.0.0/33\n"
                    "[map web]\n"
                    "[map rtp]\nproto = udp\nlisten = 0.0.0.0:5000\ntarget = 192.0.2.10:5000\n"
                    "idle-timeout = soon\ncolour = red\n")
    r = run("check", "-c", str(conf), "--map", "tcp:0.0.0.0:80=192.0.2.1:80")
    assert r.returncode == 1
    assert r.stdout == ""
    err = r.stderr
    assert f'{conf}:2: [gateway] log-level: "chatty": expected error, warn, info or debug' in err
    assert f'{conf}:7: [map web] allow: "10.0.0.0/33": prefix longer than 32' in err
    assert f"{conf}:8: [map web] is defined twice (first at {conf}:3)" in err
    assert f'{conf}:13: [map rtp] idle-timeout: "soon": expected a duration' in err
    assert f'{conf}:14: [map rtp] unknown key "colour"' in err
    assert f"--map 1: [map cli-1] listen: tcp ports 80-80 overlap [map web] at {conf}:3" in err
    assert "6 errors" in err
    # Fix the file, and the clash with the --map is still reported.
    conf.write_text("[map web]\nproto = tcp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.10:80\n")
    r = run("check", "-c", str(conf), "--map", "tcp:0.0.0.0:80=192.0.2.1:80")
    assert r.returncode == 1
    assert "--map 1: [map cli-1] listen: tcp ports 80-80 overlap [map web]" in r.stderr
    # check binds nothing: a port in use is not its business.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = s.getsockname()[1]
        r = run("check", "--map", f"tcp:127.0.0.1:{p}=192.0.2.1:80")
        assert r.returncode == 0 and r.stdout.startswith("ok\n")


def test_run_with_bad_config_exits_1(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[map x]\nproto = tcp\n")
    r = run("run", "-c", str(conf))
    assert r.returncode == 1
    assert f"{conf}:1: [map x] missing listen" in r.stderr


def test_port_in_use(gateway):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = s.getsockname()[1]
        other = free_ports()
        g = gateway("--map", f"tcp:127.0.0.1:{other}=192.0.2.1:80,name=free",
                    "--map", f"tcp:127.0.0.1:{p}=192.0.2.1:80,name=busy", ready=False)
        rc = g.proc.wait(10)
        log = g.log()
        assert_no_sanitizer_report(rc, log)
        assert rc == 1
        assert f"map busy: cannot listen on tcp 127.0.0.1:{p}: Address already in use" in log
        # Nothing was left listening.
        with socket.socket() as t:
            assert t.connect_ex(("127.0.0.1", other)) != 0


CONF = """[gateway]
drain-timeout = {drain}

[map keep]
proto = tcp
listen = 127.0.0.1:{p_keep}
target = 127.0.0.1:{t}
{extra}
"""


@RELAY
def test_reload_keeps_running_transfer(gateway, tcp_echo, tmp_path, variant):
    """A long transfer on an unchanged mapping survives reloads that add and remove others."""
    total = 40 * 1024 * 1024
    got = {"n": 0}

    def sink(c):
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got["n"] += len(d)
        c.sendall(b"%d" % got["n"])

    srv = tcp_echo(handler=sink)
    echo = tcp_echo()
    p_keep, p_new = free_ports(), free_ports()
    base = dict(drain="30s", p_keep=p_keep, t=srv.port)
    g = gateway(config=CONF.format(extra="", **base))

    c = connect(p_keep, timeout=30)
    done = threading.Event()
    reloaded = threading.Event()
    sent = {"n": 0}
    err = []

    def pump():
        try:
            # Writes of 256 KiB: more than one read, so that the splice path splices them. It
            # goes on until the reloads are over, however long they take on a busy machine.
            chunk = b"r" * 262144
            while sent["n"] < total or not reloaded.is_set():
                c.sendall(chunk)
                sent["n"] += len(chunk)
                time.sleep(0.004)
            c.shutdown(socket.SHUT_WR)
            err.append(recv_all(c))
        except Exception as e:  # noqa: BLE001
            err.append(e)
        done.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    added = CONF.format(extra=f"\n[map added]\nproto = tcp\nlisten = 127.0.0.1:{p_new}\n"
                              f"target = 127.0.0.1:{echo.port}\n", **base)
    out = g.reload(added)
    assert "1 mappings added, 0 changed, 0 removed, 1 unchanged" in out
    assert echo_roundtrip(p_new) == b"hello portgate"
    out = g.reload(CONF.format(extra="", **base))
    assert "0 mappings added, 0 changed, 1 removed, 1 unchanged" in out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", p_new)) != 0  # stopped listening
    assert not done.is_set()  # the transfer was still running during the reloads
    reloaded.set()
    t.join(60)
    assert err == [b"%d" % sent["n"]] and sent["n"] >= total
    assert_spliced(g, "keep", variant, more_than=total // 2)


@RELAY
def test_reload_changed_mapping_applies_to_new_connections(gateway, tcp_echo, variant):
    a, b = tcp_echo(), tcp_echo()
    port = free_ports()
    conf = "[map m]\nproto = tcp\nlisten = 127.0.0.1:{p}\ntarget = 127.0.0.1:{t}\n"
    g = gateway(config=conf.format(p=port, t=a.port))
    old = connect(port)
    old.sendall(b"1")
    assert old.recv(1) == b"1"
    out = g.reload(conf.format(p=port, t=b.port))
    assert "0 mappings added, 1 changed" in out
    assert echo_roundtrip(port) == b"hello portgate"
    assert b.accepted == 1  # new connections go to the new target
    old.sendall(b"2")
    assert old.recv(1) == b"2"  # the established one still talks to the old target
    assert a.accepted == 1
    # Both carry bulk flows: the old one on the old mapping, a new one on the new.
    data = os.urandom(BULK)
    assert roundtrip(old, data) == data
    old.close()
    assert echo_roundtrip(port, data) == data
    assert (a.accepted, b.accepted) == (1, 2)
    assert_spliced(g, "m", variant, more_than=BULK)


def echo_over(transport, family, host, port, payload=b"hello portgate"):
    """What an echo behind the gateway sends back over TCP or UDP."""
    if transport == "tcp":
        return echo_roundtrip(port, payload, host=host, family=family)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(payload, (host, port))
        return s.recv(65536)


@WORKERS
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_reload_moves_a_port_between_wildcard_and_address(gateway, tcp_echo, udp_echo, transport):
    """A mapping moves from every address of a family to one of them on the same port, and
    back: the new socket binds while the old one still holds the port, and no reload fails."""
    for family, wild, one, host in ((socket.AF_INET, "0.0.0.0", "127.0.0.1", "127.0.0.1"),
                                    (socket.AF_INET6, "[::]", "[::1]", "::1")):
        srv = tcp_echo() if transport == "tcp" else udp_echo()
        port = free_ports()
        conf = (f"[map m]\nproto = {transport}\nlisten = {{addr}}:{port}\n"
                f"target = 127.0.0.1:{srv.port}\n")
        g = gateway(config=conf.format(addr=wild))
        assert echo_over(transport, family, host, port) == b"hello portgate"
        for addr in (one, wild, one):
            out = g.reload(conf.format(addr=addr))
            assert "configuration applied: 0 mappings added, 1 changed" in out, out
            assert echo_over(transport, family, host, port) == b"hello portgate"
            if family == socket.AF_INET:
                # Another address of the family answers only while the wildcard is bound: a
                # wildcard left bound after the move would still answer there. (IPv6 loopback
                # has one address only.)
                if addr == wild:
                    assert echo_over(transport, family, "127.0.0.2", port) == b"hello portgate"
                else:
                    with pytest.raises(OSError):  # refused, reset, or no answer
                        echo_over(transport, family, "127.0.0.2", port)
        g.stop()


@WORKERS
def test_reload_with_broken_config_keeps_running(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    conf = f"[map m]\nproto = tcp\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{srv.port}\n"
    g = gateway(config=conf)
    out = g.reload(conf + "max-conns = many\n")
    assert 'max-conns: "many": expected a whole number' in out
    assert "reload failed: 1 errors; keeping the running configuration" in out
    assert echo_roundtrip(port) == b"hello portgate"
    # A reload whose bind fails changes nothing either.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        out = g.reload(conf + f"[map n]\nproto = tcp\nlisten = 127.0.0.1:{busy}\n"
                              f"target = 127.0.0.1:{srv.port}\n")
        assert f"map n: cannot listen on tcp 127.0.0.1:{busy}: Address already in use" in out
        assert "reload failed; keeping the running configuration" in out
    assert echo_roundtrip(port) == b"hello portgate"
    out = g.reload(conf)  # and a good one still applies
    assert "configuration applied" in out


@RELAY
def test_sigterm_drains(gateway, tcp_echo, variant):
    srv = tcp_echo()
    port = free_ports()
    g = gateway(config=f"[gateway]\ndrain-timeout = 10s\n[map m]\nproto = tcp\n"
                       f"listen = 127.0.0.1:{port}\ntarget = 127.0.0.1:{srv.port}\n")
    c = connect(port)
    c.sendall(b"a")
    assert c.recv(1) == b"a"
    # A second connection carries a bulk flow while the gateway drains.
    bulk = connect(port)
    bulk.sendall(b"a")
    assert bulk.recv(1) == b"a"
    g.proc.send_signal(signal.SIGTERM)
    g.wait_log("stopped accepting; waiting up to 10000ms for 2 connections")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # not accepting any more
    c.sendall(b"b")
    assert c.recv(1) == b"b"  # the established connection still works
    data = os.urandom(BULK)
    assert roundtrip(bulk, data) == data
    bulk.close()
    # c keeps the gateway running, so its counters can still be asked for.
    assert_spliced(g, "m", variant, more_than=BULK, still_open=1)
    assert g.proc.poll() is None
    c.close()
    assert g.proc.wait(5) == 0


@RELAY
def test_sigterm_drain_timeout(gateway, tcp_echo, variant):
    """The drain timeout ends what is still open: an idle connection, and one in the middle of
    a bulk flow to a target that stopped reading. On the splice path that one holds its bytes in
    a pipe or in a buffer, depending on whether its last read was spliced (a read that finds
    the client's socket nearly empty goes back to copying): either is let go."""
    stop = threading.Event()

    def handler(c):
        if c.recv(5) == b"stall":
            stop.wait(20)  # reads nothing more
        else:
            c.sendall(b"a")
            recv_all(c)

    srv = tcp_echo(handler=handler)
    port = free_ports()
    g = gateway(config=f"[gateway]\ndrain-timeout = 500ms\n[map m]\nproto = tcp\n"
                       f"listen = 127.0.0.1:{port}\ntarget = 127.0.0.1:{srv.port}\n")
    c = connect(port)
    c.sendall(b"a")
    assert c.recv(1) == b"a"
    stalled = connect(port)
    stalled.sendall(b"stall")
    stalled.setblocking(False)
    chunk = os.urandom(256 * 1024)
    sent, last = 0, time.time()
    while time.time() - last < 0.5:  # until the buffers on the way are full
        try:
            sent += stalled.send(chunk)
            last = time.time()
        except BlockingIOError:
            time.sleep(0.02)
    assert sent > BULK, sent
    r = g.relay_stats()
    assert r["open"] == 2
    if variant.copy:
        assert r["splice"] == "off" and r["pipes"] == 0, r
    else:
        assert r["splice"] == "on" and r["pipes"] <= 1, r
    t0 = time.time()
    assert g.stop() == 0
    assert 0.4 < time.time() - t0 < 5
    assert c.recv(1) == b""
    assert "drain-timeout reached" in g.log()
    stop.set()
    stalled.close()


@WORKERS
def test_sigint_without_connections_exits_at_once(gateway, tcp_echo):
    srv = tcp_echo()
    g = gateway("--map", f"tcp:127.0.0.1:{free_ports()}=127.0.0.1:{srv.port}")
    assert g.stop(signal.SIGINT) == 0
    assert "SIGINT: stopping; no open connections" in g.log()


def test_config_and_map_combined(gateway, tcp_echo, tmp_path):
    srv = tcp_echo()
    p1, p2 = free_ports(), free_ports()
    gateway("--map", f"tcp:127.0.0.1:{p2}=127.0.0.1:{srv.port}",
            config=f"[map f]\nproto = tcp\nlisten = 127.0.0.1:{p1}\ntarget = 127.0.0.1:{srv.port}\n")
    assert echo_roundtrip(p1) == b"hello portgate"
    assert echo_roundtrip(p2) == b"hello portgate"


def test_target_host_name(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    g = gateway("--map", f"tcp:127.0.0.1:{port}=localhost:{srv.port}")
    assert echo_roundtrip(port) == b"hello portgate"
    assert f"-> 127.0.0.1:{srv.port}" in g.log() or f"-> [::1]:{srv.port}" in g.log()


def test_reload_applies_log_level(gateway, tcp_echo):
    srv = tcp_echo()
    port = free_ports()
    conf = (f"[gateway]\nlog-level = {{lvl}}\n[map m]\nproto = tcp\nlisten = 127.0.0.1:{port}\n"
            f"target = 127.0.0.1:{srv.port}\n")
    g = gateway(config=conf.format(lvl="info"))
    echo_roundtrip(port)
    g.wait_log("ended after")
    assert ": connecting" not in g.log()
    g.reload(conf.format(lvl="debug"))
    echo_roundtrip(port)
    g.wait_log(": connecting")  # debug lines now
    g.reload(conf.format(lvl="warn"))
    n = g.log().count("ended after")
    echo_roundtrip(port)
    time.sleep(0.3)
    assert g.log().count("ended after") == n  # info lines are off


@RELAY
def test_sigusr1_logs_counters(gateway, tcp_echo, udp_echo, variant):
    srv, usrv = tcp_echo(), udp_echo()
    p1, p2 = free_ports(), free_ports()
    g = gateway("--map", f"tcp:127.0.0.1:{p1}=127.0.0.1:{srv.port},allow=127.0.0.1,name=t",
                "--map", f"udp:127.0.0.1:{p2}=127.0.0.1:{usrv.port},name=u")
    echo_roundtrip(p1)
    assert is_refused(p1, source="127.0.0.2")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.sendto(b"x", ("127.0.0.1", p2))
    assert u.recv(10) == b"x"
    g.wait_log("ended after")
    g.proc.send_signal(signal.SIGUSR1)
    g.wait_log("map u: stats:")
    log = g.log()
    assert ("map t: stats: 0 open, 1 accepted, 1 refused by allow/deny, 0 refused by limits, "
            "0 connect failures, 0 evicted, 14 bytes to targets, 14 bytes to clients, "
            "0 bytes spliced") in log  # a few bytes are copied on both paths
    assert "map u: stats: 1 open, 1 accepted, 0 refused by allow/deny" in log
    # A bulk echo: counted each way, and as spliced on the splice path.
    data = os.urandom(BULK)
    assert echo_roundtrip(p1, data) == data
    st = assert_spliced(g, "t", variant, more_than=BULK)
    assert st["accepted"] == 2
    assert st["bytes to targets"] == st["bytes to clients"] == 14 + BULK


@pytest.mark.parametrize("variant", ["splice", "copy"], indirect=True)
def test_busy_poll_relays_and_applies_at_reload(gateway, tcp_echo, variant):
    srv = tcp_echo()
    port = free_ports()
    conf = ("[gateway]\nworkers = 2\nbusy-poll = {bp}\n"
            f"[map m]\nproto = tcp\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{srv.port}\n")
    g = gateway(config=conf.format(bp="200us"))
    c = connect(port)
    for i in range(200):  # round trips, each relayed while or after the worker polls
        c.sendall(b"%d" % i)
        assert c.recv(16) == b"%d" % i
    data = os.urandom(BULK)
    assert roundtrip(c, data) == data  # and a bulk flow
    assert "configuration applied" in g.reload(conf.format(bp="off"))
    c.sendall(b"after")
    assert c.recv(16) == b"after"
    assert roundtrip(c, data) == data
    c.close()
    out = g.reload(conf.format(bp="50"))
    assert 'busy-poll: "50": expected off or microseconds such as 50us' in out
    assert "keeping the running configuration" in out
    assert echo_roundtrip(port) == b"hello portgate"
    assert_spliced(g, "m", variant, more_than=BULK)


def test_check_and_run_agree_on_what_cannot_bind(tmp_path):
    """What run could not bind, check refuses, with the same message: an IPv4-mapped listen
    address (IPv6 listeners are IPv6-only), and RTP ports another mapping uses."""
    port = free_ports()
    cases = [
        (["--map", f"tcp:[::ffff:127.0.0.1]:{port}=192.0.2.1:80"],
         f'listen on 127.0.0.1:{port} instead'),
        (["--map", f"rtsp:127.0.0.1:{port}=192.0.2.1:554,rtp-ports=20000-20099",
          "--map", f"rtsp:[::1]:{port}=192.0.2.1:554,rtp-ports=20098-20199"],
         "--map 2: [map cli-2] rtp-ports 20098-20199 overlap the rtp-ports of [map cli-1]"),
        (["--map", f"rtsp:127.0.0.1:{port}=192.0.2.1:554,rtp-ports=20000-20099",
          "--map", "udp:127.0.0.1:20010=192.0.2.1:5000"],
         "--map 2: [map cli-2] listen: udp ports 20010-20010 overlap the rtp-ports of [map cli-1]"),
    ]
    for args, msg in cases:
        for cmd in ("check", "run"):
            r = run(cmd, *args)
            assert r.returncode == 1 and msg in r.stderr, (cmd, args, r.stderr)
