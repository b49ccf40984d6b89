"""Packaging: the systemd unit (dist/portgate.service), the sysusers.d file, the man pages, and
what `meson install` puts where.

The unit is checked with systemd-analyze (verify, and the exposure score of its sandboxing):
this machine does not run systemd as PID 1, so nothing here starts the service."""
import os
import platform
import re
import shutil
import subprocess

import pytest

from conftest import BINARY, ROOT

DIST = os.path.join(ROOT, "dist")
MAN = os.path.join(ROOT, "man")
PAGES = {"portgate.8": "man8", "portgate.conf.5": "man5"}


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def need(program):
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")


def configure_unit(directory, bindir, sysconfdir="/etc"):
    """dist/portgate.service with its placeholders filled in, as meson's configure_file() does,
    written to directory/portgate.service (systemd-analyze takes the unit name from the file)."""
    with open(os.path.join(DIST, "portgate.service")) as f:
        text = f.read()
    text = text.replace("@bindir@", bindir).replace("@sysconfdir@", sysconfdir)
    assert re.search(r"@[A-Za-z_]+@", text) is None, "a placeholder meson does not fill in"
    path = directory / "portgate.service"
    path.write_text(text)
    return path


@pytest.fixture
def unit(tmp_path):
    """The configured unit, with ExecStart= on a real portgate binary (systemd-analyze verify
    checks that the programs it runs exist and are executable)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.abspath(BINARY), bindir / "portgate")
    return configure_unit(tmp_path, str(bindir))


@pytest.fixture
def manpath(tmp_path):
    """A man directory holding the two pages, for the unit's Documentation=man:... links."""
    root = tmp_path / "man"
    for page, section in PAGES.items():
        (root / section).mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(MAN, page), root / section / page)
    return root


# ---- the unit ----

def test_unit_verifies(unit, manpath):
    need("systemd-analyze")
    env = dict(os.environ, MANPATH=str(manpath), SYSTEMD_LOG_COLOR="0")
    r = sh(["systemd-analyze", "verify", "--man=yes", str(unit)], env=env, cwd=unit.parent)
    # Complaints about other units of this system are theirs; none may be about this one.
    about_ours = [l for l in r.stderr.splitlines() if "portgate" in l]
    assert about_ours == [], r.stderr
    assert r.returncode == 0, r.stderr


def test_unit_keeps_its_essential_settings(unit):
    """The settings the service depends on, in case an edit drops one: systemd-analyze accepts a
    unit without them."""
    text = unit.read_text()
    settings = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            settings.setdefault(m[1], []).append(m[2])
    bindir = str(unit.parent / "bin")
    assert settings["ExecStart"] == [f"{bindir}/portgate run -c /etc/portgate/portgate.conf"]
    assert settings["ExecStartPre"] == [f"{bindir}/portgate check -c /etc/portgate/portgate.conf"]
    assert settings["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert settings["User"] == ["portgate"] and settings["Group"] == ["portgate"]
    assert settings["Type"] == ["simple"]
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] == \
        ["CAP_NET_BIND_SERVICE"]
    assert settings["RuntimeDirectory"] == ["portgate"]  # admin.sock's default directory
    assert settings["StateDirectory"] == ["portgate"]  # state.json's
    # SIGTERM drains for up to drain-timeout (30s by default): systemd must wait longer.
    stop = re.fullmatch(r"(\d+)s", settings["TimeoutStopSec"][0])
    assert stop and int(stop[1]) > 30
    assert "AF_NETLINK" not in settings["RestrictAddressFamilies"][0]


