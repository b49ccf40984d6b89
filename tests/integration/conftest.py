"""Shared fixtures: the real portgate binary, echo servers, and helpers to talk to them."""
import fcntl
import os
import random
import re
import signal
import socket
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("PORTGATE") or os.path.join(ROOT, "build", "portgate")


# Run side by side with pytest-xdist (-n N --dist loadgroup), tests that share something built
# once per process run on one worker, rather than each worker building its own: the namespaces,
# encoders and players of test_topology.py (a module fixture), and the fresh build and install
# of test_install.py (a session fixture).
XDIST_GROUPS = {"test_topology.py": "topology", "test_install.py": "install"}


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): run on the same pytest-xdist worker "
                                       "as the other tests of the group (--dist loadgroup)")
    # A directory that the run's processes share (the clip): made by the process that starts
    # the workers, or by pytest alone without them. World-readable: VLC runs as nobody.
    if not hasattr(config, "workerinput"):
        config.portgate_shared = tempfile.mkdtemp(prefix="portgate-tests-")
        os.chmod(config.portgate_shared, 0o755)
        os.environ["PORTGATE_TEST_SHARED"] = config.portgate_shared


def pytest_unconfigure(config):
    if hasattr(config, "portgate_shared"):
        shutil.rmtree(config.portgate_shared, ignore_errors=True)


# The longest tests (tens of seconds each, in a browser, a scanner or an ACME exchange), with
# the groups: pytest-xdist hands out work in collection order, and one of them started last
# would run alone at the end while the other workers sit idle.
LONGEST = ("test_tls.py::test_testssl", "test_acme.py::", "test_page.py::")


# tryfirst: pytest-xdist reads the group marks in its own hook.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = XDIST_GROUPS.get(item.path.name)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))

    def later(item):
        name = f"{item.path.name}::{item.name}"
        return (item.path.name not in XDIST_GROUPS, not name.startswith(LONGEST))
    items.sort(key=later)


# Ports that tests bind on purpose, which free_ports never hands out: the default rtp-ports of
# an rtsp mapping (16384-17407), the rtp-ports the tests give theirs (20000-20999), and the UDP
# port the page test prefers for a realistic picture (27015, test_page.py).
RESERVED_PORTS = [(16384, 17407), (20000, 20999), (27015, 27015)]


def _worker_ports():
    """The ports free_ports draws from in this process: those from 10000 up to the kernel's
    ephemeral range (where client sockets of earlier tests cannot be holding them), less
    RESERVED_PORTS. Under pytest-xdist each worker gets its own slice of them, so that two
    workers never pick the same port between one's look and its gateway's bind."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    ports = [p for p in range(10000, ephemeral_low)
             if not any(lo <= p <= hi for lo, hi in RESERVED_PORTS)]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... or unset
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and count > 1:
        size = len(ports) // count
        i = int(worker[2:]) % count
        ports = ports[i * size:(i + 1) * size]
    if len(ports) < 1000:
        raise RuntimeError(f"{len(ports)} ports for free_ports below the ephemeral range "
                           f"({ephemeral_low}): too few for the tests")
    return ports


_PORTS = _worker_ports()
# Where the next free_ports call starts looking: it walks its slice rather than drawing at
# random, so that a port it returned is not handed out again (to the same test, before its
# gateway binds the first) until the slice has gone round. Starting at random keeps runs
# side by side (on a shared machine) apart.
_next_port = random.randrange(len(_PORTS))


def free_ports(n=1, host="127.0.0.1", family=socket.AF_INET):
    """n consecutive ports free for both TCP and UDP on host (and on 0.0.0.0 for IPv4, since
    tests also listen on the wildcard), from this process's slice (_worker_ports)."""
    global _next_port
    if family == socket.AF_INET:
        host = "0.0.0.0"
    for _ in range(len(_PORTS)):
        i = _next_port
        _next_port = (i + n) % len(_PORTS)
        if i + n > len(_PORTS) or _PORTS[i + n - 1] != _PORTS[i] + n - 1:
            continue  # runs over the end of the slice or across a reserved range
        base = _PORTS[i]
        socks = []
        try:
            for p in range(base, base + n):
                for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(family, typ)
                    socks.append(s)
                    s.bind((host, p))
            return base if n == 1 else list(range(base, base + n))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


