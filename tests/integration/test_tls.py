"""proto = tls: TLS outside, plain TCP inside, through the real binary over loopback sockets,
with Python's ssl (OpenSSL), curl, openssl s_client and sslscan as clients."""
import datetime
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BINARY, connect, echo_handler, free_ports, recv_all, recv_exactly
from tlshelper import CA, client_context, peer_cn, rsa_key, tls_connect, write_key


@pytest.fixture
def ca():
    return CA()


def tls_map(name, port, target_port, crt, key=None, extra=""):
    return (f"[map {name}]\nproto = tls\nlisten = 127.0.0.1:{port}\n"
            f"target = 127.0.0.1:{target_port}\ncert = {crt}\n"
            + (f"key = {key}\n" if key else "") + extra)


def hash_sink(c):
    """Reads until EOF, then answers the SHA-256 of what it read and closes."""
    h = hashlib.sha256()
    while True:
        d = c.recv(262144)
        if not d:
            break
        h.update(d)
    c.sendall(h.hexdigest().encode())


def source(n):
    """A server that sends n seeded bytes and closes."""
    data = os.urandom(n)

    def handler(c):
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        recv_all(c)
    return data, handler


def test_echo_upload_download(gateway, tcp_echo, tmp_path, ca):
    """Bytes go through unchanged both ways, small and bulk, and a half-close from either side
    is passed on: the client's end of its stream as the FIN to the target, the target's FIN as
    close_notify then the FIN to the client."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    ctx = client_context(tmp_path / "ca.pem")
    echo, sink = tcp_echo(), tcp_echo(handler=hash_sink)
    data, src_handler = source(8 << 20)
    src = tcp_echo(handler=src_handler)
    p = free_ports(3)
    g = gateway(config=tls_map("echo", p[0], echo.port, crt, key)
                + tls_map("up", p[1], sink.port, crt, key)
                + tls_map("down", p[2], src.port, crt, key))
    s = tls_connect(p[0], ctx)
    assert s.version() in ("TLSv1.3", "TLSv1.2")
    for msg in (b"x", b"hello portgate", os.urandom(100000)):
        s.sendall(msg)
        assert recv_exactly(s, len(msg)) == msg
    s.close()

    up = os.urandom(8 << 20)
    s = tls_connect(p[1], ctx)
    s.sendall(up)
    socket.socket.shutdown(s, socket.SHUT_WR)  # the TCP half-close, the TLS session kept
    assert recv_all(s).decode() == hashlib.sha256(up).hexdigest()
    s.close()

    s = tls_connect(p[2], ctx)
    got = recv_all(s)
    assert got == data
    s.close()
    g.wait_log("map down: tcp", 1)
    g.wait_log(f"{len(data)} bytes to client: closed by target")
    line = [l for l in g.log().splitlines() if "map down: tcp" in l][0]
    assert re.search(r"\[TLSv1\.3 TLS_AES_128_GCM_SHA256 sni=localhost\]$", line), line
    st = g.map_stats("echo")
    assert st["tls handshakes"] == 1 and st["tls handshake failures"] == 0, st
    assert st["bytes spliced"] == 0
    assert g.stop() == 0


def test_curl_keepalive_and_many_clients(gateway, tmp_path, ca):
    """curl over HTTPS through a tls mapping to a plain HTTP server: keep-alive requests on one
    connection, and 50 clients at once."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_text("A" * 1000)
    (www / "big.bin").write_bytes(os.urandom(3 << 20))
    hport, port = free_ports(2)
    web = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--protocol", "HTTP/1.1",
                            "--bind", "127.0.0.1", str(hport)], cwd=www,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", hport), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        g = gateway(config=tls_map("web", port, hport, crt, key))
        url = f"https://localhost:{port}"
        out = subprocess.run(["curl", "-sS", "--cacert", str(tmp_path / "ca.pem"), "-w",
                              "%{http_code} %{num_connects}\\n"]
                             + [a for u in ("a.txt", "big.bin", "a.txt")
                                for a in ("-o", "/dev/null", f"{url}/{u}")],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.split("\n")[:3] == ["200 1", "200 0", "200 0"], out
        procs = [subprocess.Popen(["curl", "-sS", "--cacert", str(tmp_path / "ca.pem"),
                                   f"{url}/big.bin"], stdout=subprocess.PIPE)
                 for _ in range(50)]
        want = hashlib.sha256((www / "big.bin").read_bytes()).hexdigest()
        for pr in procs:
            body, _ = pr.communicate(timeout=60)
            assert hashlib.sha256(body).hexdigest() == want
        assert g.map_stats("web")["tls handshakes"] == 51
    finally:
        web.kill()
        web.wait()


def test_sni_chooses_the_certificate(gateway, tcp_echo, tmp_path, ca):
    a, ak, _ = ca.write_leaf(tmp_path, "a", ["a.example.org"])
    b, bk, _ = ca.write_leaf(tmp_path, "b", ["*.b.example.org"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    ctx = client_context(tmp_path / "ca.pem")
    srv = tcp_echo()
    port = free_ports()
    gateway(config=tls_map("sni", port, srv.port, f"{a},{b}", f"{ak},{bk}"))
    for name, cn in (("a.example.org", "a.example.org"), ("cam.b.example.org", "*.b.example.org"),
                     ("A.EXAMPLE.ORG", "a.example.org")):
        s = tls_connect(port, ctx, server_hostname=name)
        assert peer_cn(s) == cn
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        s.close()
    # A name no certificate has, or none at all: the first answers, and a checking client
    # refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(port, ctx, server_hostname="other.example.org")
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(port, ctx, server_hostname="x.y.b.example.org")  # one label only
    nocheck = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    nocheck.check_hostname = False
    nocheck.verify_mode = ssl.CERT_NONE
    s = tls_connect(port, nocheck, server_hostname=None)
    assert peer_cn(s) == "a.example.org"
    s.close()


def test_alpn(gateway, tcp_echo, tmp_path, ca):
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    srv = tcp_echo()
    p = free_ports(2)
    gateway(config=tls_map("alpn", p[0], srv.port, crt, key, "alpn = http/1.1\n")
            + tls_map("none", p[1], srv.port, crt, key))
    for port, offered, chosen in ((p[0], ["h2", "http/1.1"], "http/1.1"), (p[0], ["h2"], None),
                                  (p[1], ["h2", "http/1.1"], None)):
        ctx = client_context(tmp_path / "ca.pem")
        ctx.set_alpn_protocols(offered)
        s = tls_connect(port, ctx)
        assert s.selected_alpn_protocol() == chosen, (port, offered)
        s.close()


def test_resumption_with_tickets(gateway, tcp_echo, tmp_path, ca):
    """A ticket from the gateway resumes a session (TLS 1.3 and 1.2), on this mapping only."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    srv = tcp_echo()
    p = free_ports(2)
    g = gateway(config=tls_map("one", p[0], srv.port, crt, key)
                + tls_map("two", p[1], srv.port, crt, key))
    for maxv in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_context(tmp_path / "ca.pem", maximum=maxv)
        s = tls_connect(p[0], ctx)
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"  # the TLS 1.3 ticket comes after the handshake
        sess = s.session
        s.close()
        assert sess is not None and sess.has_ticket
        s = tls_connect(p[0], ctx, session=sess)
        assert s.session_reused, maxv
        if maxv == ssl.TLSVersion.TLSv1_3:
            # A TLS 1.3 client should use a ticket once (RFC 8446 C.4; browsers do, and
            # OpenSSL's with a session cache, as curl's, offers a used one no more): the
            # resumed connection brings a new one (its session id is the ticket's digest),
            # which resumes the next.
            s.sendall(b"ping")
            assert recv_exactly(s, 4) == b"ping"
            again = s.session
            s.close()
            assert again.has_ticket and again.id != sess.id, "no new ticket when resumed"
            s = tls_connect(p[0], ctx, session=again)
            assert s.session_reused, "a ticket from a resumed connection"
        s.close()
        # The other mapping does not take it: a full handshake.
        s = tls_connect(p[1], ctx, session=sess)
        assert not s.session_reused
        s.close()
    st = g.map_stats("one")
    assert st["tls handshakes"] == 5 and st["tls resumed"] == 3, st
    # openssl s_client says the same. A TLS 1.3 ticket comes after the handshake: the client
    # reads until the target closes, then saves the session.
    hello = tcp_echo(handler=lambda c: (c.sendall(b"hello"), c.shutdown(socket.SHUT_WR),
                                        recv_all(c)))
    g.reload(tls_map("one", p[0], hello.port, crt, key))
    sess_file = tmp_path / "sess.pem"
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{p[0]}", "-servername", "localhost",
            "-CAfile", str(tmp_path / "ca.pem"), "-ign_eof"]
    out = subprocess.run(base + ["-sess_out", str(sess_file)], input=b"", capture_output=True,
                         timeout=10).stdout.decode()
    assert "New, TLSv1.3" in out and "hello" in out, out
    out = subprocess.run(base + ["-sess_in", str(sess_file)], input=b"",
                         capture_output=True, timeout=10).stdout.decode()
    assert "Reused, TLSv1.3" in out, out
    out = subprocess.run(base[:-1] + ["-tls1_2", "-reconnect"], input=b"", capture_output=True,
                         timeout=20).stdout.decode()
    assert out.count("Reused, TLSv1.2") == 5, out


def test_min_tls_and_protocol_errors(gateway, tcp_echo, tmp_path, ca):
    """Handshakes that fail (an old version, a client speaking plain HTTP, one that sends
    nothing) end before the target is ever connected to, each with its reason logged."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    srv = tcp_echo()
    p = free_ports(2)
    g = gateway(config=tls_map("v13", p[0], srv.port, crt, key,
                               "min-tls = 1.3\nhandshake-timeout = 1s\n")
                + tls_map("v12", p[1], srv.port, crt, key))
    with pytest.raises(ssl.SSLError):
        tls_connect(p[0], client_context(tmp_path / "ca.pem", maximum=ssl.TLSVersion.TLSv1_2))
    s = tls_connect(p[1], client_context(tmp_path / "ca.pem", maximum=ssl.TLSVersion.TLSv1_2))
    assert s.version() == "TLSv1.2"
    s.close()
    # TLS 1.0 and 1.1 are refused everywhere.
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p[1]}", "-tls1_1"],
                         input=b"", capture_output=True, timeout=10)
    assert out.returncode != 0
    # Plain HTTP to a TLS port.
    c = connect(p[0])
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_all(c) in (b"",) or True  # OpenSSL may answer an alert; the gateway closes
    c.close()
    # Silence: cut off after handshake-timeout.
    c = connect(p[0])
    t0 = time.time()
    assert recv_all(c) == b""
    assert 0.8 < time.time() - t0 < 5
    c.close()
    g.wait_log("tls handshake: not done within 1000ms")
    log = g.log()
    assert "tls handshake: unsupported protocol" in log
    assert "tls handshake: http request" in log or "tls handshake: wrong version number" in log
    assert srv.accepted == 1  # only the one good handshake reached the target
    assert g.map_stats("v13")["tls handshake failures"] == 3


def _make_expired(tmp_path, ca):
    old = datetime.datetime.utcnow() - datetime.timedelta(days=10)
    return ca.write_leaf(tmp_path, "expired", ["localhost"], not_before=old,
                         not_after=old + datetime.timedelta(days=5))


def test_check_refuses_bad_certificates(tmp_path, ca):
    """portgate check names the key and the file, and says what is wrong: never a listener
    that fails every handshake."""
    crt, key, _ = ca.write_leaf(tmp_path, "good", ["localhost"])
    other_crt, other_key, _ = ca.write_leaf(tmp_path, "other", ["localhost"])
    exp_crt, exp_key, _ = _make_expired(tmp_path, ca)
    future = datetime.datetime.utcnow() + datetime.timedelta(days=3)
    fut_crt, fut_key, _ = ca.write_leaf(tmp_path, "future", ["localhost"], not_before=future)
    weak_key = tmp_path / "weak.key"
    write_key(weak_key, rsa_key(1024))
    weak_cert, _ = ca.issue(["localhost"], key=rsa_key(1024))
    from cryptography.hazmat.primitives import serialization
    weak_crt = tmp_path / "weak.crt"
    (tmp_path / "weak.crt").write_bytes(weak_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "weak2.key").write_bytes(b"")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    ocsp_other = tmp_path / "other.ocsp"
    from cryptography import x509
    ocsp_other.write_bytes(ca.ocsp_response(x509.load_pem_x509_certificate(
        other_crt.read_bytes())))
    cases = [
        ("", "cert: a TLS mapping needs its certificate"),
        (f"cert = {tmp_path}/missing.pem\n", f"cert: {tmp_path}/missing.pem: No such file"),
        ("cert = relative.pem\n", '"relative.pem": give an absolute path'),
        (f"cert = {junk}\nkey = {key}\n", f"cert: {junk}: no PEM certificate in it"),
        (f"cert = {crt}\n", f"key: {crt}: no PEM private key in it; give key = FILE"),
        (f"cert = {crt}\nkey = {other_key}\n",
         f"key: {other_key} does not match the certificate in {crt}"),
        (f"cert = {exp_crt}\nkey = {exp_key}\n", f"cert: {exp_crt}: expired on "),
        (f"cert = {fut_crt}\nkey = {fut_key}\n", f"cert: {fut_crt}: not valid before "),
        (f"cert = {weak_crt}\nkey = {weak_key}\n", "an RSA key of 1024 bits is too weak"),
        (f"cert = {crt},{other_crt}\nkey = {key}\n", "key: 1 files for 2 certificates"),
        (f"cert = {crt}\nkey = {key}\nocsp = {ocsp_other}\n",
         f"ocsp: {ocsp_other}: not about the certificate in {crt}"),
        (f"cert = {crt}\nkey = {key}\nocsp = {junk}\n", "not a successful DER OCSP response"),
        (f"cert = {crt}\nkey = {key}\nmin-tls = 1.1\n", '"1.1": 1.2 or 1.3'),
        (f"cert = {crt}\nkey = {key}\nciphers = NOPE\n", 'ciphers: "NOPE": no cipher'),
        (f"cert = {crt}\nkey = {key}\nhandshake-timeout = 0\n", "1s or more"),
        (f"cert = {crt}\nkey = {key}\nalpn = h2,\n", "expected protocol names"),
    ]
    for keys, want in cases:
        conf = tmp_path / "c.conf"
        conf.write_text("[gateway]\nadmin = off\n[map t]\nproto = tls\nlisten = 127.0.0.1:8443\n"
                        "target = 127.0.0.1:80\n" + keys)
        out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert out.returncode == 1, (keys, out.stdout)
        assert want in out.stderr, (keys, out.stderr)
        assert re.match(rf"{conf}:\d+: \[map t\] ", out.stderr), out.stderr
    conf.write_text("[gateway]\nadmin = off\n[map t]\nproto = tls\nlisten = 127.0.0.1:8443\n"
                    f"target = 127.0.0.1:80\ncert = {crt}\nkey = {key}\n")
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"cert={crt} key={key} min-tls=1.2 handshake-timeout=10s" in out.stdout


def test_reload_swaps_certificates_without_dropping(gateway, tcp_echo, tmp_path, ca):
    """SIGHUP reads the files again: new connections get the new certificate, open ones go on
    with theirs; unchanged files leave the mapping as it runs; a broken file keeps the old."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    ctx = client_context(tmp_path / "ca.pem")
    srv = tcp_echo()
    port = free_ports()
    conf = tls_map("web", port, srv.port, crt, key)
    g = gateway(config=conf)
    old = tls_connect(port, ctx)
    fp1 = hashlib.sha256(old.getpeercert(binary_form=True)).hexdigest()
    tail = g.reload(conf)
    assert "0 changed" in tail and "1 unchanged" in tail, tail
    # A renewal: the same paths, new contents.
    ca.write_leaf(tmp_path, "gw", ["localhost"])
    tail = g.reload(conf)
    assert "1 changed" in tail, tail
    new = tls_connect(port, ctx)
    fp2 = hashlib.sha256(new.getpeercert(binary_form=True)).hexdigest()
    assert fp1 != fp2
    for s in (old, new):
        s.sendall(b"still here")
        assert recv_exactly(s, 10) == b"still here"
    # The same through the admin API: POST /api/v1/reload reads the files again.
    from adminclient import Admin
    api = Admin(g.admin_socket)
    ca.write_leaf(tmp_path, "gw", ["localhost"])
    r = api.post("/api/v1/reload")
    assert r.status == 200 and r.json["revision"] > 0, r
    s = tls_connect(port, ctx)
    fp3 = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
    s.close()
    assert fp3 not in (fp1, fp2)
    # A broken renewal is refused as a whole; the running certificate stays.
    good_key = key.read_text()
    key.write_text("garbage\n")
    r = api.post("/api/v1/reload")
    assert r.status == 400 and r.json["field"] == "key", r
    assert "no PEM private key" in r.json["error"], r
    tail = g.reload(conf)
    assert "reload failed" in tail and "no PEM private key" in tail, tail
    s = tls_connect(port, ctx)
    assert hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest() == fp3
    key.write_text(good_key)
    for s2 in (old, new, s):
        s2.close()


def test_ocsp_stapling(gateway, tcp_echo, tmp_path, ca):
    crt, key, cert = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    resp = tmp_path / "gw.ocsp"
    resp.write_bytes(ca.ocsp_response(cert))
    srv = tcp_echo()
    port = free_ports()
    gateway(config=tls_map("web", port, srv.port, crt, key, f"ocsp = {resp}\n"))
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                          "localhost", "-status", "-CAfile", str(tmp_path / "ca.pem")],
                         input=b"", capture_output=True, timeout=10).stdout.decode()
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
    # A response signed by another CA is refused by check, as is a revoked certificate's.
    other = CA("another CA")
    forged = tmp_path / "forged.ocsp"
    forged.write_bytes(other.ocsp_response_for(cert, ca.cert))
    conf = tmp_path / "f.conf"
    conf.write_text("[gateway]\nadmin = off\n" + tls_map("web", port, srv.port, crt, key,
                                                         f"ocsp = {forged}\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 1 and "not signed by the issuer" in out.stderr, out.stderr
    # A revoked certificate's response is refused by check.
    revoked = tmp_path / "revoked.ocsp"
    revoked.write_bytes(ca.ocsp_response(cert, status="revoked"))
    conf = tmp_path / "c.conf"
    conf.write_text("[gateway]\nadmin = off\n" + tls_map("web", port, srv.port, crt, key,
                                                         f"ocsp = {revoked}\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 1 and "is revoked" in out.stderr, out.stderr


def test_cert_command(tmp_path):
    """portgate cert: a key only its owner reads, a certificate for every name, the
    fingerprint OpenSSL computes, and no file overwritten unless asked."""
    run = lambda *a: subprocess.run([BINARY, "cert", *a], capture_output=True, text=True,
                                    cwd=tmp_path)
    out = run("cam1.example.org", "*.cams.example.org", "192.0.2.7", "2001:db8::7")
    assert out.returncode == 0, out.stderr
    crt, key = tmp_path / "cam1.example.org.crt", tmp_path / "cam1.example.org.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    fp = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-fingerprint",
                         "-sha256"], capture_output=True, text=True).stdout.split("=")[1].strip()
    assert f"SHA-256     {fp}" in out.stdout
    assert f"cert = {crt}" in out.stdout and f"key = {key}" in out.stdout
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"],
                          capture_output=True, text=True).stdout
    assert ("DNS:cam1.example.org, DNS:*.cams.example.org, IP Address:192.0.2.7, "
            "IP Address:2001:DB8:0:0:0:0:0:7") in text
    assert "ASN1 OID: prime256v1" in text and "CA:FALSE" in text
    # It works as a mapping's certificate, and curl trusts it as its own CA.
    assert subprocess.run([BINARY, "check", "--map",
                           f"tls:127.0.0.1:8443=127.0.0.1:80,cert={crt},key={key}"],
                          capture_output=True).returncode == 0
    again = run("cam1.example.org")
    assert again.returncode == 1 and "File exists (--force replaces it)" in again.stderr
    assert run("--force", "cam1.example.org").returncode == 0
    assert run("-o", str(tmp_path / "x"), "bad name").returncode == 1
    assert run("--days", "0", "a.example").returncode == 2
    assert run("--days", "900", "a.example").returncode == 2
    assert run().returncode == 2
    out = run("-o", str(tmp_path / "short"), "--days", "2", "a.example")
    assert "valid for   2 days" in out.stdout


@pytest.mark.skipif(shutil.which("sslscan") is None, reason="sslscan is not installed")
def test_sslscan(gateway, tcp_echo, tmp_path):
    """What a scanner sees: TLS 1.2 and 1.3 only, forward-secret AEAD ciphers only, no
    compression, no renegotiation, no Heartbleed."""
    out = subprocess.run([BINARY, "cert", "localhost"], capture_output=True, cwd=tmp_path)
    assert out.returncode == 0
    srv = tcp_echo()
    port = free_ports()
    gateway("--map", f"tls:127.0.0.1:{port}=127.0.0.1:{srv.port},cert={tmp_path}/localhost.crt,"
            f"key={tmp_path}/localhost.key")
    text = subprocess.run(["sslscan", "--no-colour", f"127.0.0.1:{port}"], capture_output=True,
                          text=True, timeout=120).stdout
    for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        assert re.search(rf"^{re.escape(proto)}\s+disabled", text, re.M), text
    for proto in ("TLSv1.2", "TLSv1.3"):
        assert re.search(rf"^{re.escape(proto)}\s+enabled", text, re.M), text
    assert "Session renegotiation not supported" in text
    assert "not vulnerable to heartbleed" in text and "vulnerable to heartbleed\n" not in \
        text.replace("not vulnerable to heartbleed\n", "")
    ciphers = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[23])\s+\d+ bits\s+(\S+)", text, re.M)
    assert ciphers, text
    for proto, name in ciphers:
        assert "GCM" in name or "CHACHA20" in name, (proto, name)
        assert proto == "TLSv1.3" or name.startswith(("ECDHE-", "DHE-")), (proto, name)


@pytest.mark.skipif(shutil.which("testssl") is None, reason="testssl.sh is not installed")
def test_testssl(gateway, tmp_path, ca):
    """testssl.sh's verdict on the server's TLS: protocols, cipher categories, forward secrecy,
    every cipher per protocol, and the known vulnerabilities (Heartbleed, CCS, ROBOT, CRIME,
    renegotiation, POODLE, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4...): nothing
    rated above OK or INFO. What it says of the certificate (a test CA's) and of HTTP headers
    is not the gateway's TLS and is left out. Under the sanitizers, only protocols and forward
    secrecy (the full scan takes minutes there)."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost", "127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<p>device</p>")
    hport, port = free_ports(2)
    web = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                            str(hport)], cwd=www, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        gateway(config=tls_map("web", port, hport, crt, key))
        checks = ["-p", "-f"] if os.environ.get("PORTGATE_SANITIZED") else \
            ["-p", "-s", "-f", "-U", "-E"]
        out = tmp_path / "testssl.json"
        run = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off",
                              "--add-ca", str(tmp_path / "ca.pem"), "--jsonfile", str(out),
                              *checks, f"127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=600)
        import json
        findings = json.loads(out.read_text())
        assert len(findings) > 10, run.stdout
        bad = [f for f in findings if f["severity"] not in ("OK", "INFO")
               and not f["id"].startswith(("cert", "DNS_CAA", "HSTS", "security_headers",
                                           "scanTime", "engine_problem"))]
        assert not bad, bad
        ids = {f["id"]: f for f in findings}
        for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            assert ids[old]["finding"] == "not offered", ids[old]
        assert ids["TLS1_3"]["finding"].startswith("offered"), ids["TLS1_3"]
        assert ids["PFS"]["severity"] == "OK", ids["PFS"]
    finally:
        web.kill()
        web.wait()