def exposure(unit):
    r = sh(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
           cwd=unit.parent)
    m = re.search(r"Overall exposure level for portgate\.service: ([0-9.]+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m[1]), m[2], r.stdout


def test_unit_exposure_is_ok(unit):
    need("systemd-analyze")
    if "--offline" not in sh(["systemd-analyze", "--help"]).stdout:
        pytest.skip("this systemd-analyze has no security --offline (systemd < 250)")
    score, level, table = exposure(unit)
    assert level in ("PERFECT", "SAFE", "OK") and score <= 3.0, table


# ---- the user ----

def test_sysusers_creates_the_user_and_group(tmp_path):
    need("systemd-sysusers")
    if os.geteuid() != 0:
        pytest.skip("systemd-sysusers --root needs root")
    (tmp_path / "etc").mkdir()
    r = sh(["systemd-sysusers", f"--root={tmp_path}", os.path.join(DIST, "portgate.sysusers")])
    assert r.returncode == 0, r.stderr
    def entries(name):
        return {l.split(":")[0]: l.split(":") for l in (tmp_path / name).read_text().splitlines()}
    users, groups = entries("etc/passwd"), entries("etc/group")
    user, group = users["portgate"], groups["portgate"]
    assert user[3] == group[2]  # its primary group is portgate
    assert int(user[2]) < 1000  # a system user
    assert user[6].endswith("nologin")


# ---- name resolution without AF_NETLINK ----

NO_NETLINK = r"""
import ctypes, os, struct, sys
# socket(AF_NETLINK, ...) fails with EAFNOSUPPORT, as under RestrictAddressFamilies= without it.
def insn(code, k, jt=0, jf=0): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
prog = b"".join([insn(LD, 0), insn(JEQ, 41, 0, 2), insn(LD, 16), insn(JEQ, 16, 1, 0),
                 insn(RET, 0x7fff0000), insn(RET, 0x00050000 | 97)])
buf = ctypes.create_string_buffer(prog)
fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf)))
libc = ctypes.CDLL(None, use_errno=True)
ul = ctypes.c_ulong
assert libc.prctl(38, ul(1), ul(0), ul(0), ul(0)) == 0, ctypes.get_errno()
assert libc.prctl(22, ul(2), ctypes.c_void_p(ctypes.addressof(fprog)), ul(0), ul(0)) == 0
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_target_names_resolve_without_netlink(tmp_path):
    """The unit leaves AF_NETLINK out of RestrictAddressFamilies=. glibc's getaddrinfo() opens a
    netlink socket to sort a name's several addresses (RFC 6724); refused, it sorts without
    knowing which source addresses are deprecated or temporary. portgate check resolves a name
    with three addresses to the same first address either way."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private /etc/hosts)")
    if platform.machine() != "x86_64":
        pytest.skip("the filter is written for x86_64's socket() number")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n192.0.2.10 three.example\n"
                     "2001:db8::10 three.example\n198.51.100.7 three.example\n")
    (tmp_path / "nonetlink.py").write_text(NO_NETLINK)
    r = sh(["/usr/bin/python3", str(tmp_path / "nonetlink.py"), "/usr/bin/python3", "-c",
            "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)"])
    assert "[Errno 97]" in r.stderr, r.stderr  # the filter refuses netlink
    check = [BINARY, "check", "--map", "tcp:127.0.0.1:9999=three.example:80"]
    cmd = " ".join(["mount --bind", str(hosts), "/etc/hosts && exec"])
    outs = []
    for wrap in ([], ["/usr/bin/python3", str(tmp_path / "nonetlink.py")]):
        r = sh(["unshare", "-m", "sh", "-c", f'{cmd} "$@"', "sh"] + wrap + check)
        assert r.returncode == 0, r.stderr
        outs.append(re.search(r"resolved=(\S+)", r.stdout)[1])
    assert outs == ["192.0.2.10", "192.0.2.10"]


# ---- the man pages ----

