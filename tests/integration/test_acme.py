"""A certificate from an ACME CA through the gateway's http mapping (acme-webroot), installed
on its https mapping, then renewed and taken by a reload that drops no connection: the whole
flow an operator sets up, against pebble (Let's Encrypt's test CA, which validates HTTP-01 for
real here) with lego as the ACME client.

    CA and client (pga-ca)          gateway (pga-gw)                 device (pga-dev)
    pebble 203.0.113.2:14000  ---- 203.0.113.1 | 192.0.2.1 ---- 192.0.2.10:80 (httpdevice.py)
    DNS 127.0.0.1:5053               :80  http  -> device, acme-webroot, redirect-https
                                     :443 https -> device, lego's certificate
                                     lego --http --http.webroot (the acme-webroot)

pebble resolves cam.example.org through a DNS server of the test's own (nethelper.py dns,
pebble -dnsserver) to the gateway's outside address, and validates on port 80 there, as Let's
Encrypt would. lego runs on the gateway's host and writes its challenge files into the
acme-webroot; the device never sees them. The renewal's hook is the reload (SIGHUP here,
`systemctl reload portgate` on a real system).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import BINARY

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="the ACME test needs root and iproute2 (ip netns) to build network "
                              "namespaces"),
    pytest.mark.skipif(shutil.which("pebble") is None or shutil.which("lego") is None,
                       reason="the ACME test needs pebble (the test CA) and lego (the client): "
                              "apt-get install pebble lego (tools/bootstrap)"),
]

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nethelper.py")
PY = sys.executable
NAME = "cam.example.org"
CA_ADDR, GW_OUT, GW_IN, DEVICE = "203.0.113.2", "203.0.113.1", "192.0.2.1", "192.0.2.10"
CLONE_NEWNET = 0x40000000


def sh(*args, check=True, timeout=60, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout, **kw)


class Net:
    """Three network namespaces joined by veth pairs, and the processes started in them."""

    def __init__(self):
        tag = str(os.getpid() % 100000)
        self.ca, self.gw, self.dev = f"pga-ca{tag}", f"pga-gw{tag}", f"pga-dev{tag}"
        self.procs = []

    def ns(self, ns, *cmd, **kw):
        return sh("ip", "netns", "exec", ns, *cmd, **kw)

    def up(self):
        for n in (self.ca, self.gw, self.dev):
            sh("ip", "netns", "add", n)
            self.ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "pgaca0", "netns", self.ca, "type", "veth", "peer", "name",
           "pgagwe", "netns", self.gw)
        sh("ip", "link", "add", "pgadev0", "netns", self.dev, "type", "veth", "peer", "name",
           "pgagwi", "netns", self.gw)
        for ns, dev, addr in ((self.ca, "pgaca0", CA_ADDR), (self.gw, "pgagwe", GW_OUT),
                              (self.gw, "pgagwi", GW_IN), (self.dev, "pgadev0", DEVICE)):
            self.ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            self.ns(ns, "ip", "link", "set", dev, "up")

    def start(self, ns, *cmd, env=None, ready=True):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(cmd), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline()
            assert line.strip() == "ready", line
        return p

    def enter(self, ns):
        """A preexec_fn that moves a child into namespace ns (what ip netns exec does)."""
        def go():
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            os.close(fd)
        return go

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for n in (self.ca, self.gw, self.dev):
            sh("ip", "netns", "del", n, check=False)


@pytest.fixture
def net():
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def wait_tcp(net, ns, host, port):
    net.ns(ns, PY, HELPER, "wait-tcp", host, str(port))


def serial_of(pem_path):
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).serial_number


def https_get(net):
    """A new connection from outside to the https mapping: (status, the serial presented)."""
    r = net.ns(net.ca, PY, HELPER, "https-get", GW_OUT, "443", NAME, str(net.root), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    status, serial = r.stdout.split()
    return int(status), int(serial, 16)


def test_certificate_from_pebble_through_the_gateway(net, gateway, tmp_path):
    from tlshelper import CA

    # The CA's namespace: pebble behind a certificate of the test's own CA, and its DNS.
    ca = CA("pebble listener CA")
    ca_pem = tmp_path / "listener-ca.pem"
    ca_pem.write_bytes(ca.pem())
    crt, key, _ = ca.write_leaf(tmp_path, "pebble", [CA_ADDR])
    conf = tmp_path / "pebble.json"
    conf.write_text(json.dumps({"pebble": {
        "listenAddress": f"{CA_ADDR}:14000", "managementListenAddress": f"{CA_ADDR}:15000",
        "certificate": str(crt), "privateKey": str(key), "httpPort": 80, "tlsPort": 5001,
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    net.start(net.ca, PY, HELPER, "dns", "127.0.0.1", "5053", f"{NAME}={GW_OUT}")
    # Validation for real (never "always valid"), at once, with a fresh authorization for the
    # renewal too (pebble would otherwise reuse the first one's, and the renewal would prove
    # nothing about the gateway), and no nonce refused at random.
    env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="0", PEBBLE_VA_NOSLEEP="1",
               PEBBLE_AUTHZREUSE="0", PEBBLE_WFE_NONCEREJECT="0")
    pebble = net.start(net.ca, "pebble", "-config", str(conf), "-dnsserver", "127.0.0.1:5053",
                       env=env, ready=False)
    wait_tcp(net, net.ca, CA_ADDR, 14000)
    net.start(net.dev, PY, HELPER, "http-device", DEVICE, "80")

    # The gateway: http on port 80 answers challenges from the webroot and redirects the rest.
    webroot = tmp_path / "acme"
    webroot.mkdir()
    http_map = (f"[map cam-http]\nproto = http\nlisten = {GW_OUT}:80\ntarget = {DEVICE}:80\n"
                f"acme-webroot = {webroot}\nredirect-https = 443\n")
    g = gateway(config=http_map, preexec_fn=net.enter(net.gw))
    r = net.ns(net.ca, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
               "--resolve", f"{NAME}:80:{GW_OUT}", f"http://{NAME}/x")
    assert r.stdout == f"308 https://{NAME}/x", r.stdout

    lego_dir = tmp_path / "lego"
    lego = ["lego", "--server", f"https://{CA_ADDR}:14000/dir", "--accept-tos",
            "--email", "admin@example.org", "--domains", NAME, "--path", str(lego_dir),
            "--http", "--http.webroot", str(webroot)]
    lego_env = dict(os.environ, LEGO_CA_CERTIFICATES=str(ca_pem))
    r = net.ns(net.gw, *lego, "run", env=lego_env, check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + pebble_log(pebble)
    cert = lego_dir / "certificates" / f"{NAME}.crt"
    cert_key = lego_dir / "certificates" / f"{NAME}.key"
    first = serial_of(cert)
    st = g.map_stats("cam-http")
    assert st["http acme challenges answered"] >= 1, st
    assert st["http requests"] == 0, st  # nothing reached the device

    # Pebble's root, which its certificates chain to (made anew at each start of pebble).
    net.root = tmp_path / "pebble-root.pem"
    r = net.ns(net.gw, "curl", "-sS", "--cacert", str(ca_pem), "-o", str(net.root),
               f"https://{CA_ADDR}:15000/roots/0")
    assert r.returncode == 0 and b"BEGIN CERTIFICATE" in net.root.read_bytes(), r.stderr

    # The https mapping takes lego's certificate; a client that trusts pebble's root gets the
    # device's page through it.
    https_map = (f"[map cam-https]\nproto = https\nlisten = {GW_OUT}:443\n"
                 f"target = {DEVICE}:80\ncert = {cert}\nkey = {cert_key}\n")
    assert "configuration applied" in g.reload(http_map + https_map)
    r = net.ns(net.ca, "curl", "-sS", "--cacert", str(net.root), "--resolve",
               f"{NAME}:443:{GW_OUT}", f"https://{NAME}/echo")
    assert r.stdout.startswith("GET /echo HTTP/1.1\n") and "X-Forwarded-Proto: https" in r.stdout
    assert https_get(net) == (200, first)

    # A client keeps a connection open across the renewal.
    held = net.start(net.ca, PY, HELPER, "https-hold", GW_OUT, "443", NAME, str(net.root))

    # The renewal: a new order, validated anew through the gateway, and the hook reloads it.
    reloads = g.log().count("reloading the configuration")
    r = net.ns(net.gw, *lego, "renew", "--days", "100000", "--no-random-sleep",
               "--renew-hook", f"kill -HUP {g.proc.pid}", env=lego_env, check=False,
               timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + pebble_log(pebble)
    second = serial_of(cert)
    assert second != first
    g.wait_log("reloading the configuration", reloads + 1)
    deadline = time.time() + 10
    while "configuration applied" not in g.log().split("reloading the configuration")[-1]:
        assert time.time() < deadline, g.log()
        time.sleep(0.05)
    assert g.map_stats("cam-http")["http acme challenges answered"] >= 2

    # New connections get the renewed certificate, still trusted; the open one goes on.
    assert https_get(net) == (200, second)
    r = net.ns(net.ca, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
               str(net.root), "--resolve", f"{NAME}:443:{GW_OUT}", f"https://{NAME}/echo")
    assert r.stdout == "200", r.stderr
    held.stdin.write("again\n")
    held.stdin.flush()
    status, serial = held.stdout.readline().split()
    assert (int(status), int(serial, 16)) == (200, first)


def pebble_log(p):
    """What pebble said, for a failure's message (it runs until the test ends)."""
    if p.poll() is None:
        p.kill()
    return "\npebble:\n" + p.stdout.read()