class Gateway:
    """A portgate process. Its stderr goes to a file that tests read."""
    count = 0

    def __init__(self, tmp_path, args, config=None, env=None, preexec_fn=None, adjust=None):
        Gateway.count += 1
        self.tmp_path = tmp_path
        # The admin interface's socket and files, in the test's directory: never the system's.
        self.admin_socket = tmp_path / f"admin-{Gateway.count}.sock"
        self.state = tmp_path / f"state-{Gateway.count}.json"
        self.users = tmp_path / "users"
        # What the test's variant adds to every configuration, the first and each reloaded one.
        variant_adjust = adjust or (lambda config: config)
        self.adjust = lambda config: self._admin_keys(variant_adjust(config))
        self.conf = tmp_path / "portgate.conf"
        if config is not None:
            config = self._admin_keys(config)
            self.conf.write_text(config)
            args = ["-c", str(self.conf)] + list(args)
        self.logpath = tmp_path / f"portgate-{Gateway.count}.log"
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([BINARY, "run"] + list(args), stdout=self.logf,
                                     stderr=self.logf, env=env, preexec_fn=preexec_fn)

    def _admin_keys(self, config):
        """config with the admin interface's keys that it does not set pointed at the test's
        directory (the HTTP listener off unless asked for: tests run side by side)."""
        keys = {"admin": "off", "admin-socket": self.admin_socket, "state": self.state,
                "users-file": self.users}
        for key, value in keys.items():
            if not re.search(rf"^{key}\s*=", config or "", re.M):
                config = _with_gateway_keys(config, f"{key} = {value}\n")
        return config

    def log(self):
        return self.logpath.read_text(errors="replace")

    def wait_log(self, text, count=1, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"log never showed {text!r} x{count}; log:\n{self.log()}")

    def wait_ready(self, timeout=10):
        self.wait_log("configuration applied", timeout=timeout)
        # The admin interface starts once the mappings run: wait for its socket too.
        if re.search(r"^admin-socket\s*=\s*/", self.conf.read_text() if self.conf.exists() else "",
                     re.M):
            self.wait_log("admin: API on unix socket", timeout=timeout)

    def reload(self, config=None):
        if config is not None:
            self.conf.write_text(self.adjust(config))
        n = self.log().count("reloading the configuration")
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("reloading the configuration", n + 1)
        # Wait for the outcome of that reload.
        deadline = time.time() + 10
        while time.time() < deadline:
            tail = self.log().split("reloading the configuration")[n + 1]
            if "configuration applied" in tail or "reload failed" in tail:
                return tail
            time.sleep(0.02)
        raise AssertionError("reload had no outcome:\n" + self.log())

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.logf.close()
        return rc

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def relay_stats(self):
        """Asks for the counters (SIGUSR1) and returns the relay line's numbers by name."""
        n = self.log().count("relay: ")
        self.proc.send_signal(signal.SIGUSR1)
        self.wait_log("relay: ", n + 1)
        line = [l for l in self.log().splitlines() if "relay: " in l][n]
        m = re.search(r"relay: (\d+) tcp connections open, splice (\w+), (\d+) pipes in use "
                      r"\(at most (\d+)\), (\d+) spare, (\d+) reads copied .*; (\d+) workers, "
                      r"connections per worker:([\d ]+)$", line)
        assert m, line
        return {"open": int(m[1]), "splice": m[2], "pipes": int(m[3]), "max_pipes": int(m[4]),
                "spare": int(m[5]), "copied_reads": int(m[6]), "workers": int(m[7]),
                "per_worker": [int(x) for x in m[8].split()]}

    def map_stats(self, name):
        """The counters of one mapping, by name ("bytes spliced", "accepted", ...)."""
        n = self.log().count(f"map {name}: stats:")
        self.proc.send_signal(signal.SIGUSR1)
        self.wait_log(f"map {name}: stats:", n + 1)
        line = [l for l in self.log().splitlines() if f"map {name}: stats:" in l][n]
        body = line.split(": stats: ", 1)[1]
        out = {}
        for part in body.split(", "):
            num, key = part.split(" ", 1)
            out[key] = int(num)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


# What the sanitizer builds print when they find something, and the exit statuses tools/test
# gives them (exitcode= in ASAN_OPTIONS, UBSAN_OPTIONS and TSAN_OPTIONS): portgate's own are 0,
# 1 and 2, so a sanitizer's report never passes for a configuration error's exit status 1.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
SANITIZER_EXIT_CODES = {66: "ThreadSanitizer", 67: "AddressSanitizer or LeakSanitizer",
                        68: "UndefinedBehaviorSanitizer"}


