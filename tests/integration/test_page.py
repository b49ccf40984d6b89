"""The admin web page end to end: the real gateway with its HTTP listener, driven by headless
Chromium through Selenium the way a user would use it (the setup panel, logging in, adding,
watching, disabling, editing, deleting and logging out), with the browser's console checked at
the end; two-factor authentication set up and used; a tls and an https mapping through the same
form, and the fields each protocol has.
Also the table's look: a screenshot for docs/admin-page.png (written only with
PORTGATE_SCREENSHOT=1) and the table at a phone's width."""
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

selenium = pytest.importorskip("selenium", reason="the page tests need Selenium (python3-selenium)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from adminclient import Admin  # noqa: E402
from conftest import (BINARY, ROOT, connect, echo_roundtrip, free_ports,  # noqa: E402
                      is_refused, recv_all, recv_exactly)
from httpdevice import Device  # noqa: E402
from test_admin import file_map, passwd, totp  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the page tests need Chromium and its driver (the chromium and chromium-driver "
           "packages): " + ", ".join(n for n, p in (("chromium", CHROMIUM),
                                                    ("chromedriver", CHROMEDRIVER)) if p is None))

API = "/api/v1"
USER = "admin"
PASSWORD = "correct horse battery"
SCREENSHOT = os.path.join(ROOT, "docs", "admin-page.png")

# What the page may leave in the console: the answers Chrome logs as failed loads that the
# story asks for (401: not logged in or a wrong password; 400: a bad port; 409 and 412 would be
# a conflict the page shows). Anything else (a 404 of an asset, a script error, a CSP
# violation, a console.error or console.warn of the page) fails the test.
EXPECTED_STATUSES = {400, 401, 409, 412}
NETWORK_ENTRY = re.compile(r"^(\S+) - Failed to load resource: the server responded with a "
                           r"status of (\d{3})\b")


# ---------------------------------------------------------------- the gateway

def web_gateway(gateway, maps=""):
    """A gateway with its HTTP listener on a free loopback port and no user yet (as
    test_admin.http_gateway, with the config file's mappings given here); g.url is its page,
    g.api its API on the unix socket (no login needed there)."""
    port = free_ports()
    g = gateway(config=f"[gateway]\nadmin = 127.0.0.1:{port}\n" + maps)
    g.web_port = port
    g.url = f"http://127.0.0.1:{port}/"
    g.api = Admin(g.admin_socket)
    return g


def nice_port(preferred):
    """preferred if TCP and UDP can bind it on every address now (for a realistic picture),
    else a free port."""
    socks = []
    try:
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, typ)
            socks.append(s)
            s.bind(("0.0.0.0", preferred))
        return preferred
    except OSError:
        return free_ports()
    finally:
        for s in socks:
            s.close()


def add_listening_anywhere(api, m, preferred):
    """Adds m listening on 0.0.0.0 at the preferred port if it is free, else at a free one
    (another run of this test may have taken it between the look and the POST: 409)."""
    for port in (nice_port(preferred), free_ports(), free_ports()):
        r = api.post(f"{API}/mappings", dict(m, listen=f"0.0.0.0:{port}"))
        if r.status != 409:
            break
    assert r.status == 201, r


# ---------------------------------------------------------------- the browser

class Browser:
    """A headless Chromium, with helpers that wait the way a user looks at the page."""

    def __init__(self, driver):
        self.d = driver
        self.console = []  # every browser log entry so far (get_log drains what it returns)

    def wait(self, timeout=10):
        return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,
                                                 NoSuchElementException))

    def until(self, what, cond, timeout=10):
        """Waits for cond() to be true (or return something true) and returns it."""
        return self.wait(timeout).until(lambda d: cond(), message=f"waited {timeout}s for {what}")

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def els(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css, timeout=10):
        return self.wait(timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)),
                                        message=f"{css} never became visible")

    def gone(self, css, timeout=10):
        """Waits until css is hidden or no longer in the document."""
        self.wait(timeout).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, css)),
                                 message=f"{css} is still visible")

    def shown(self, css):
        found = self.els(css)
        return bool(found) and found[0].is_displayed()

    def click(self, css, timeout=10):
        self.wait(timeout).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)),
                                 message=f"{css} never became clickable").click()

    def type(self, css, text):
        e = self.el(css)
        e.clear()
        e.send_keys(text)

    def dialog_open(self, css):
        return self.d.execute_script("return document.querySelector(arguments[0]).open", css)

    def banner(self, text, timeout=10):
        """Waits for the message banner to say text, then dismisses it: its showing and hiding
        moves the page, and a click must not land while it moves. (The page sets the text and
        shows the banner at once; an information banner hides itself after 4 s, which a slow
        run may have let pass. Dismissed through the script: a click where its button was
        could hit whatever moved up under it if it hid itself meanwhile.)"""
        self.wait(timeout).until(EC.text_to_be_present_in_element((By.ID, "banner-text"), text),
                                 message=f"the banner never said {text!r}")
        self.d.execute_script("document.getElementById('banner-close').click()")
        self.gone("#banner")

    def logs(self):
        self.console += self.d.get_log("browser")
        return self.console

    def metrics(self, width, height, mobile=False):
        """Emulates a screen of width x height CSS pixels (headless Chrome makes no window
        narrower than about 500 px; this does any size)."""
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        self.until(f"a {width} px wide viewport",
                   lambda: self.d.execute_script("return window.innerWidth") == width)


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,900",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver)
    finally:
        driver.quit()


# ---------------------------------------------------------------- what the user sees

def row_css(name):
    return f'#mappings-table tbody tr[data-name="{name}"]'


def cell(b, name, cls):
    return b.el(f"{row_css(name)} .{cls}").text.strip()


def cell_title(b, name, cls):
    return b.el(f"{row_css(name)} .{cls}").get_attribute("title")


def row_names(b):
    return [tr.get_attribute("data-name") for tr in b.els("#mappings-table tbody tr")]


def log_in(b, user, password):
    b.visible("#login-view")
    b.type("#login-user", user)
    b.type("#login-password", password)
    b.click("#login-submit")


def log_in_ok(b):
    log_in(b, USER, PASSWORD)
    b.visible("#list-view")
    b.until("the user's name in the top bar", lambda: b.el("#user-name").text == USER)
    assert not b.shown("#login-view")


def fill_mapping(b, name, listen_addr, listen_port, target_addr, target_port, proto="tcp"):
    if name is not None:
        b.type("#f-name", name)
    Select(b.el("#f-proto")).select_by_value(proto)
    b.type("#f-listen-addr", listen_addr)
    b.type("#f-listen-port", str(listen_port))
    b.type("#f-target-addr", target_addr)
    b.type("#f-target-port", str(target_port))


def open_add_dialog(b):
    b.click("#add-mapping")
    b.until("the add dialog", lambda: b.dialog_open("#mapping-dialog"))
    b.visible("#f-name")
    assert b.el("#mapping-dialog-title").text == "Add port forward"