@pytest.mark.parametrize("page", sorted(PAGES))
def test_man_page_renders_without_warnings(page):
    need("man")
    need("groff")
    path = os.path.join(MAN, page)
    r = sh(["man", "--warnings", "-E", "UTF-8", "-l", path], env=dict(os.environ, MANWIDTH="80"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "portgate" in r.stdout
    r = sh(["groff", "-man", "-ww", "-z", path])
    assert r.returncode == 0 and r.stderr == "", r.stderr


def rendered(page):
    r = sh(["man", "-E", "UTF-8", "-l", os.path.join(MAN, page)],
           env=dict(os.environ, MANWIDTH="200"))
    return re.sub(r".\x08", "", r.stdout)


def doc_tables():
    """The rows of the [gateway] and [map NAME] tables of docs/configuration.md: key, default."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    rows = {}
    for section in ("[gateway]", "[map NAME]"):
        body = doc.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            m = re.fullmatch(r"`([a-z-]+)`", cells[0]) if len(cells) >= 3 else None
            if m:
                default = cells[2] if section == "[map NAME]" else cells[1]
                rows.setdefault(section, []).append((m[1], default))
    return rows


def test_conf_page_has_every_key_and_default_of_the_reference():
    """portgate.conf(5) is docs/configuration.md as a man page: every key, each with the
    defaults the reference gives in code type."""
    need("man")
    text = rendered("portgate.conf.5")
    for section, rows in doc_tables().items():
        assert len(rows) >= 9, section
        for key, default in rows:
            heads = re.findall(rf"^ {{7}}{re.escape(key)} \((.*)\)$", text, re.M)
            assert heads, f"{section} {key} has no entry"
            for value in re.findall(r"`([^`]+)`", default):
                assert any(value in h for h in heads), (section, key, value, heads)


def test_page_has_every_command():
    need("man")
    text = rendered("portgate.8")
    synopsis = text.split("SYNOPSIS", 1)[1].split("DESCRIPTION", 1)[0]
    usage = sh([BINARY, "--help"]).stdout
    commands = re.findall(r"^  ([a-z]+) ", usage.split("Commands:", 1)[1].split("\n\n", 1)[0],
                          re.M)
    assert {"run", "check", "passwd", "token"} <= set(commands)
    for command in set(commands) | {"map", "status", "conns"}:
        assert f"portgate {command}" in synopsis, command


# ---- meson install ----

@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """A fresh build of this source tree installed into a DESTDIR, once per session: (destdir,
    the installed unit's directory, the sysusers directory)."""
    need("meson")
    with open(os.path.join(ROOT, "meson.build")) as f:
        if not re.search(r"^\s*subdir\(\s*'dist'\s*\)", f.read(), re.M):
            pytest.skip("meson.build does not install dist/ yet (add subdir('dist'))")
    tmp = tmp_path_factory.mktemp("install")
    build, dest = tmp / "build", tmp / "dest"
    for args in (["meson", "setup", str(build), ROOT, "--prefix=/usr", "--sysconfdir=/etc",
                  "-Doptimization=0"],
                 ["meson", "compile", "-C", str(build), "portgate"],
                 ["meson", "install", "-C", str(build), "--no-rebuild", "--destdir", str(dest)]):
        r = sh(args)
        assert r.returncode == 0, f"{' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    # Where meson was told to put them: systemd's own directories, else under the prefix.
    dirs = {"systemdsystemunitdir": "/usr/lib/systemd/system", "sysusersdir": "/usr/lib/sysusers.d"}
    for var in dirs if shutil.which("pkg-config") else ():
        r = sh(["pkg-config", f"--variable={var}", "systemd"])
        if r.returncode == 0 and r.stdout.strip():
            dirs[var] = r.stdout.strip()
    return dest, dirs["systemdsystemunitdir"], dirs["sysusersdir"]


def under(dest, path):
    return dest / path.lstrip("/")


def test_install_puts_everything_in_place(installed):
    dest, unitdir, sysusersdir = installed
    binary = dest / "usr/bin/portgate"
    assert binary.is_file() and os.access(binary, os.X_OK)
    unit = under(dest, unitdir) / "portgate.service"
    text = unit.read_text()
    assert "ExecStart=/usr/bin/portgate run -c /etc/portgate/portgate.conf\n" in text
    assert "ExecStartPre=/usr/bin/portgate check -c /etc/portgate/portgate.conf\n" in text
    assert re.search(r"@[A-Za-z_]+@", text) is None
    sysusers = under(dest, sysusersdir) / "portgate.conf"  # sysusers.d reads *.conf
    with open(os.path.join(DIST, "portgate.sysusers")) as f:
        assert sysusers.read_text() == f.read()
    for page, section in PAGES.items():
        with open(os.path.join(MAN, page)) as f:
            assert (dest / "usr/share/man" / section / page).read_text() == f.read()
    example = dest / "usr/share/doc/portgate/examples/portgate.conf"
    with open(os.path.join(ROOT, "examples", "portgate.conf")) as f:
        assert example.read_text() == f.read()
    # The configuration is the administrator's: never installed over.
    assert not (dest / "etc").exists()


def test_installed_unit_verifies(installed, tmp_path, manpath):
    """The unit meson configured (not only the test's own filling-in of the template), with its
    /usr/bin/portgate pointed at the installed binary."""
    need("systemd-analyze")
    dest, unitdir, _ = installed
    text = (under(dest, unitdir) / "portgate.service").read_text()
    (tmp_path / "portgate.service").write_text(
        text.replace("/usr/bin/portgate", str(dest / "usr/bin/portgate")))
    env = dict(os.environ, MANPATH=str(manpath), SYSTEMD_LOG_COLOR="0")
    r = sh(["systemd-analyze", "verify", str(tmp_path / "portgate.service")], env=env,
           cwd=tmp_path)
    assert [l for l in r.stderr.splitlines() if "portgate" in l] == [], r.stderr
    assert r.returncode == 0, r.stderr