def assert_no_sanitizer_report(returncode, stderr):
    """Fails if a process's stderr holds a sanitizer's report, or if its exit status is one
    that tools/test gives the sanitizers (returncode None: still running)."""
    for bad in SANITIZER_REPORTS:
        assert bad not in stderr, stderr
    assert returncode not in SANITIZER_EXIT_CODES, (
        f"exit status {returncode}: {SANITIZER_EXIT_CODES.get(returncode)} found an error\n"
        + stderr)


def _with_gateway_keys(config, keys):
    """config text with keys added to its [gateway] section (made if missing)."""
    if config is None:
        return "[gateway]\n" + keys
    if "[gateway]\n" in config:
        return config.replace("[gateway]\n", "[gateway]\n" + keys, 1)
    return "[gateway]\n" + keys + config


class Variant(str):
    """How a parametrized test runs the gateway: "splice-2w" is the splice path on 2 workers,
    "copy-1w" the copy path on 1. Tests without a variant get the defaults (splice, a worker per
    CPU)."""

    @property
    def copy(self):
        return self.startswith("copy")

    @property
    def workers(self):
        m = re.search(r"(\d+)w", self)
        return int(m[1]) if m else None


# Every TCP test runs on both relay paths, each with one worker and with several.
TCP_VARIANTS = ["splice-1w", "splice-2w", "copy-1w", "copy-2w"]

# A bulk flow: far more than the one read that fills a whole 64 KiB buffer, after which a
# direction of a TCP connection moves from recv() to splice(). A test's splice variants splice
# only if it moves this much; a few hundred bytes are copied on both paths.
BULK = 1 << 20


def assert_spliced(g, name, variant, more_than=0, still_open=0, timeout=10):
    """Checks which relay path carried mapping name's bytes: on the splice path more than
    more_than bytes were spliced, on the copy path none. A connection adds its bytes to the
    counters when it ends, so this waits until only still_open of the mapping's connections
    are open and, on the splice path, the bytes show. more_than=BULK, where a connection
    carried BULK each way, proves that both directions spliced (one alone moves less than BULK
    by splice: its first 64 KiB are copied). Returns the counters."""
    deadline = time.time() + timeout
    while True:
        st = g.map_stats(name)
        if st["open"] == still_open and (variant.copy or st["bytes spliced"] > more_than):
            break
        if time.time() > deadline:
            break
        time.sleep(0.05)
    assert st["open"] == still_open, (name, st)
    if variant.copy:
        assert st["bytes spliced"] == 0, (name, st)
    else:
        assert st["bytes spliced"] > more_than, (name, st)
    return st


@pytest.fixture
def variant(request):
    """Tests parametrized (indirectly) with variant run once per variant."""
    return Variant(getattr(request, "param", ""))


@pytest.fixture
def gateway(tmp_path, variant):
    started = []

    def adjust(config):
        if variant.copy:
            config = _with_gateway_keys(config, "splice = no\n")
        if variant.workers and "workers" not in (config or ""):
            config = _with_gateway_keys(config, f"workers = {variant.workers}\n")
        return config

    def start(*args, config=None, ready=True, **kw):
        # A reload keeps the variant's keys: without them, a copy variant would splice again
        # from its first reload on.
        g = Gateway(tmp_path, args, config=adjust(config), adjust=adjust, **kw)
        started.append(g)
        if ready:
            g.wait_ready()
        return g

    yield start
    for g in started:
        # Stop it the way an operator would, so that LeakSanitizer (in sanitizer builds) runs at
        # exit; a second SIGTERM ends connections a test left open.
        if g.proc.poll() is None:
            g.proc.send_signal(signal.SIGTERM)
            try:
                g.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                g.proc.send_signal(signal.SIGTERM)
                try:
                    g.proc.wait(15)
                except subprocess.TimeoutExpired:
                    g.proc.kill()
                    g.proc.wait()
        # Sanitizer reports (ASan/UBSan/LSan/TSan) fail the test that produced them.
        assert_no_sanitizer_report(g.proc.returncode, g.log())