def assert_field_error(b, field, *words):
    """The error shown next to field's input, and the input marked invalid for screen
    readers."""
    err = b.visible(f"#err-{field}")
    for w in words:
        assert w in err.text, (field, err.text)
    inp = b.el(f"#f-{field}")
    assert inp.get_attribute("aria-invalid") == "true", field
    assert f"err-{field}" in (inp.get_attribute("aria-describedby") or "").split(), field
    assert b.d.switch_to.active_element == inp, "the field at fault has the focus"
    assert b.dialog_open("#mapping-dialog"), "the dialog stays open"


def assert_clean_console(b):
    """No script error or warning, no console.error/warn, and failed loads only for the API
    answers the story expects."""
    bad, network = [], []
    for e in b.logs():
        if e["level"] not in ("SEVERE", "WARNING"):
            continue
        if e["source"] != "network":
            bad.append(e)  # javascript, console-api, security (CSP), ...
            continue
        m = NETWORK_ENTRY.match(e["message"])
        url = urllib.parse.urlsplit(m[1]) if m else None
        if not (m and url.path.startswith(API + "/") and int(m[2]) in EXPECTED_STATUSES):
            bad.append(e)
        else:
            network.append((url.path, int(m[2])))
    assert bad == [], "the browser's console has unexpected entries:\n" + "\n".join(
        f"{e['level']} {e['source']}: {e['message']}" for e in bad)
    return network


# ---------------------------------------------------------------- the story