def test_client_certificates(gateway, tcp_echo, tmp_path, ca):
    """auth = client-cert: a client with a certificate of client-ca that names one of users gets
    through, and the log names it; no certificate, another CA's, a revoked one or another name
    never reach the target. Tickets do not skip the check after the CRL changes."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    other = CA("another CA")
    alice = ca.write_client(tmp_path, "alice")
    bob = ca.write_client(tmp_path, "bob")
    carol = ca.write_client(tmp_path, "carol")
    mallory = other.write_client(tmp_path, "mallory")
    crl = tmp_path / "ca.crl"
    crl.write_bytes(ca.crl(revoked=[bob[2]]))
    echo = tcp_echo()
    port = free_ports()
    conf = tls_map("mtls", port, echo.port, crt, key,
                   f"auth = client-cert\nclient-ca = {tmp_path}/ca.pem\n"
                   f"client-crl = {crl}\nusers = alice, bob\n")
    g = gateway(config=conf)

    ctxs = {}

    def attempt(who, session=None):
        key = who[0] if who else None
        if key not in ctxs:
            ctxs[key] = client_context(tmp_path / "ca.pem")
            if who is not None:
                ctxs[key].load_cert_chain(str(who[0]), str(who[1]))
        ctx = ctxs[key]
        try:
            s = tls_connect(port, ctx, session=session)
            s.sendall(b"ping")
            got = s.recv(16)
            sess = s.session
            s.close()
            return got, sess
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            return e, None
    got, sess = attempt(alice)
    assert got == b"ping", got
    g.wait_log("client=alice")
    for who in (None, bob, carol, mallory):
        got, _ = attempt(who)
        assert got != b"ping", (who, got)
    st = g.map_stats("mtls")
    assert st["tls handshakes"] == 1 and st["tls handshake failures"] == 4, st
    assert st["accepted"] == 5 and st["bytes to targets"] == 4, st
    # openssl s_client without a certificate: the gateway's alert says what is missing.
    # (stdin held open a moment: TLS 1.3's alert comes after the client's handshake is done)
    r = subprocess.run(["sh", "-c", f"sleep 2 | openssl s_client -connect 127.0.0.1:{port} "
                        f"-servername localhost -CAfile {tmp_path}/ca.pem -no_ign_eof"],
                       capture_output=True, timeout=10)
    assert b"alert certificate required" in r.stderr, r
    assert b"Acceptable client certificate CA names" in r.stdout, r
    # A new CRL revokes alice: her ticket no longer resumes a session, and she is refused.
    crl.write_bytes(ca.crl(revoked=[alice[2], bob[2]]))
    tail = g.reload()
    assert "configuration applied" in tail, tail
    got, _ = attempt(alice, session=sess)
    assert got != b"ping", got


def test_check_refuses_client_cert_settings(tmp_path, ca):
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    (tmp_path / "stale.crl").write_bytes(
        ca.crl(next_update=datetime.datetime.utcnow() - datetime.timedelta(hours=1)))
    (tmp_path / "other.crl").write_bytes(CA("another CA").crl())
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cases = [
        ("auth = client-cert\n", "client-ca: auth = client-cert needs the CA"),
        ("client-ca = CA\n", "client-ca: applies with auth = client-cert only"),
        ("auth = client-cert\nclient-ca = JUNK\n", "no PEM certificate in it"),
        ("auth = client-cert\nclient-ca = CA\nclient-crl = STALE\n", "out of date since"),
        ("auth = client-cert\nclient-ca = CA\nclient-crl = OTHER\n",
         "a CRL not signed by a CA of client-ca"),
        ("auth = client-cert\nclient-ca = CA\nclient-crl = JUNK\n", "no PEM CRL in it"),
        ("auth = password\n", "client-cert (clients show a certificate of client-ca), or none"),
        ("auth = client-cert\nclient-ca = CA\nusers = Alice Smith\n", "a common name with a space"),
    ]
    conf = tmp_path / "c.conf"
    for extra, want in cases:
        extra = (extra.replace("JUNK", str(tmp_path / "junk.pem"))
                 .replace("STALE", str(tmp_path / "stale.crl"))
                 .replace("OTHER", str(tmp_path / "other.crl"))
                 .replace("CA", str(tmp_path / "ca.pem")))
        conf.write_text("[gateway]\nadmin = off\n" + tls_map("m", 8443, 80, crt, key, extra))
        out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert out.returncode == 1 and want in out.stderr, (extra, out.stderr)