class TcpServer:
    """A threaded TCP server on an ephemeral port. handler(conn) runs per connection."""

    def __init__(self, handler, host="127.0.0.1", family=socket.AF_INET, backlog=128, port=0):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.accepted = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def echo_handler(c):
    while True:
        d = c.recv(262144)
        if not d:
            return
        c.sendall(d)


@pytest.fixture
def tcp_echo():
    servers = []

    def make(host="127.0.0.1", family=socket.AF_INET, handler=echo_handler, **kw):
        s = TcpServer(handler, host=host, family=family, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


class UdpEcho:
    """Echoes every datagram back to its sender, from the address it was sent to."""

    def __init__(self, host="127.0.0.1", family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # Bursts arrive faster than a Python loop reads them: room for them, so that what a
        # test counts as lost was lost by the gateway.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.peers = set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                d, a = self.sock.recvfrom(65536)
            except OSError:
                return
            self.peers.add(a)
            self.sock.sendto(d, a)

    def close(self):
        self.sock.close()


@pytest.fixture
def udp_echo():
    servers = []

    def make(host="127.0.0.1", family=socket.AF_INET):
        s = UdpEcho(host, family)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def connect(port, host="127.0.0.1", family=socket.AF_INET, timeout=5, source=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def recv_all(s, limit=None):
    """Reads until EOF; returns the bytes."""
    chunks = []
    n = 0
    while True:
        d = s.recv(262144)
        if not d:
            break
        chunks.append(d)
        n += len(d)
        if limit is not None and n >= limit:
            break
    return b"".join(chunks)


def recv_exactly(s, n):
    """Reads n bytes, or until EOF; returns them."""
    chunks = []
    while n > 0:
        d = s.recv(min(n, 262144))
        if not d:
            break
        chunks.append(d)
        n -= len(d)
    return b"".join(chunks)


def roundtrip(s, payload, shut=False):
    """Sends payload on s while reading as many bytes back (with shut: sends a FIN after it and
    reads until EOF); returns what came back. The sending runs in a thread: an echo of more
    than the buffers on the way hold stalls a sender that does not read."""
    err = []

    def send():
        try:
            s.sendall(payload)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send)
    t.start()
    try:
        got = recv_all(s) if shut else recv_exactly(s, len(payload))
    finally:
        t.join(60)
    if err:
        raise err[0]
    return got


def echo_roundtrip(port, payload=b"hello portgate", **kw):
    s = connect(port, **kw)
    got = roundtrip(s, payload, shut=True)
    s.close()
    return got


def is_refused(port, **kw):
    """True if a connection through the gateway is closed without any byte of the echo."""
    try:
        s = connect(port, **kw)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    try:
        s.sendall(b"ping")
        return s.recv(16) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


@pytest.fixture(scope="session")
def clip():
    """A 5-minute H.264 test pattern, readable by the unprivileged user VLC runs as. Longer than
    the tests: VLC renumbers its tracks when a looped clip starts over, and a SETUP for the old
    track then gets 404. Made once per run, in the directory pytest-xdist's workers share: the
    first worker to need it makes it while the others wait."""
    shared = os.environ["PORTGATE_TEST_SHARED"]
    path = os.path.join(shared, "clip.mp4")
    with open(os.path.join(shared, "clip.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            part = os.path.join(shared, "clip-part.mp4")
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                            "-i", "testsrc=size=320x240:rate=25", "-t", "300", "-c:v", "libx264",
                            "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", part],
                           check=True, timeout=300)
            os.chmod(part, 0o644)
            os.rename(part, path)
    return path


def vlc_command(clip, host, port):
    """VLC 3 as an encoder: the clip, looped, over RTSP on host:port at /live. VLC refuses to
    run as root, so it runs as nobody."""
    h = f"[{host}]" if ":" in host else host
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cvlc", "-q", clip,
            "--loop", "--sout", f"#rtp{{sdp=rtsp://{h}:{port}/live}}", "--sout-keep"]


def ffprobe_frames(url, transport="udp", seconds=3, prefix=(), timeout=60):
    """Video frames ffprobe decodes from url in its first seconds (0 if it fails or hangs).
    prefix runs it elsewhere (ip netns exec NS)."""
    try:
        r = subprocess.run(list(prefix) + [
            "ffprobe", "-v", "error", "-rtsp_transport", transport, "-count_frames",
            "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-read_intervals",
            f"%+{seconds}", url], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 0
    m = re.search(r"nb_read_frames=(\d+)", r.stdout)
    return int(m[1]) if m else 0