def test_page_story(gateway, tcp_echo, browser):
    b = browser
    srv = tcp_echo()
    g = web_gateway(gateway, maps=file_map("file", free_ports(), 9))

    # 1. No user yet: the page says how to make one.
    b.d.get(g.url)
    setup = b.visible("#setup-panel")
    assert "No user yet" in setup.text
    assert "portgate passwd" in b.el("#setup-panel code").text
    for other in ("#login-view", "#list-view", "#main-nav", "#user-box"):
        assert not b.shown(other), other

    # 2. The user made on the gateway, "Check again" brings the login form; a wrong password
    # is refused with a message and nothing else opens; the right one gets in.
    passwd(g, USER, PASSWORD)
    b.click("#setup-retry")
    b.visible("#login-view")
    assert not b.shown("#setup-panel")
    assert b.d.switch_to.active_element == b.el("#login-user")
    log_in(b, USER, "not the password")
    err = b.visible("#login-error")
    assert "wrong user or password" in err.text.lower(), err.text
    assert b.el("#login-password").get_attribute("aria-invalid") == "true"
    assert not b.shown("#list-view") and not b.shown("#user-box")
    assert b.d.get_cookie("portgate_session") is None
    log_in_ok(b)
    assert b.d.get_cookie("portgate_session") is not None
    assert not b.shown("#login-error")
    # The config file's mapping is listed, read-only, with where it is set.
    b.visible(row_css("file"))
    assert "read-only" in cell(b, "file", "c-actions")
    assert not b.el(f'{row_css("file")} .toggle-enabled').is_enabled()

    # 3. Add a TCP mapping through the form: listed, listening, its counters at zero.
    port = free_ports()
    open_add_dialog(b)
    assert b.d.switch_to.active_element == b.el("#f-name")
    assert b.el("#f-enabled").is_selected(), "a new mapping is enabled by default"
    fill_mapping(b, "echo", "127.0.0.1", port, "127.0.0.1", srv.port)
    b.click("#mapping-save")
    b.until("the add dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    b.banner("echo added.")
    b.visible(row_css("echo"))
    b.until("echo listening", lambda: cell(b, "echo", "c-status") == "listening")
    assert cell(b, "echo", "c-proto") == "tcp"
    assert cell(b, "echo", "c-listen") == f"127.0.0.1:{port}"
    assert cell(b, "echo", "c-target") == f"127.0.0.1:{srv.port}"
    assert b.el(f'{row_css("echo")} .toggle-enabled').is_selected()
    for cls, want in (("c-open", "0"), ("c-bytes-in", "0 B"), ("c-bytes-out", "0 B")):
        assert cell(b, "echo", cls) == want, cls
    assert row_names(b) == ["file", "echo"]
    m = g.api.mappings()["echo"]
    assert m["source"] == "api" and m["listen"] == f"127.0.0.1:{port}", m

    # 4. Traffic through it moves its counters within a few refreshes: an open connection
    # shows in "Open", and the bytes show when the connections end.
    held = connect(port)
    try:
        held.sendall(b"ping")
        assert recv_exactly(held, 4) == b"ping"
        b.until("one open connection", lambda: cell(b, "echo", "c-open") == "1", timeout=10)
    finally:
        held.close()
    payloads = [b"hello portgate", b"x" * 1000, b"y" * 3000]
    for p in payloads:
        assert echo_roundtrip(port, p) == p
    total = 4 + sum(len(p) for p in payloads)  # 4018 bytes: "3.9 KiB" each way
    b.until("the bytes of the closed connections",
            lambda: (cell(b, "echo", "c-bytes-in"), cell(b, "echo", "c-bytes-out"),
                     cell(b, "echo", "c-open")) == ("3.9 KiB", "3.9 KiB", "0"), timeout=10)
    assert cell_title(b, "echo", "c-bytes-in") == f"{total} bytes"
    assert cell_title(b, "echo", "c-bytes-out") == f"{total} bytes"
    assert cell(b, "echo", "c-last") != "never"
    st = g.api.mappings()["echo"]["stats"]
    assert (st["accepted"], st["bytes-in"], st["bytes-out"]) == (4, total, total), st
    # Its own view (the name is a link) has the rest of its counters: 4 accepted.
    b.click(f'{row_css("echo")} .name-link')
    b.visible("#detail-view")
    assert not b.shown("#list-view")
    assert b.el("#detail-title").text == "echo"
    assert "127.0.0.1:%d" % port in b.el("#detail-summary").text
    b.until("the accepted count",
            lambda: b.el('#detail-counters dd[data-key="accepted"]').text == "4")
    assert b.el('#detail-counters dd[data-key="bytes-in"]').text == f"3.9 KiB ({total})"
    assert b.el('#detail-counters dd[data-key="bytes-out"]').text == f"3.9 KiB ({total})"
    b.until("the connections' list", lambda: b.el("#conn-note").text == "No open connections.")
    b.click("#detail-view .back a")
    b.visible("#list-view")
    b.visible(row_css("echo"))

    # 5. Its toggle disables it: the status says so and the port refuses.
    b.click(f'{row_css("echo")} .toggle-enabled')
    b.banner("echo disabled.")
    b.until("echo disabled", lambda: cell(b, "echo", "c-status") == "disabled")
    assert not b.el(f'{row_css("echo")} .toggle-enabled').is_selected()
    assert is_refused(port)
    assert g.api.mappings()["echo"]["enabled"] is False

    # 6. A bad port, in the edit dialog and in the add dialog: the error next to the port,
    # the input marked invalid, nothing changed and nothing added.
    b.click(f'{row_css("echo")} .edit-mapping')
    b.until("the edit dialog", lambda: b.dialog_open("#mapping-dialog"))
    assert b.el("#mapping-dialog-title").text == "Edit port forward echo"
    assert b.el("#f-listen-port").get_attribute("value") == str(port)
    b.type("#f-listen-port", "99999")
    b.click("#mapping-save")
    assert_field_error(b, "listen-port", "99999", "1 to 65535")
    assert not b.shown("#err-listen-addr") and not b.shown("#err-form")
    b.click("#mapping-cancel")
    b.until("the edit dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    assert g.api.mappings()["echo"]["listen"] == f"127.0.0.1:{port}"

    open_add_dialog(b)
    assert b.el("#f-listen-port").get_attribute("aria-invalid") is None, "errors are cleared"
    fill_mapping(b, "bad-port", "127.0.0.1", 0, "192.0.2.10", 80)
    b.click("#mapping-save")
    assert_field_error(b, "listen-port", "1 to 65535")
    b.click("#mapping-cancel")
    b.until("the add dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    assert "bad-port" not in g.api.mappings()
    assert row_names(b) == ["file", "echo"]

    # 7. Delete it, confirmed: the row goes, and the API has no such mapping.
    b.click(f'{row_css("echo")} .delete-mapping')
    b.until("the confirm dialog", lambda: b.dialog_open("#confirm-dialog"))
    assert "echo" in b.visible("#confirm-title").text
    b.click("#confirm-yes")
    b.until("the confirm dialog to close", lambda: not b.dialog_open("#confirm-dialog"))
    b.banner("echo deleted.")
    b.gone(row_css("echo"))
    assert row_names(b) == ["file"]
    assert g.api.get(f"{API}/mappings/echo").status == 404
    assert "echo" not in g.api.mappings()

    # 8. Log out: the login form is back, and the old cookie opens nothing any more.
    sid = b.d.get_cookie("portgate_session")["value"]
    old = Admin(host="127.0.0.1", port=g.web_port, headers={"Cookie": f"portgate_session={sid}"})
    assert old.get(f"{API}/mappings").status == 200  # it was good until now
    b.click("#logout")
    b.visible("#login-view")
    assert "logged out" in b.visible("#login-notice").text
    for gone in ("#list-view", "#user-box", "#main-nav"):
        assert not b.shown(gone), gone
    assert b.els("#mappings-table tbody tr") == [], "the table is emptied at logout"
    assert b.d.get_cookie("portgate_session") is None
    assert old.get(f"{API}/mappings").status == 401
    assert old.get(f"{API}/session").status == 401
    g.wait_log(f"admin: user {USER} logged out")

    # The console: nothing but the failed loads the story expects.
    network = assert_clean_console(b)
    assert (f"{API}/session", 401) in network, network  # the first look, without a session


# ---------------------------------------------------------------- two-factor authentication

def log_out(b):
    b.click("#logout")
    b.visible("#login-view")


def log_in_with_code(b, code):
    """The password first; the page then asks for the code."""
    log_in(b, USER, PASSWORD)
    b.visible("#login-code-field")
    assert b.d.switch_to.active_element == b.el("#login-code")
    b.type("#login-code", code)
    b.click("#login-submit")


def logged_in(b):
    """In (the view is the one the address names: the account view, where this story is)."""
    b.visible("#user-box")
    b.until("the user's name in the top bar", lambda: b.el("#user-name").text == USER)
    assert not b.shown("#login-view") and not b.shown("#login-code-field")


def assert_login_refused(b):
    err = b.visible("#login-error")
    assert "wrong user, password or code" in err.text.lower(), err.text
    assert b.el("#login-code").get_attribute("aria-invalid") == "true"
    assert b.el("#login-code").get_attribute("value") == ""  # a code is typed anew
    assert not b.shown("#list-view") and b.d.get_cookie("portgate_session") is None


def test_page_two_factor(gateway, browser):
    b = browser
    g = web_gateway(gateway)
    passwd(g, USER, PASSWORD)
    b.d.get(g.url)
    log_in_ok(b)

    # 1. The account view has the panel; it is off.
    b.click("#nav-account")
    b.visible("#tfa-panel")
    b.until("the state of the second factor", lambda: "Off" in b.el("#tfa-state").text)
    assert not b.shown("#tfa-disable-form")

    # 2. Set it up: a QR code drawn in the page (an <svg> made with DOM calls, which the CSP
    # lets through), the key to type by hand, and the otpauth link the test reads it from.
    b.click("#tfa-begin")
    b.visible("#tfa-enrol")
    assert b.d.switch_to.active_element == b.el("#tfa-code")
    svg = b.el("#tfa-qr svg")
    size = int(b.d.execute_script("return arguments[0].getAttribute('viewBox')", svg).split()[3])
    assert size >= 29 and svg.size["width"] >= 150, (size, svg.size)
    assert b.el("#tfa-qr svg path").get_attribute("d").startswith("M4 4h7v1h-7z")
    uri = b.el("#tfa-uri").get_attribute("href")
    m = re.fullmatch(r"otpauth://totp/portgate:admin\?secret=([A-Z2-7]{32})&issuer=portgate"
                     r"&algorithm=SHA1&digits=6&period=30", uri)
    assert m, uri
    secret = m[1]
    assert b.el("#tfa-secret").text.replace(" ", "") == secret
    assert "totp" not in g.users.read_text(), "not on before it is confirmed"

    # 3. Confirm: a wrong code is refused next to the field, the right one turns it on and
    # shows the ten recovery codes, once.
    t0 = time.time()
    b.type("#tfa-code", totp(secret, t0, steps=-10))
    b.click("#tfa-confirm")
    assert "wrong code" in b.visible("#tfa-error").text.lower()
    assert b.el("#tfa-code").get_attribute("aria-invalid") == "true"
    b.type("#tfa-code", totp(secret, t0))
    b.click("#tfa-confirm")
    b.visible("#tfa-codes")
    codes = [li.text for li in b.els("#tfa-codes-list li")]
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", c) for c in codes), codes
    assert not b.shown("#tfa-enrol") and b.els("#tfa-qr svg") == [], "the key is gone"
    b.click("#tfa-codes-done")
    b.gone("#tfa-codes")
    assert b.els("#tfa-codes-list li") == []
    b.until("on, with 10 codes", lambda: "10 recovery codes left" in b.el("#tfa-state").text)
    assert b.shown("#tfa-disable-form")
    assert re.search(rf"^totp {USER} {secret} \d+$", g.users.read_text(), re.M)

    # 4. Log out and in: the password, then the code the page asks for. A wrong code is
    # refused; the right one gets in; the same one again (replayed) is refused.
    log_out(b)
    assert not b.shown("#login-code-field")
    log_in_with_code(b, totp(secret, t0, steps=-10))
    assert_login_refused(b)
    code = totp(secret, t0, steps=1)  # the confirming step is used up
    b.type("#login-code", code)
    b.click("#login-submit")
    logged_in(b)
    log_out(b)
    log_in_with_code(b, code)
    assert_login_refused(b)
    g.wait_log(f"admin: wrong second-factor code for user {USER} from 127.0.0.1: a code already "
               "used")

    # 5. A recovery code, as the page showed it, works once.
    b.type("#login-code", codes[0])
    b.click("#login-submit")
    logged_in(b)
    g.wait_log(f"admin: user {USER} used a recovery code from 127.0.0.1; 9 left")
    log_out(b)
    log_in_with_code(b, codes[0])
    assert_login_refused(b)

    # 6. Another user name needs no code: the field goes away when the name changes.
    b.type("#login-user", "someone")
    assert not b.shown("#login-code-field")

    # 7. In with another recovery code; turn it off with the password; then the password alone
    # logs in.
    log_in_with_code(b, codes[1].lower())
    logged_in(b)
    b.click("#nav-account")
    b.until("8 codes left", lambda: "8 recovery codes left" in b.el("#tfa-state").text)
    b.type("#tfa-disable-secret", "not the password")
    b.click("#tfa-disable")
    assert "wrong password or code" in b.visible("#tfa-error").text.lower()
    assert b.shown("#list-view") is False and b.shown("#account-view"), "still logged in"
    b.type("#tfa-disable-secret", PASSWORD)
    b.click("#tfa-disable")
    b.banner("Two-factor authentication turned off.")
    b.until("off", lambda: "Off" in b.el("#tfa-state").text)
    assert b.shown("#tfa-off") and not b.shown("#tfa-disable-form")
    assert "totp" not in g.users.read_text()
    log_out(b)
    log_in(b, USER, PASSWORD)
    logged_in(b)

    log = g.log()
    assert secret not in log and code not in log
    assert not any(c.replace("-", "") in log for c in codes)
    network = assert_clean_console(b)
    assert (f"{API}/me/totp/confirm", 400) in network, network
    assert (f"{API}/session", 401) in network, network


# ---------------------------------------------------------------- a tls mapping

def settings(m):
    """A mapping as the API gives it, without what changes by itself (status, counters)."""
    return {k: v for k, v in m.items() if k not in ("status", "stats")}


def counter_labels(b):
    """The detail view's counters: label -> key."""
    return dict(b.d.execute_script(
        "return [...document.querySelectorAll('#detail-counters dt')]"
        ".map((dt) => [dt.textContent, dt.nextElementSibling.dataset.key])"))


def test_page_tls_mapping(gateway, tcp_echo, browser, tmp_path):
    """A tls mapping added through the form with a certificate from `portgate cert`: the fields
    that only tls has, the check's errors at the field they are about, a TLS client through it,
    the TLS counters in its view with readable names, and its settings back in the edit dialog
    (a save changes only what was changed)."""
    b = browser
    made = subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    crt, key = tmp_path / "c.crt", tmp_path / "c.key"
    srv = tcp_echo()
    g = web_gateway(gateway)
    passwd(g, USER, PASSWORD)
    b.d.get(g.url)
    log_in_ok(b)

    # 1. The protocol decides the fields: rtsp has RTP ports and no certificate; tls has a
    # certificate and a key (General), its TLS settings and TCP's limits (Advanced), no RTP
    # ports and no sessions.
    open_add_dialog(b)
    proto = Select(b.el("#f-proto"))
    assert "TLS (any protocol over TCP)" in [o.text for o in proto.options]
    assert "TLS ends at the gateway" in b.el("#hint-proto").text
    assert not b.shown("#f-cert"), "tcp, the default, has no certificate"
    proto.select_by_value("rtsp")
    assert not b.shown("#f-cert") and not b.shown("#f-key")
    b.click("#tab-advanced")
    assert b.shown("#f-rtp-ports") and not b.shown("#f-min-tls")
    b.click("#tab-general")
    proto.select_by_value("tls")
    assert b.shown("#f-cert") and b.shown("#f-key")
    assert "comma-separated" in b.el("#hint-cert").text
    b.click("#tab-advanced")
    assert not b.shown("#f-rtp-ports") and not b.shown("#f-max-sessions")
    for field in ("max-conns", "max-conns-per-ip", "connect-timeout", "idle-timeout", "min-tls",
                  "handshake-timeout", "alpn", "ocsp", "ciphers"):
        assert b.shown(f"#f-{field}"), field
    assert Select(b.el("#f-min-tls")).first_selected_option.get_attribute("value") == "1.2"
    assert b.el("#f-handshake-timeout").get_attribute("placeholder") == "10s"
    b.click("#tab-general")

    # 2. The certificate is needed (said before anything is sent); a file that does not exist,
    # a key that does not exist: the gateway's check (a 400 naming the key) at that field.
    port = free_ports()
    fill_mapping(b, "web-tls", "127.0.0.1", port, "127.0.0.1", srv.port, proto="tls")
    b.click("#mapping-save")
    assert_field_error(b, "cert", "certificate")
    missing = tmp_path / "missing.crt"
    b.type("#f-cert", str(missing))
    b.click("#mapping-save")
    assert_field_error(b, "cert", str(missing), "No such file")
    assert not b.shown("#err-form")
    b.type("#f-cert", str(crt))
    b.type("#f-key", str(tmp_path / "missing.key"))
    b.click("#mapping-save")
    assert_field_error(b, "key", "missing.key", "No such file")
    assert not b.shown("#err-cert"), "the cert's error is gone once it is right"
    assert "web-tls" not in g.api.mappings()

    # 3. With its key, and on the Advanced tab a handshake timeout and ALPN: added, listed as
    # tls, listening, and the API has exactly what was typed (nothing for the empty fields).
    b.type("#f-key", str(key))
    b.click("#tab-advanced")
    b.type("#f-handshake-timeout", "5s")
    b.type("#f-alpn", "http/1.1")
    b.click("#mapping-save")
    b.until("the add dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    b.banner("web-tls added.")
    b.visible(row_css("web-tls"))
    b.until("web-tls listening", lambda: cell(b, "web-tls", "c-status") == "listening")
    assert cell(b, "web-tls", "c-proto") == "tls"
    assert cell(b, "web-tls", "c-listen") == f"127.0.0.1:{port}"
    m = g.api.mappings()["web-tls"]
    assert (m["proto"], m["cert"], m["key"], m["handshake-timeout"], m["alpn"], m["min-tls"]) \
        == ("tls", str(crt), str(key), "5s", "http/1.1", "1.2"), m
    assert "ocsp" not in m and "ciphers" not in m, m

    # 4. A TLS client that trusts the certificate gets through to the device (ALPN agreed),
    # and resumes with its ticket; plain HTTP to the port is a failed handshake.
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(connect(port), server_hostname="localhost")
    try:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"hello through tls")
        assert recv_exactly(s, 17) == b"hello through tls"  # the TLS 1.3 ticket comes with it
        sess = s.session
    finally:
        s.close()
    s = ctx.wrap_socket(connect(port), server_hostname="localhost", session=sess)
    try:
        assert s.session_reused
        s.sendall(b"again")
        assert recv_exactly(s, 5) == b"again"
    finally:
        s.close()
    c = connect(port)
    c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    recv_all(c)  # the gateway ends it (after an alert, maybe)
    c.close()
    assert srv.accepted == 2, "only the handshakes that succeeded reached the device"

    # 5. Its view: the TLS counters, named as a user reads them; no sessions, nothing spliced.
    b.click(f'{row_css("web-tls")} .name-link')
    b.visible("#detail-view")
    assert b.el("#detail-summary").text.startswith(f"TLS 127.0.0.1:{port} \u2192 ")
    b.until("the TLS counters",
            lambda: [b.el(f'#detail-counters dd[data-key="{k}"]').text
                     for k in ("tls-handshakes", "tls-resumed", "tls-handshake-failures")]
            == ["2", "1", "1"])
    labels = counter_labels(b)
    assert labels["TLS handshakes"] == "tls-handshakes", labels
    assert labels["TLS resumed"] == "tls-resumed", labels
    assert labels["TLS handshake failures"] == "tls-handshake-failures", labels
    for absent in ("bytes-spliced", "sessions", "evicted", "datagrams-in", "datagrams-out",
                   "datagrams-dropped"):
        assert absent not in labels.values(), (absent, labels)
    b.until("the connections' list", lambda: b.el("#conn-note").text == "No open connections.")
    assert not b.shown("#sessions-box")

    # 6. Edit: every setting is back in its field; a save with TLS 1.3 as the oldest version
    # changes that and nothing else, and a TLS 1.2 client is then turned away.
    before = settings(g.api.mappings()["web-tls"])
    b.click("#detail-edit")
    b.until("the edit dialog", lambda: b.dialog_open("#mapping-dialog"))
    assert b.el("#f-cert").get_attribute("value") == str(crt)
    assert b.el("#f-key").get_attribute("value") == str(key)
    b.click("#tab-advanced")
    assert b.el("#f-handshake-timeout").get_attribute("value") == "5s"
    assert b.el("#f-alpn").get_attribute("value") == "http/1.1"
    assert b.el("#f-ocsp").get_attribute("value") == ""
    assert b.el("#f-ciphers").get_attribute("value") == ""
    min_tls = Select(b.el("#f-min-tls"))
    assert min_tls.first_selected_option.get_attribute("value") == "1.2"
    min_tls.select_by_value("1.3")
    b.click("#mapping-save")
    b.until("the edit dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    b.banner("web-tls saved.")
    after = settings(g.api.mappings()["web-tls"])
    assert after == dict(before, **{"min-tls": "1.3"}), (before, after)
    old = ssl.create_default_context(cafile=str(crt))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        old.wrap_socket(connect(port), server_hostname="localhost").close()
    s = ctx.wrap_socket(connect(port), server_hostname="localhost")
    try:
        assert s.version() == "TLSv1.3"
    finally:
        s.close()

    # The errors at cert and key were the gateway's answers (docs/admin.md: 400 for a file
    # that does not load), shown at their fields.
    network = assert_clean_console(b)
    refused = [st for path, st in network if path == f"{API}/mappings"]
    assert refused == [400, 400], network


# ---------------------------------------------------------------- http, https, rtsps

TLS_SIDE = {"tls", "https", "rtsps"}
TCP_BASED = {"tcp", "tls", "http", "https", "rtsp", "rtsps"}
HTTP_SIDE = {"http", "https"}
# The fields that only some protocols have (docs/configuration.md, [map NAME]), on the tab
# they are on; idle timeout and allow (everyone's) as a check that the others stay.
GENERAL_FIELDS = {"cert": TLS_SIDE, "key": TLS_SIDE}
ADVANCED_FIELDS = {
    "max-conns": TCP_BASED, "max-conns-per-ip": TCP_BASED, "connect-timeout": TCP_BASED,
    "send-proxy": TCP_BASED, "accept-proxy": TCP_BASED, "trusted-proxies": TCP_BASED,
    "max-sessions": {"udp", "rtsp"}, "rtp-ports": {"rtsp"},
    "min-tls": TLS_SIDE, "handshake-timeout": TLS_SIDE, "ocsp": TLS_SIDE, "ciphers": TLS_SIDE,
    "alpn": {"tls"},
    "host": HTTP_SIDE, "target-host": HTTP_SIDE, "header-timeout": HTTP_SIDE,
    "device-auth": HTTP_SIDE, "acme-webroot": HTTP_SIDE, "keep-alive-timeout": HTTP_SIDE,
    "auth": TLS_SIDE | HTTP_SIDE, "client-ca": TLS_SIDE, "client-crl": TLS_SIDE,
    "users": TLS_SIDE | HTTP_SIDE,
    "max-header-size": HTTP_SIDE, "redirect-https": {"http"}, "hsts": {"https"},
    "idle-timeout": TCP_BASED | {"udp"}, "allow": TCP_BASED | {"udp"},
}


# The choices of auth each protocol has (docs/configuration.md).
AUTH_CHOICES = {"tls": {"none", "client-cert"}, "rtsps": {"none", "login", "client-cert"},
                "http": {"none", "login"}, "https": {"none", "login", "client-cert"}}


def assert_fields_of(b, proto):
    """With proto chosen in the dialog, exactly the fields proto has are on each tab, and the
    auth choices it has."""
    Select(b.el("#f-proto")).select_by_value(proto)
    if proto in AUTH_CHOICES:
        enabled = {o.get_attribute("value") for o in b.els("#f-auth option") if o.is_enabled()}
        assert enabled == AUTH_CHOICES[proto], (proto, enabled)
    for tab, fields in (("general", GENERAL_FIELDS), ("advanced", ADVANCED_FIELDS)):
        b.click(f"#tab-{tab}")
        shown = {k for k in fields if b.shown(f"#f-{k}")}
        want = {k for k, protos in fields.items() if proto in protos}
        assert shown == want, (proto, tab, "shown but not wanted:", shown - want,
                               "wanted but not shown:", want - shown)
    b.click("#tab-general")


def test_page_https_mapping(gateway, browser, tmp_path):
    """An https mapping added through the form (a certificate from `portgate cert`, HSTS,
    target-host and trusted proxies on the Advanced tab) in front of a device's web server:
    the fields each protocol has, a request through it with the HSTS header, the HTTP and TLS
    counters named as a user reads them, its settings back in the edit dialog; and an rtsps
    mapping's view, which has sessions."""
    b = browser
    made = subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    crt, key = tmp_path / "c.crt", tmp_path / "c.key"
    dev = Device()
    try:
        g = web_gateway(gateway)
        passwd(g, USER, PASSWORD)
        b.d.get(g.url)
        log_in_ok(b)
        _https_story(b, g, dev, crt, key)
    finally:
        dev.close()


def _https_story(b, g, dev, crt, key):
    # 1. Every protocol in the select, in order, and the fields each one has.
    open_add_dialog(b)
    options = Select(b.el("#f-proto")).options
    assert [o.get_attribute("value") for o in options] \
        == ["tcp", "udp", "tls", "http", "https", "rtsp", "rtsps"]
    labels = [o.text for o in options]
    for want in ("HTTP", "HTTPS (TLS + HTTP)", "RTSPS (RTSP over TLS)"):
        assert want in labels, labels
    for proto in ("http", "https", "rtsps", "rtsp", "tls", "udp", "tcp"):
        assert_fields_of(b, proto)

    # 2. https needs a certificate (said before anything is sent); an HSTS value that is not
    # one: the gateway's check (a 400 naming the key) at that field.
    port = free_ports()
    fill_mapping(b, "web-https", "127.0.0.1", port, "127.0.0.1", dev.port, proto="https")
    b.click("#mapping-save")
    assert_field_error(b, "cert", "certificate")
    b.type("#f-cert", str(crt))
    b.type("#f-key", str(key))
    b.click("#tab-advanced")
    assert b.el("#f-hsts").get_attribute("placeholder") == "max-age=31536000"
    assert b.el("#f-header-timeout").get_attribute("placeholder") == "10s"
    assert b.el("#f-max-header-size").get_attribute("placeholder") == "16384"
    b.type("#f-hsts", "forever")
    b.click("#mapping-save")
    assert_field_error(b, "hsts", "max-age")
    assert "web-https" not in g.api.mappings()

    # A PROXY header accepted from nobody: the gateway's check, at that field; then off again.
    b.type("#f-hsts", "max-age=600")
    assert Select(b.el("#f-accept-proxy")).first_selected_option.get_attribute("value") == "off"
    Select(b.el("#f-accept-proxy")).select_by_value("any")
    b.click("#mapping-save")
    assert_field_error(b, "accept-proxy", "set trusted-proxies")
    Select(b.el("#f-accept-proxy")).select_by_value("off")

    # 3. A good HSTS, the Host the device wants and two trusted proxies (one a line): added,
    # listed as https, listening; the API has what was typed and the defaults for the rest.
    b.type("#f-target-host", "192.0.2.10")
    b.type("#f-trusted-proxies", "192.0.2.0/24\n198.51.100.0/24")
    b.click("#mapping-save")
    b.until("the add dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    b.banner("web-https added.")
    b.visible(row_css("web-https"))
    b.until("web-https listening", lambda: cell(b, "web-https", "c-status") == "listening")
    assert cell(b, "web-https", "c-proto") == "https"
    m = g.api.mappings()["web-https"]
    assert (m["proto"], m["cert"], m["key"], m["hsts"], m["target-host"], m["trusted-proxies"],
            m["header-timeout"], m["max-header-size"]) \
        == ("https", str(crt), str(key), "max-age=600", "192.0.2.10",
            "192.0.2.0/24,198.51.100.0/24", "10s", "16384"), m
    assert "redirect-https" not in m and "ocsp" not in m and "alpn" not in m, m
    assert (m["send-proxy"], m["accept-proxy"]) == ("off", "off"), m

    # 4. A client that trusts the certificate gets the device's page, with HSTS, and the
    # device gets the Host it wants.
    ctx = ssl.create_default_context(cafile=str(crt))
    conn = http.client.HTTPConnection("localhost", port, timeout=10)
    conn.sock = ctx.wrap_socket(connect(port), server_hostname="localhost")
    try:
        conn.request("GET", "/echo")
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200, (r.status, body)
        assert r.getheader("Strict-Transport-Security") == "max-age=600"
        assert "Host: 192.0.2.10\n" in body, body
        assert "X-Forwarded-Proto: https\n" in body, body
    finally:
        conn.close()

    # 5. Its view: the HTTP counters, then the TLS ones, named as a user reads them; no
    # sessions, nothing spliced.
    b.click(f'{row_css("web-https")} .name-link')
    b.visible("#detail-view")
    assert b.el("#detail-summary").text.startswith(f"HTTPS 127.0.0.1:{port} \u2192 ")
    b.until("the HTTP and TLS counters",
            lambda: [b.el(f'#detail-counters dd[data-key="{k}"]').text
                     for k in ("http-requests", "tls-handshakes")] == ["1", "1"])
    labels = counter_labels(b)
    for label, k in (("HTTP requests", "http-requests"),
                     ("HTTP requests answered by the gateway",
                      "http-requests-answered-by-the-gateway"),
                     ("HTTP upgrades", "http-upgrades"), ("TLS handshakes", "tls-handshakes")):
        assert labels.get(label) == k, (label, labels)
    keys = list(labels.values())
    assert keys.index("http-upgrades") < keys.index("tls-handshakes"), keys
    for absent in ("bytes-spliced", "sessions", "evicted", "datagrams-in"):
        assert absent not in keys, (absent, labels)
    b.until("the connections' list", lambda: b.el("#conn-note").text == "No open connections.")
    assert not b.shown("#sessions-box")

    # 6. Edit: every setting back in its field (the proxies one a line); a save with a
    # smaller head limit changes that and nothing else.
    before = settings(g.api.mappings()["web-https"])
    b.click("#detail-edit")
    b.until("the edit dialog", lambda: b.dialog_open("#mapping-dialog"))
    assert Select(b.el("#f-proto")).first_selected_option.get_attribute("value") == "https"
    assert b.el("#f-cert").get_attribute("value") == str(crt)
    b.click("#tab-advanced")
    assert not b.shown("#f-redirect-https") and not b.shown("#f-alpn")
    for field, want in (("hsts", "max-age=600"), ("target-host", "192.0.2.10"),
                        ("trusted-proxies", "192.0.2.0/24\n198.51.100.0/24"),
                        ("header-timeout", "10s"), ("max-header-size", "16384")):
        assert b.el(f"#f-{field}").get_property("value") == want, field
    b.type("#f-max-header-size", "8192")
    b.click("#mapping-save")
    b.until("the edit dialog to close", lambda: not b.dialog_open("#mapping-dialog"))
    b.banner("web-https saved.")
    after = settings(g.api.mappings()["web-https"])
    assert after == dict(before, **{"max-header-size": "8192"}), (before, after)

    # 7. An rtsps mapping (made through the API): its view has RTSP's counters, then TLS's,
    # and the sessions' table; its edit dialog has its certificate and no RTP ports.
    r = g.api.post(f"{API}/mappings", {
        "name": "cam-rtsps", "proto": "rtsps", "listen": f"127.0.0.1:{free_ports()}",
        "target": "192.0.2.11:554", "cert": str(crt), "key": str(key)})
    assert r.status == 201, r
    b.d.execute_script("location.hash = '#/mapping/cam-rtsps'")
    b.until("the rtsps view",
            lambda: b.el("#detail-summary").text.startswith("RTSPS 127.0.0.1:"))
    b.until("the sessions' list", lambda: b.el("#sess-note").text == "No sessions.")
    assert b.shown("#sessions-box")
    b.until("the RTSP and TLS counters",
            lambda: {"RTSP sessions", "TLS handshakes"} <= set(counter_labels(b)))
    b.click("#detail-edit")
    b.until("the edit dialog", lambda: b.dialog_open("#mapping-dialog"))
    assert Select(b.el("#f-proto")).first_selected_option.get_attribute("value") == "rtsps"
    assert b.el("#f-cert").get_attribute("value") == str(crt)
    b.click("#tab-advanced")
    assert b.shown("#f-min-tls") and not b.shown("#f-rtp-ports") \
        and not b.shown("#f-max-sessions")
    b.click("#mapping-cancel")
    b.until("the edit dialog to close", lambda: not b.dialog_open("#mapping-dialog"))

    # The two refusals were the gateway's answers to the bad HSTS value and the PROXY header
    # accepted from nobody.
    network = assert_clean_console(b)
    refused = [st for path, st in network if path == f"{API}/mappings"]
    assert refused == [400, 400], network


# ---------------------------------------------------------------- the table's look

def test_page_table_screenshot_and_phone_width(gateway, browser):
    b = browser
    g = web_gateway(gateway)
    passwd(g, USER, PASSWORD)
    for m, port in (
        ({"name": "encoder-web", "proto": "tcp", "target": "192.0.2.10:80"}, 8080),
        ({"name": "camera-rtsp", "proto": "rtsp", "target": "192.0.2.11:554",
          "allow": ["198.51.100.0/24"]}, 8554),
        ({"name": "game-udp", "proto": "udp", "target": "192.0.2.30:27015"}, 27015),
        ({"name": "nas-ssh", "proto": "tcp", "target": "192.0.2.20:22",
          "allow": ["203.0.113.7"]}, 2222),
        ({"name": "printer-ipp", "proto": "tcp", "target": "192.0.2.40:631",
          "enabled": False}, 8631),
    ):
        add_listening_anywhere(g.api, m, port)
    names = ["encoder-web", "camera-rtsp", "game-udp", "nas-ssh", "printer-ipp"]

    b.d.get(g.url)
    log_in_ok(b)
    b.until("every mapping listed", lambda: row_names(b) == names)
    b.until("the statuses", lambda: [cell(b, n, "c-status") for n in names]
            == ["listening"] * 4 + ["disabled"])
    b.until("the count", lambda: b.el("#list-count").text == "5 port forwards.")
    b.until("the status line", lambda: "5 mappings" in b.el("#status-line").text)

    # The picture for docs/admin-page.png, at 1280x800: the whole table in view, without a
    # sideways scroll bar.
    b.metrics(1280, 800)
    assert b.d.execute_script(
        "const w = document.querySelector('#list-view .table-wrap');"
        "return w.scrollWidth <= w.clientWidth"), "the table scrolls sideways at 1280 px"
    if os.environ.get("PORTGATE_SCREENSHOT") == "1":
        # No focus ring, no hovered row: the pointer rests on the title.
        b.d.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        ActionChains(b.d).move_to_element(b.el("#list-title")).perform()
        png = b.d.get_screenshot_as_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
        with open(SCREENSHOT, "wb") as f:
            f.write(png)

    # A mapping from the config file as well (read-only, its file named in the row: a long
    # path here), by a reload.
    conf_map = (f"[map plc-modbus]\nproto = tcp\nlisten = 0.0.0.0:{free_ports()}\n"
                "target = 192.0.2.50:502\n")
    out = g.reload(f"[gateway]\nadmin = 127.0.0.1:{g.web_port}\n" + conf_map)
    assert "configuration applied" in out, out
    names = ["plc-modbus"] + names
    b.until("the config file's mapping listed", lambda: row_names(b) == names)
    assert "read-only" in cell(b, "plc-modbus", "c-actions")

    # A phone, 360 px wide: the rows become cards, every one usable, and nothing sticks out
    # sideways.
    b.metrics(360, 740, mobile=True)
    b.until("the cards' layout",
            lambda: b.d.execute_script(
                "return getComputedStyle(document.querySelector('#mappings-table thead'))"
                ".display") == "none")
    width = b.d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 360 + 1, f"the page is {width} px wide on a 360 px screen"
    for n in names:
        for part in (".name-link", ".toggle-enabled", ".c-status .badge", ".c-listen",
                     ".c-target", ".c-actions"):
            css = f"{row_css(n)} {part}"
            e = b.el(css)
            b.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
            assert e.is_displayed(), css
            rect = b.d.execute_script(
                "const r = arguments[0].getBoundingClientRect();"
                "return [r.left, r.right, r.width, r.height]", e)
            assert rect[2] > 0 and rect[3] > 0, (css, rect)
            assert rect[0] >= 0 and rect[1] <= 360 + 1, (css, rect)
        assert b.el(f"{row_css(n)} .name-link").text == n
        # What is at the middle of the name is the name: not covered by a neighbour.
        assert b.d.execute_script(
            "const a = arguments[0]; a.scrollIntoView({block: 'center'});"
            "const r = a.getBoundingClientRect();"
            "const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
            "return at === a || a.contains(at)", b.el(f"{row_css(n)} .name-link")), n
    # Its actions work there: disable one with its toggle.
    b.d.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                       b.el(f'{row_css("game-udp")} .toggle-enabled'))
    b.click(f'{row_css("game-udp")} .toggle-enabled')
    b.banner("game-udp disabled.")
    b.until("game-udp disabled", lambda: cell(b, "game-udp", "c-status") == "disabled")
    assert g.api.mappings()["game-udp"]["enabled"] is False
    width = b.d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 360 + 1, f"the page is {width} px wide on a 360 px screen"

    assert_clean_console(b)


def test_page_with_ten_thousand_mappings(gateway, browser, tmp_path):
    """A router's table grown to 10,000 mappings (from the state file, one worker, each on its
    own loopback address): the page lists them, the filter finds the last one among all, and a
    toggle still works. How long it takes is measured in bench/admin, not here. Under the
    sanitizers (several times slower), 2,000: the same paths, a shorter run."""
    import json
    n = 2000 if os.environ.get("PORTGATE_SANITIZED") else 10000
    state = tmp_path / "big-state.json"
    port = free_ports()
    state.write_text(json.dumps({"portgate-state": 1, "revision": 1, "mappings": [
        {"name": f"m{i}", "proto": "tcp", "listen": f"127.1.{1 + i // 250}.{1 + i % 250}:{port}",
         "target": f"192.0.2.{1 + i % 250}:80"} for i in range(n)]}))
    web = free_ports()
    g = gateway(config=f"[gateway]\nworkers = 1\nadmin = 127.0.0.1:{web}\nstate = {state}\n"
                       "log-level = warn\n", ready=False)
    api = Admin(g.admin_socket)
    b = browser
    deadline = 60
    b.until(f"the gateway with {n} mappings", lambda: _answers(api), timeout=deadline)
    r = api.get(f"{API}/mappings")
    assert r.status == 200 and len(r.json["mappings"]) == n
    passwd(g, USER, PASSWORD)
    b.d.get(f"http://127.0.0.1:{web}/")
    log_in_ok(b)
    b.until("the first rows", lambda: b.els(row_css("m0")), timeout=30)
    b.until("the count", lambda: str(n) in b.el("#list-count").text.replace(",", ""))
    last = f"m{n - 1}"
    b.type("#filter", last)
    b.until("the filter finds the last one", lambda: row_names(b) == [last], timeout=30)
    b.click(f"{row_css(last)} .toggle-enabled")
    b.until("it is disabled", lambda: cell(b, last, "c-status") == "disabled", timeout=30)
    assert api.get(f"{API}/mappings/{last}").json["enabled"] is False
    assert_clean_console(b)


def _answers(api):
    try:
        return api.get(f"{API}/status").status == 200
    except OSError:
        return False


# ---------------------------------------------------------------- the gateway's login

def test_login_in_front_of_a_device_in_chromium(gateway, tmp_path):
    """auth = login on an https mapping, in Chromium: the device's page asks for the gateway's
    login first, with a TOTP code for a user who has a second factor (a code used once is
    refused the second time), the login brings the browser back to the page it asked for, the
    device's own redirects stay on the gateway's name, logout ends it, and failures end in a
    ban. The pages obey their Content-Security-Policy (no violation in the console)."""
    from test_http import totp
    dev = Device()
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    port = free_ports()
    g = gateway(config=f"[map cam]\nproto = https\nlisten = 127.0.0.1:{port}\n"
                       f"target = 127.0.0.1:{dev.port}\ncert = {tmp_path}/c.crt\n"
                       f"key = {tmp_path}/c.key\nauth = login\nusers = alice\n")
    passwd(g, "alice", "alice's long password")
    # alice's second factor, as the admin page's enrolment leaves it (test_page_two_factor).
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    lines = g.users.read_text().splitlines()
    lines.insert(next(i for i, l in enumerate(lines) if l.startswith("user alice ")) + 1,
                 f"totp alice {secret} 0")
    g.users.write_text("\n".join(lines) + "\n")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    base = f"https://localhost:{port}"
    try:
        driver.set_page_load_timeout(30)
        b = Browser(driver)
        driver.get(f"{base}/echo?from=browser")
        b.visible("#user")
        assert driver.current_url == f"{base}/.portgate/login?next=/echo%3Ffrom%3Dbrowser"
        assert dev.seen == []
        # The password alone is not enough; with the code, in.
        b.type("#user", "alice")
        b.type("#password", "alice's long password")
        b.click("button[type=submit]")
        b.until("the refusal", lambda: "Wrong user, password or code" in b.el("#error").text)
        assert dev.seen == []
        code = totp(secret)
        b.type("#user", "alice")
        b.type("#password", "alice's long password")
        b.type("#code", code)
        b.click("button[type=submit]")
        b.until("the device's page", lambda: "GET /echo?from=browser" in driver.page_source)
        assert driver.current_url == f"{base}/echo?from=browser"
        assert "portgate_login" not in str(dev.seen)
        cookie = driver.get_cookie("portgate_login_cam")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax", cookie
        # The device redirects to its own address: the browser stays on the gateway.
        driver.get(f"{base}/redirect")
        b.until("the redirect followed", lambda: "/login?x=1" in driver.current_url)
        assert driver.current_url.startswith(f"{base}/login?x=1"), driver.current_url
        # Logout: the next request asks for the login again.
        driver.get(f"{base}/.portgate/logout")
        b.click("#logout")
        b.visible("#user")
        driver.get(f"{base}/echo")
        b.visible("#user")
        assert "/.portgate/login" in driver.current_url
        # The same code again: used up.
        b.type("#user", "alice")
        b.type("#password", "alice's long password")
        b.type("#code", code)
        b.click("button[type=submit]")
        b.until("the replay refused", lambda: "Wrong user, password or code" in
                b.el("#error").text)
        g.wait_log("login: map cam: user alice from 127.0.0.1: a wrong second factor")
        # Five failures: refused for a while, the right password too.
        for _ in range(3):
            b.type("#user", "alice")
            b.type("#password", "wrong password")
            b.click("button[type=submit]")
            b.visible("#error")
        b.type("#user", "alice")
        b.type("#password", "alice's long password")
        b.click("button[type=submit]")
        b.until("the ban", lambda: "Too many failed logins" in b.el("#error").text)
        bad = [e for e in b.logs() if "Content Security Policy" in e["message"]
               or e["level"] == "SEVERE" and "status of 4" not in e["message"]]
        assert bad == [], bad
    finally:
        driver.quit()
        dev.close()
    assert "alice's long password" not in g.log()


def test_admin_page_from_outside_through_an_https_mapping(gateway, tmp_path):
    """Remote administration as docs/admin.md tells it: the admin listener stays on loopback, an
    https mapping of the gateway's own is its way in, behind the gateway's login, and
    admin-origins lets the page's requests come from that site. In Chromium: the gateway's
    login, then the admin page's, then the mappings listed, one added."""
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    aport, gport = free_ports(2)
    g = gateway(config=f"[gateway]\nadmin = 127.0.0.1:{aport}\n"
                       f"admin-origins = https://localhost:{gport}\n"
                       f"[map admin]\nproto = https\nlisten = 127.0.0.1:{gport}\n"
                       f"target = 127.0.0.1:{aport}\ncert = {tmp_path}/c.crt\n"
                       f"key = {tmp_path}/c.key\nauth = login\nusers = {USER}\n")
    passwd(g, USER, PASSWORD)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--no-first-run",
                "--window-size=1280,900", "--disable-extensions",
                "--disable-background-networking", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(30)
        b = Browser(driver)
        driver.get(f"https://localhost:{gport}/")
        b.visible("#user")  # the gateway's login first
        b.type("#user", USER)
        b.type("#password", PASSWORD)
        b.click("button[type=submit]")
        log_in_ok(b)  # then the admin page's own
        b.until("the mapping listed", lambda: "admin" in row_names(b))
        open_add_dialog(b)
        fill_mapping(b, "web", "127.0.0.1", str(free_ports()), "127.0.0.1", "80")
        b.click("#mapping-save")
        b.until("the new mapping listed", lambda: "web" in row_names(b))
        assert "web" in Admin(g.admin_socket).mappings()
        bad = [e for e in b.logs() if "Content Security Policy" in e["message"]
               or (e["level"] == "SEVERE" and "status of 401" not in e["message"])]
        assert bad == [], bad
    finally:
        driver.quit()
    # Without admin-origins, the same page's changes are refused (another site's page).
    r = subprocess.run(["curl", "-sS", "-H", f"Origin: https://evil.example",
                        "-H", f"Host: 127.0.0.1:{aport}", "-o", "/dev/null", "-w", "%{http_code}",
                        "-X", "POST", f"http://127.0.0.1:{aport}/api/v1/session"],
                       capture_output=True, text=True)
    assert r.stdout == "403", r
