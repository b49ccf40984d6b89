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
    assert st["tls records taken over"] == 1, st  # TLS 1.3: portgate's record layer
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
        st = g.map_stats("web")
        # curl sends its request with its Finished: each was taken over all the same.
        assert st["tls handshakes"] == 51 and st["tls records taken over"] == 51, st
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
    # TLS 1.3's connections, TLS 1.2's staying on OpenSSL: the two that sent data, and the one
    # closed at once after its handshake if its close_notify came after the takeover.
    assert 2 <= st["tls records taken over"] <= 3, st
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


# ---- TLS 1.3 connections carried by portgate's own record layer (tls/tls_rec.h) ----

class RawTLS:
    """A TLS client over memory BIOs: the test chooses what leaves in each write (the client's
    Finished and its first data in one segment), and may put records of its own on the wire."""

    def __init__(self, port, ctx, server_hostname="localhost"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def feed(self):
        data = self.sock.recv(262144)
        if not data:
            self.inc.write_eof()
        self.inc.write(data) if data else None
        return data

    def handshake(self, then=b""):
        """Completes the handshake; then goes in the same write as the client's Finished."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                if not self.feed():
                    raise ConnectionError("closed during the handshake")
        if then:
            self.obj.write(then)
        self.flush()

    def recv_exactly(self, n):
        got = bytearray()
        while len(got) < n:
            try:
                got += self.obj.read(n - len(got))
            except ssl.SSLWantReadError:
                if not self.feed():
                    break
        return bytes(got)

    def read_error(self):
        """Reads until the gateway's alert: the ssl.SSLError it raises (None at EOF)."""
        while True:
            try:
                self.obj.read(65536)
            except ssl.SSLWantReadError:
                if not self.feed():
                    return None
            except ssl.SSLError as e:
                return e

    def close(self):
        self.sock.close()


def test_records_taken_over_with_data_in_the_finished_flight(gateway, tcp_echo, tmp_path, ca):
    """A TLS 1.3 connection whose client sends data in the same segment as its Finished (as
    Python's ssl, curl and s_client may): OpenSSL reads both, gives the data, and the record
    layer takes over only once OpenSSL holds nothing, at the sequence numbers OpenSSL reached:
    every byte goes through unchanged either way, records pipelined before and after. TLS 1.2
    stays on OpenSSL."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    echo = tcp_echo()
    port = free_ports()
    g = gateway(config=tls_map("echo", port, echo.port, crt, key))
    ctx = client_context(tmp_path / "ca.pem", minimum=ssl.TLSVersion.TLSv1_3)
    for first in (b"ping", os.urandom(40000)):  # one record; three, the last cut by the recv
        c = RawTLS(port, ctx)
        c.handshake(then=first)
        assert c.recv_exactly(len(first)) == first
        for msg in (b"x", os.urandom(70000), b"after"):
            c.obj.write(msg)
            c.flush()
            assert c.recv_exactly(len(msg)) == msg
        c.close()
    st = g.map_stats("echo")
    assert st["tls handshakes"] == 2 and st["tls records taken over"] == 2, st

    # TLS 1.2: OpenSSL to the end.
    s = tls_connect(port, client_context(tmp_path / "ca.pem", maximum=ssl.TLSVersion.TLSv1_2))
    assert s.version() == "TLSv1.2"
    s.sendall(b"twelve")
    assert recv_exactly(s, 6) == b"twelve"
    s.close()
    st = g.map_stats("echo")
    assert st["tls handshakes"] == 3 and st["tls records taken over"] == 2, st


def test_records_refused_with_their_alert(gateway, tcp_echo, tmp_path, ca):
    """After the takeover, a record that does not authenticate, one in the clear and one longer
    than TLS allows each end the connection with the alert RFC 8446 names, which the client
    reads under the gateway's keys; the log says what the client sent. So does a stream cut
    inside a record."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    echo = tcp_echo()
    port = free_ports()
    g = gateway(config=tls_map("echo", port, echo.port, crt, key))
    ctx = client_context(tmp_path / "ca.pem", minimum=ssl.TLSVersion.TLSv1_3)

    def forged(rec):
        rec = bytearray(rec)
        rec[-1] ^= 1  # the tag
        return bytes(rec)
    cases = [
        (forged, "bad record mac", "a record that does not authenticate (bad_record_mac)"),
        (lambda rec: b"\x16\x03\x03\x00\x05\x18\x00\x00\x01\x00", "unexpected message",
         "a record in the clear after the handshake"),
        (lambda rec: b"\x17\x03\x03\x41\x01" + b"\0" * 100, "record overflow",
         "a record longer than 2^14 + 256 bytes"),
    ]
    for i, (make, alert, why) in enumerate(cases):
        c = RawTLS(port, ctx)
        c.handshake()
        c.obj.write(b"ping")
        c.flush()
        assert c.recv_exactly(4) == b"ping"  # taken over by now
        c.obj.write(b"pong")
        c.sock.sendall(make(c.out.read()))
        err = c.read_error()
        assert err is not None and alert in str(err).lower().replace("_", " "), (alert, err)
        c.close()
        g.wait_log(f"tls from client: {why}", 1)
    # A FIN inside a record: a truncation, not the end of the stream (at a record's boundary,
    # a FIN ends the stream as it does on OpenSSL, as the half-close tests show).
    c = RawTLS(port, ctx)
    c.handshake()
    c.obj.write(b"ping")
    c.flush()
    assert c.recv_exactly(4) == b"ping"
    c.obj.write(b"cut short")
    c.sock.sendall(c.out.read()[:-3])
    c.sock.shutdown(socket.SHUT_WR)
    g.wait_log("tls from client: the client's stream ended inside a record", 1)
    c.close()
    st = g.map_stats("echo")
    assert st["tls records taken over"] == 4 and st["bytes to targets"] == 16, st


def test_key_update_both_ways(gateway, tcp_echo, tmp_path, ca):
    """openssl s_client's k and K (RFC 8446 4.6.3): the client's KeyUpdate moves the gateway's
    read key on, and with update_requested the gateway sends its own before its next data; the
    echo goes through under each new key. A KeyUpdate not asked for gets none back."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    echo = tcp_echo()
    port = free_ports()
    g = gateway(config=tls_map("echo", port, echo.port, crt, key))
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                          "localhost", "-CAfile", str(tmp_path / "ca.pem"), "-msg"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.extend(iter(p.stdout.readline, b"")),
                              daemon=True)
    reader.start()

    def text():
        return b"".join(out).decode(errors="replace")

    def wait_for(s, count=1):
        deadline = time.time() + 10
        while text().count(s) < count:
            assert time.time() < deadline and p.poll() is None, text()
            time.sleep(0.02)

    def line(s):
        p.stdin.write(s)
        p.stdin.flush()
        time.sleep(0.3)  # each on a read of its own: s_client takes k and K at a line's start

    received = "<<< TLS 1.3, Handshake [length 0005], KeyUpdate"
    try:
        line(b"hello portgate\n")
        wait_for("hello portgate")
        assert text().count(received) == 0
        for n, (cmd, back) in enumerate(((b"K\n", 1), (b"k\n", 1), (b"K\n", 2), (b"K\n", 3))):
            line(cmd)
            line(b"after key update %d\n" % n)
            wait_for("after key update %d" % n)  # the echo
            assert text().count(received) == back, text()
            assert text().count(">>> TLS 1.3, Handshake [length 0005], KeyUpdate") == n + 1
    finally:
        p.stdin.close()
        p.wait(10)
    st = g.map_stats("echo")
    assert st["tls handshakes"] == 1 and st["tls records taken over"] == 1, st
    assert "tls from client" not in g.log()


def test_close_notify_both_ways_after_takeover(gateway, tcp_echo, tmp_path, ca):
    """The client's close_notify ends its stream (the target gets the FIN); the target's FIN
    comes to the client as close_notify, then the FIN: a client that refuses a truncated
    stream reads a clean end. A slow reader gets every byte all the same (the gateway's sends
    come back short and what is sealed waits), and so does a target slow to read the client's
    upload (the relay's buffer fills, the layer reads records into its own)."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    ctx = client_context(tmp_path / "ca.pem", minimum=ssl.TLSVersion.TLSv1_3)
    data, src_handler = source(8 << 20)

    def slow_sink(c):
        time.sleep(1.0)
        hash_sink(c)
    echo, src, sink = tcp_echo(), tcp_echo(handler=src_handler), tcp_echo(handler=slow_sink)
    p = free_ports(3)
    g = gateway(config=tls_map("echo", p[0], echo.port, crt, key)
                + tls_map("down", p[1], src.port, crt, key)
                + tls_map("up", p[2], sink.port, crt, key))
    # unwrap(): our close_notify, then the gateway's once the target has closed.
    s = tls_connect(p[0], ctx)
    s.sendall(b"bye")
    assert recv_exactly(s, 3) == b"bye"
    plain = s.unwrap()
    assert plain.recv(16) == b""
    plain.close()
    g.wait_log("map echo: tcp", 1)
    assert "closed by client, then by target" in g.log()

    raw = socket.create_connection(("127.0.0.1", p[1]), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    time.sleep(1.0)  # the gateway fills the socket, and keeps the rest
    got = recv_all(s)  # SSLEOFError if the FIN came without close_notify
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    s.close()

    up = os.urandom(8 << 20)
    s = tls_connect(p[2], ctx)
    s.sendall(up)
    socket.socket.shutdown(s, socket.SHUT_WR)
    assert recv_all(s).decode() == hashlib.sha256(up).hexdigest()
    s.close()
    for name in ("echo", "down", "up"):
        st = g.map_stats(name)
        assert st["tls records taken over"] == 1, (name, st)


def test_records_under_a_filter_with_little_room(gateway, tcp_echo, tmp_path, ca):
    """https: while a slow device reads a large upload, the HTTP filter holds what it has not
    passed on, and the relay's buffer has less room than a record: the record layer then reads
    records into a buffer of its own and hands their content out as room allows. Every byte
    arrives, in order; the answer comes back; the connection was taken over."""
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    body = os.urandom(6 << 20)

    def slow_device(c):
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(1)
        n = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
        h = hashlib.sha256()
        while n > 0:
            d = c.recv(min(n, 7000))
            if not d:
                break
            h.update(d)
            n -= len(d)
            time.sleep(0.001)
        digest = h.hexdigest().encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + digest)
        recv_all(c)
    dev = tcp_echo(handler=slow_device)
    port = free_ports()
    g = gateway(config=f"[map up]\nproto = https\nlisten = 127.0.0.1:{port}\n"
                       f"target = 127.0.0.1:{dev.port}\ncert = {crt}\nkey = {key}\n")
    s = tls_connect(port, client_context(tmp_path / "ca.pem", minimum=ssl.TLSVersion.TLSv1_3),
                    timeout=60)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    answer = b""
    while not answer.endswith(hashlib.sha256(body).hexdigest().encode()):
        d = s.recv(4096)
        assert d, answer
        answer += d
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    s.close()
    st = g.map_stats("up")
    assert st["tls records taken over"] == 1 and st["http requests"] == 1, st
