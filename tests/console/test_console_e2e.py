"""The console end to end, in a real headless Chromium driven over WebDriver.

`palisade run` (as root: the console really runs as palisade-web) with a fresh data directory;
first login with the one-time password it printed, the forced password change, an inbound
domain routed to a Postfix smtp-sink, a message sent with swaks found in message tracking, the
change in the audit log; certificates replaced through the supervisor. Every page visited is
saved as a PNG under tests/output/console/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from harness import OUTPUT, to_toml, wait_for

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = OUTPUT / "console"
NEW_PASSWORD = "Ward 7 night shift kettle"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and shutil.which("swaks")),
    reason="needs chromium, chromium-driver and swaks (scripts/test-console.sh installs them)",
)


class Browser:
    """A thin layer over WebDriver: visit, fill, submit, and a screenshot of every page."""

    def __init__(self, base: str, name: str):
        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch drivers
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.base = base
        self.profile = tempfile.mkdtemp(prefix="palisade-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            # The appliance's certificate is self-signed until an administrator replaces it.
            "--ignore-certificate-errors",
            f"--user-data-dir={self.profile}",
            "--window-size=1366,900",
        ]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)
        self.dir = SHOTS / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.console_errors: list[str] = []

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def shot(self, label: str):
        """A full-page PNG: the window is grown to the page's height first."""
        self.n += 1
        self.driver.execute_script("window.scrollTo(0, 0)")
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1366, max(900, min(int(height) + 40, 6000)))
        path = self.dir / f"{self.n:02d}-{label}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1366, 900)
        # Anything the CSP refused (an inline style, a script) shows up here. Error statuses
        # of the pages themselves (401 for a wrong password, 422 for a form with problems) are
        # expected and not counted.
        try:
            for entry in self.driver.get_log("browser"):
                msg = entry.get("message", "")
                if entry.get("source") != "network" or "Content Security Policy" in msg:
                    self.console_errors.append(f"{label}: {msg}")
        except Exception:
            pass
        return path

    def go(self, path: str, label: str | None = None):
        self.driver.get(self.base + path)
        if label:
            self.shot(label)

    def by(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, css: str, value: str):
        el = self.by(css)
        el.clear()
        el.send_keys(value)

    def select(self, css: str, value: str):
        from selenium.webdriver.support.ui import Select

        Select(self.by(css)).select_by_value(value)

    def submit(self, form_css: str):
        """Clicks the form's own submit button, as a user would, and waits for the next page."""
        self.click(f"{form_css} button[type=submit]")

    def click(self, css: str):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        self.wait_loaded()
        old = self.by("html")
        self.by(css).click()

        def replaced(_):
            # Chromium answers for a node of a document it already replaced either with a
            # stale-element error or with a generic "does not belong to the document" one.
            try:
                old.is_enabled()
                return False
            except WebDriverException:
                return True

        WebDriverWait(self.driver, 30).until(replaced)
        self.wait_loaded()

    def wait_loaded(self):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    @property
    def text(self) -> str:
        return self.by("body").text

    @property
    def path(self) -> str:
        url = self.driver.current_url
        return url[len(self.base):] if url.startswith(self.base) else url


def one_time_password(palisade) -> str:
    def find():
        for line in palisade.stdout_lines:
            m = re.search(r"console admin password \(one-time, change it at first login\): (\S+)", line)
            if m:
                return m.group(1)
        return None

    return wait_for(find, 30, what="the one-time admin password on stdout")


def make_cert(dir: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed certificate with openssl; returns (cert, key, SHA-256 of the DER)."""
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, hashlib.sha256(der).hexdigest()


def served_cert_sha256(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def starttls_cert_sha256(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("probe.test")
        s.starttls(context=ctx)
        return hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest()


@pytest.fixture
def browser_factory():
    made = []

    def make(base, name):
        b = Browser(base, name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_console_first_login_domain_mail_tracking_audit(palisade_factory, sink_factory, browser_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("run as root: the test checks the real privilege drop to palisade-web")
    sink = sink_factory()
    pal = palisade_factory()
    password = one_time_password(pal)
    base = f"https://127.0.0.1:{pal.console_port}"

    # The console runs as its own user, not root.
    console = wait_for(lambda: pal.child("console")["ready"] and pal.child("console"), 30, what="console ready")
    owner = subprocess.run(["ps", "-o", "user=", "-p", str(console["pid"])], capture_output=True, text=True).stdout.strip()
    assert owner == "palisade-web", owner

    b = browser_factory(base, "first-login")

    # --- first login with the printed one-time password, forced change ---------------------
    b.go("/", "login")
    assert b.path == "/login", b.path
    b.fill("#user", "admin")
    b.fill("#password", "wrong password")
    b.submit("form.login")
    assert "Wrong user name, password" in b.text
    b.shot("login-refused")
    b.fill("#user", "admin")
    b.fill("#password", password)
    b.submit("form.login")
    assert b.path == "/password", b.path
    b.shot("forced-password-change")
    assert "one-time password" in b.text
    # Nothing else is reachable until the password is changed.
    b.go("/mailflow")
    assert b.path == "/password"
    b.fill("#current", password)
    b.fill("#new", NEW_PASSWORD)
    b.fill("#confirm", NEW_PASSWORD)
    b.submit("form.form")
    assert b.path == "/", b.path
    assert "Your password was changed" in b.text
    b.shot("dashboard-first")
    cookies = {c["name"]: c for c in b.driver.get_cookies()}
    session = cookies["__Host-palisade"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict", session

    # --- mail flow: add an inbound domain routed to smtp-sink --------------------------------
    b.go("/mailflow", "mailflow")
    domain = "hospital.test"
    # A mistake first: the problem appears next to its field and nothing is saved.
    b.fill("#domain-new-name", "not a domain")
    b.select("#domain-new-route", "smarthosts")
    b.fill("#domain-new-smarthosts", f"127.0.0.1:{sink.port}")
    b.submit("#domain-new")
    err = b.by("#domain-new-name-err").text
    assert "is not a valid domain name" in err, err
    assert b.by("#domain-new-smarthosts").get_attribute("value") == f"127.0.0.1:{sink.port}"
    b.shot("mailflow-field-error")
    b.fill("#domain-new-name", domain)
    b.submit("#domain-new")
    assert b.path.startswith("/mailflow"), b.path
    flash = b.by("p.flash").text
    assert "Saved as configuration revision 2" in flash and "engine: revision 2 applied" in flash, flash
    b.shot("mailflow-domain-added")
    assert domain in b.text

    # --- a message to that domain, with swaks ------------------------------------------------
    subject = f"Console e2e {uuid.uuid4().hex[:8]}"
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{pal.smtp_port}", "--helo", "partner.test",
         "--from", "results@partner.test", "--to", f"ward7@{domain}",
         "--header", f"Subject: {subject}", "--body", "Lab results are ready.", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: any(subject.encode() in m for m in sink.messages()), 60, what="delivery to smtp-sink")

    # --- find it in message tracking ---------------------------------------------------------
    def tracked_delivered():
        b.go("/tracking?subject=" + subject.replace(" ", "+") + "&range=1h")
        rows = b.all("table.tracking tbody tr")
        return rows and "delivered" in rows[0].text and rows

    rows = wait_for(tracked_delivered, 30, interval=1, what="the message delivered in tracking")
    assert f"ward7@{domain}" in rows[0].text
    b.shot("tracking-search")
    # The same search through the form, by recipient.
    b.go("/tracking")
    b.fill("#rcpt", f"ward7@{domain}")
    b.submit("form.search")
    assert subject in b.text
    b.click("table.tracking tbody tr a")
    assert b.path.startswith("/tracking/"), b.path
    trace = b.text
    assert "received" in trace and "delivered" in trace, trace
    assert str(sink.port) in trace, trace
    b.shot("message-trace")

    # --- the change in the audit log --------------------------------------------------------
    b.go("/audit?action=config.")
    text = b.text
    assert "inbound domain hospital.test added" in text, text
    assert "admin" in text
    b.by("table.audit details summary").click()
    assert 'name = "hospital.test"' in b.by("table.audit details pre").text
    b.shot("audit-config-change")
    b.go("/audit")
    assert "login.failed" in b.text and "login.success" in b.text and "user.password_changed" in b.text
    b.shot("audit-all")
    b.go("/audit/verify", "audit-verified")
    assert "The chain is intact" in b.text

    # --- the other pages render -------------------------------------------------------------
    b.go("/queue", "queue")
    assert "The queue is empty" in b.text
    b.go("/users", "users")
    assert "admin (you)" in b.text
    b.go("/account", "account")
    b.go("/system", "system")
    assert "engine" in b.text and "console" in b.text and "running" in b.text

    # --- certificates: the supervisor installs them for each service's user ------------------
    certs = tmp_path / "certs"
    certs.mkdir()
    ccert, ckey, csha = make_cert(certs, "console.hospital.test")
    b.by("#console-cert-cert").send_keys(str(ccert))
    b.by("#console-cert-key").send_keys(str(ckey))
    b.submit("#console-cert")
    # It does not cover the console's host name (system.hostname): a warning, nothing installed
    # until the administrator confirms.
    warning = b.by("#console-cert p.error").text
    assert "does not cover" in warning and "console.hospital.test" in warning, b.text
    b.shot("system-console-certificate-warning")
    b.by("#console-cert-cert").send_keys(str(ccert))
    b.by("#console-cert-key").send_keys(str(ckey))
    b.by("#console-cert-confirm").click()
    b.submit("#console-cert")
    assert "installed" in b.by("p.flash").text, b.text
    b.shot("system-console-certificate")
    assert wait_for(lambda: served_cert_sha256(pal.console_port) == csha, 10, what="new console certificate")
    key_stat = os.stat(pal.data / "tls" / "console.key")
    assert oct(key_stat.st_mode & 0o777) == "0o600"
    import pwd

    assert pwd.getpwuid(key_stat.st_uid).pw_name == "palisade-web"

    scert, skey, ssha = make_cert(certs, "mx.hospital.test")
    b.go("/mailflow#certificate")
    b.by("#smtp-cert-cert").send_keys(str(scert))
    b.by("#smtp-cert-key").send_keys(str(skey))
    b.submit("#smtp-cert")
    flash = b.by("p.flash").text
    assert "installed" in flash and "engine:" in flash, flash
    b.shot("mailflow-smtp-certificate")
    assert starttls_cert_sha256(pal.smtp_port) == ssha
    smtp_key = os.stat(pal.data / "tls" / "smtp.key")
    assert pwd.getpwuid(smtp_key.st_uid).pw_name == "palisade-mail"
    assert oct(smtp_key.st_mode & 0o777) == "0o600"

    # A key that does not belong to the certificate is refused, nothing is replaced.
    b.go("/system#certificate")
    b.by("#console-cert-cert").send_keys(str(scert))
    b.by("#console-cert-key").send_keys(str(ckey))
    b.submit("#console-cert")
    assert "key" in b.by("#console-cert p.error").text.lower(), b.text
    b.shot("system-certificate-mismatch")
    assert served_cert_sha256(pal.console_port) == csha

    # --- the dashboard shows the flow; logout ends the session -------------------------------
    b.go("/", "dashboard-after-mail")
    assert len(b.all("svg.chart:not(.bars)")) == 2  # the flow lines; the protection panel's bars:
    assert len(b.all("svg.chart.bars")) == 6
    legend = b.by("figure.chart-box figcaption").text
    assert re.search(r"Received\s+1", legend) and re.search(r"Delivered\s+1", legend), legend
    b.click("form.inline button.link")
    assert b.path == "/login"
    b.go("/queue")
    assert b.path == "/login", "the old session must not work after logout"
    b.shot("after-logout")

    # The cookie a thief copied before logout is dead too.
    import urllib.request

    req = urllib.request.Request(base + "/queue", headers={"Cookie": f"__Host-palisade={session['value']}"})
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
    try:
        opener.open(req, timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 303 and e.headers["Location"] == "/login"

    assert not b.console_errors, b.console_errors
    # Shots are on disk for review.
    assert len(list(b.dir.glob("*.png"))) >= 15


def test_reset_password_from_the_cli(palisade_factory, browser_factory):
    """Recovery: `palisade admin reset-password` prints a new one-time password, which must
    be changed at the next login; the old password no longer works."""
    if os.geteuid() != 0:
        pytest.skip("run as root")
    pal = palisade_factory()
    first = one_time_password(pal)
    r = pal.cli("admin", "reset-password")
    m = re.search(r"one-time password (\S+)", r.stdout)
    assert m, r.stdout
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "reset-password")
    b.go("/login")
    b.fill("#user", "admin")
    b.fill("#password", first)
    b.submit("form.login")
    assert "Wrong user name, password" in b.text
    b.fill("#user", "admin")
    b.fill("#password", m.group(1))
    b.submit("form.login")
    assert b.path == "/password"
    b.shot("forced-change-after-reset")
    audit = pal.cli("audit", "list", "--json", json_out=True)
    assert any(e["action"] == "user.reset_password" and e["actor"].startswith("cli:") for e in audit)


def first_login(b: Browser, pal) -> None:
    """Logs in with the printed one-time password and chooses a real one."""
    b.go("/login")
    b.fill("#user", "admin")
    b.fill("#password", one_time_password(pal))
    b.submit("form.login")
    assert b.path == "/password", b.path
    b.fill("#current", one_time_password(pal))
    b.fill("#new", NEW_PASSWORD)
    b.fill("#confirm", NEW_PASSWORD)
    b.submit("form.form")
    assert b.path == "/", b.path


def send(pal, rcpt: str, subject: str, sender: str = "clinic@example.test"):
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{pal.smtp_port}", "--helo", "clinic.test", "--from", sender,
         "--to", rcpt, "--header", f"Subject: {subject}", "--body", "CONFIDENTIAL BODY: not for the console",
         "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_queue_retry_bounce_delete_and_service_restarts(palisade_factory, browser_factory):
    if os.geteuid() != 0:
        pytest.skip("run as root: the console reads spool files as palisade-web")
    from harness import free_port

    dead = free_port()  # nothing listens here: mail for slow.test stays queued
    pal = palisade_factory({
        "domain": [
            {"name": "example.test", "route": "maildir"},
            {"name": "slow.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{dead}"]},
        ],
    })
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "queue")
    first_login(b, pal)
    send(pal, "ward1@slow.test", "Bounce me")
    send(pal, "ward2@slow.test", "Delete me")

    def queued():
        q = pal.queue()
        ids = {m["recipients"][0]["address"]: m["id"] for m in q}
        tried = all(m["recipients"][0]["attempts"] >= 1 for m in q)
        return len(ids) == 2 and tried and ids

    ids = wait_for(queued, 30, interval=0.5, what="two deferred messages")
    b.go("/queue", "queue-list")
    assert ids["ward1@slow.test"] in b.text and ids["ward2@slow.test"] in b.text
    assert "refused" in b.text.lower(), b.text

    # Envelope and headers, read from the spool file by the console's own user; never the body.
    bounce_id = ids["ward1@slow.test"]
    b.go(f"/queue/{bounce_id}", "queue-message")
    headers = b.by("pre.headers").text
    assert "Subject: Bounce me" in headers, headers
    assert "CONFIDENTIAL BODY" not in b.driver.page_source
    assert "clinic@example.test" in b.text

    b.submit(f"form.inline:has(button[value=retry])")
    assert "will be tried again now" in b.by("p.flash").text
    b.shot("queue-retried")
    b.submit(f"form.inline:has(button[value=bounce])")
    assert b.path == "/queue", b.path
    assert "returned to the sender" in b.by("p.flash").text, b.text
    b.shot("queue-bounced")
    # The bounce reaches the sender (example.test is delivered to the local mailbox).
    wait_for(lambda: any(b"Bounce me" in m for m in pal.mailbox()), 30, what="the bounce in the sender's mailbox")

    delete_id = ids["ward2@slow.test"]
    b.go(f"/queue/{delete_id}")
    b.submit(f"form.inline:has(button[value=delete])")
    assert f"{delete_id} deleted" in b.by("p.flash").text
    assert delete_id not in [a.text for a in b.all("table.queue td a")]
    b.shot("queue-deleted")
    wait_for(lambda: all(m["id"] != delete_id for m in pal.queue()), 10, what="the message gone")

    b.go("/audit?action=queue.", "audit-queue")
    for action in ("queue.retry", "queue.bounce", "queue.delete"):
        assert action in b.text, action
    b.go(f"/tracking/{delete_id}", "trace-deleted")
    assert "deleted" in b.text

    # Restart the services from the System page; the session survives the console's restart.
    for service in ("engine", "console"):
        before = pal.child(service)["pid"]
        b.go("/system#services")
        b.submit(f"form.inline:has(button[value={service}])")
        wait_for(lambda: pal.child(service)["ready"] and pal.child(service)["pid"] != before, 30,
                 what=f"{service} restarted")
        b.go("/system")
        assert b.path == "/system", f"logged out by the {service} restart"
        assert "is restarting" in b.text or "running" in b.text
    b.shot("system-after-restarts")
    b.go("/audit?action=service.")
    assert b.text.count("service.restart") == 2
    assert not b.console_errors, b.console_errors


def test_trace_page_shows_each_recipients_decision_and_why(palisade_factory, browser_factory):
    """The filter seam's explanations reach the operator: a message to two recipients, one held
    by an operator rule and one delivered, shows on its trace page a Filters section with each
    recipient's decision, the rule's sentence, and the checks that ran."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    pal = palisade_factory({
        "domain": [{"name": "example.test", "route": "maildir"}],
        "filter.rule": [
            {"name": "board mail reviewed", "recipients": ["board@example.test"], "action": "quarantine",
             "reason": "Mail to the board is reviewed before delivery"},
        ],
    })
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "filters")
    first_login(b, pal)
    subject = f"Rota {uuid.uuid4().hex[:8]}"
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{pal.smtp_port}", "--helo", "clinic.test",
         "--from", "clinic@example.org", "--to", "board@example.test,ward3@example.test",
         "--header", f"Subject: {subject}", "--body", "The night rota.", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    queue_id = re.search(r"queued as (\S+)", r.stdout).group(1)

    held = pal.cli("quarantine", "list", "--json", json_out=True)
    assert [x["recipients"][0]["address"] for x in held] == ["board@example.test"], held
    wait_for(lambda: any(subject.encode() in m for m in pal.mailbox()), 30, what="ward3's copy delivered")

    def listed():
        b.go("/tracking?subject=" + subject.replace(" ", "+") + "&range=1h")
        links = b.all("table.tracking tbody tr a")
        return links[0] if links else None

    wait_for(listed, 30, interval=1, what="the message in tracking")
    b.click("table.tracking tbody tr a")
    b.shot("trace-with-filters")
    assert queue_id in b.text, (queue_id, b.text)
    section = b.by("section#filters")
    rows = {tr.find_elements("css selector", "td")[0].text: tr for tr in section.find_elements("css selector", "tbody tr")}
    assert set(rows) == {"board@example.test", "ward3@example.test"}, section.text
    board = rows["board@example.test"].text
    assert "quarantine" in board.lower(), board
    assert "Mail to the board is reviewed before delivery" in board, board
    ward = rows["ward3@example.test"].text
    assert "deliver" in ward.lower() and "quarantine" not in ward.lower(), ward
    assert "rules" in section.text and "mime" in section.text, section.text
    # The decision events are in the trace too, and nothing of the body leaked into the page.
    assert "decision" in b.text
    assert "The night rota." not in b.driver.page_source
    assert not b.console_errors, b.console_errors


class RequestLog:
    """A tiny HTTP server that records every request it gets: the remote content a quarantined
    message points at. Showing the message must never reach it."""

    def __init__(self):
        import http.server
        import threading

        from harness import free_port

        self.port = free_port()
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                log.append(self.path)
                self.send_response(404)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def https_opener():
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)


def console_request(base: str, b: Browser, path: str, data: bytes | None = None):
    """A request outside the browser with the browser's session (and, for a POST, this
    console's Origin): returns (status, headers, body)."""
    import urllib.error
    import urllib.request

    cookie = b.driver.get_cookie("__Host-palisade")["value"]
    headers = {"Cookie": f"__Host-palisade={cookie}"}
    if data is not None:
        headers |= {"Origin": base, "Content-Type": "application/x-www-form-urlencoded"}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with https_opener().open(req, timeout=20) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def phishing_message(port: int) -> bytes:
    html = (
        "<html><head><style>body{background:url(http://127.0.0.1:%(p)d/bg.png)}</style></head><body>"
        "<script>document.title = 'PWNED'; window.pwned = 1; "
        "new Image().src = 'http://127.0.0.1:%(p)d/script';</script>"
        "<p>Your mailbox is full. <b>Pay now</b> to keep it.</p>"
        "<img src=\"http://127.0.0.1:%(p)d/x.png\" alt=\"bank logo\">"
        "<img src=\"x\" onerror=\"document.title = 'PWNED2'\">"
        "<a href=\"http://127.0.0.1:%(p)d/login\">Log in here</a>"
        "</body></html>"
    ) % {"p": port}
    import base64

    # An executable's first bytes (MZ) under a .pdf name.
    exe = base64.b64encode(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(50)).decode()
    return (
        "From: Billing <billing@phish.example>\r\n"
        "To: ceo@raw.test\r\n"
        "Subject: Mailbox full\r\n"
        "Message-ID: <mailbox-full@phish.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
        "\r\n"
        "--outer\r\n"
        "Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
        "\r\n"
        "--alt\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Your mailbox is full. Pay now to keep it.\r\n"
        "--alt\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        f"{html}\r\n"
        "--alt--\r\n"
        "--outer\r\n"
        "Content-Type: application/pdf; name=\"invoice.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{exe}\r\n"
        "--outer--\r\n"
    ).encode()


def test_quarantine_search_safe_view_release_byte_identical_and_auditor_only_looks(
    palisade_factory, raw_sink_factory, browser_factory
):
    """Issue 10 item 5: a phishing message with a script and a remote image, held by an operator
    rule, is found by its sender, viewed safely (the script does not run, nothing is fetched),
    downloaded, released, and arrives byte-identical to the held copy; another is deleted in a
    bulk action; an auditor sees no buttons and a forged POST is refused."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console reads held files as palisade-web")
    import smtplib as _smtplib

    remote = RequestLog()
    try:
        raw = raw_sink_factory()
        pal = palisade_factory({
            "domain": [{"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
            # The operator's rule holds it (the attachments check, which would refuse the
            # executable named .pdf at DATA, has its own tests); the view still shows its real type.
            "attachments": {"executable": "allow"},
            "filter.rule": [
                {"name": "phish held", "senders": ["billing@phish.example"], "action": "quarantine",
                 "reason": "Suspected phishing: held for review"},
                {"name": "newsletters held", "senders": ["news@lists.example"], "action": "quarantine",
                 "reason": "Newsletters are held"},
            ],
        })
        base = f"https://127.0.0.1:{pal.console_port}"
        with _smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=60) as s:
            s.sendmail("billing@phish.example", ["ceo@raw.test"], phishing_message(remote.port))
            s.sendmail("news@lists.example", ["ceo@raw.test"],
                       b"From: news@lists.example\r\nSubject: Weekly news\r\n\r\nNews.\r\n")
        held = wait_for(lambda: len(pal.cli("quarantine", "list", "--json", json_out=True)) == 2
                        and pal.cli("quarantine", "list", "--json", json_out=True), 30, what="two held messages")
        phish = next(h for h in held if h["sender"] == "billing@phish.example")
        news = next(h for h in held if h["sender"] == "news@lists.example")
        assert raw.messages == []

        b = browser_factory(base, "quarantine")
        first_login(b, pal)

        # --- find it by its sender ------------------------------------------------------------
        b.go("/quarantine", "quarantine-list")
        assert "Weekly news" in b.text and "Mailbox full" in b.text
        assert "kept for 30 day(s)" in b.by("#retention").text
        b.fill("#sender", "billing@phish")
        b.submit("form.search")
        rows = b.all("table.quarantine tbody tr")
        assert len(rows) == 1 and "Mailbox full" in rows[0].text, b.text
        assert "Suspected phishing" in rows[0].text
        b.shot("quarantine-search-by-sender")
        b.click("table.quarantine tbody tr td a")
        assert b.path == f"/quarantine/{phish['id']}", b.path
        b.shot("quarantine-message")

        # --- the safe view ----------------------------------------------------------------------
        assert "Subject" in b.by("#headers").text and "Mailbox full" in b.by("#headers").text
        assert "Your mailbox is full. Pay now" in b.by("#text").text
        attachments = b.by("#attachments").text
        assert "invoice.pdf" in attachments and "application/pdf" in attachments, attachments
        assert "(.exe)" in attachments and "differs" in attachments, attachments
        # The source is shown as text: the script is there to read, not to run.
        assert "<script>document.title = 'PWNED'" in b.by("#raw pre").get_attribute("textContent")
        frame = b.by("iframe.mail-html")
        assert frame.get_attribute("sandbox") == "", "the frame must be sandboxed with no permissions"
        srcdoc = frame.get_attribute("srcdoc")
        assert "Pay now" in srcdoc and "<script" not in srcdoc and "127.0.0.1" not in srcdoc, srcdoc
        assert "http://127.0.0.1:%d/login" % remote.port in b.by("#html ul.links").text
        time.sleep(1.5)  # anything the page could have started has had time to arrive
        assert b.driver.title != "PWNED" and "PWNED" not in b.driver.title, b.driver.title
        assert b.driver.execute_script("return window.pwned === undefined")
        b.driver.switch_to.frame(frame)
        try:
            inner = b.by("body").text
            assert "Pay now" in inner, inner
            assert b.all("script") == []
        finally:
            b.driver.switch_to.default_content()
        assert remote.requests == [], remote.requests

        # --- download: an attachment, never sniffed; the held bytes exactly ------------------------
        held_bytes = (pal.data / "quarantine" / phish["id"]).read_bytes()
        status, headers, body = console_request(base, b, f"/quarantine/{phish['id']}/message.eml")
        assert status == 200, (status, body[:200])
        assert headers["Content-Type"] == "application/octet-stream", headers
        assert headers["Content-Disposition"].startswith("attachment;"), headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == held_bytes

        # --- an auditor looks, and can do nothing else -----------------------------------------------
        r = pal.cli("admin", "add-user", "arthur", "--role", "auditor")
        password = re.search(r"password (\S+)", r.stdout).group(1)
        a = browser_factory(base, "quarantine-auditor")
        a.go("/login")
        a.fill("#user", "arthur")
        a.fill("#password", password)
        a.submit("form.login")
        a.fill("#current", password)
        a.fill("#new", NEW_PASSWORD)
        a.fill("#confirm", NEW_PASSWORD)
        a.submit("form.form")
        a.go("/quarantine", "auditor-list")
        assert "Mailbox full" in a.text
        assert a.all("#bulk button") == [] and a.all("input[type=checkbox]") == []
        a.go(f"/quarantine/{phish['id']}", "auditor-message")
        assert "Pay now" in a.by("#text").text
        assert a.all("button[value=release]") == [] and a.all("button[value=delete]") == []
        token = a.by("input[name=csrf]").get_attribute("value")
        for path, form in [(f"/quarantine/{phish['id']}", "action=release"),
                           ("/quarantine/bulk", f"id={phish['id']}&action=delete")]:
            status, _, body = console_request(base, a, path, f"csrf={token}&{form}".encode())
            assert status == 403, (path, status, body[:300])
        assert len(pal.cli("quarantine", "list", "--json", json_out=True)) == 2

        # --- release: the held copy arrives byte-identical ---------------------------------------------
        b.submit("form.inline:has(button[value=release])")
        assert b.path == "/quarantine", b.path
        flash = b.by("p.flash").text
        assert f"{phish['id']} released to its recipients (queued as" in flash, flash
        b.shot("quarantine-released")
        wait_for(lambda: len(raw.messages) == 1, 30, what="the released message at the sink")
        assert raw.messages[0]["rcpts"] == ["ceo@raw.test"]
        assert raw.messages[0]["from"] == "billing@phish.example"
        assert raw.messages[0]["data"] == held_bytes

        # --- delete the other in a bulk action -----------------------------------------------------------
        b.go("/quarantine")
        b.by(f"input[type=checkbox][value='{news['id']}']").click()
        b.click("#bulk button[value=delete]")
        assert "1 message(s) deleted" in b.by("p.flash").text, b.text
        assert "No quarantined message matches" in b.text
        b.shot("quarantine-bulk-deleted")
        b.go("/quarantine?state=all", "quarantine-all-states")
        assert "released" in b.text and "deleted" in b.text
        b.go(f"/quarantine/{phish['id']}")
        assert "no longer kept" in b.by("#content-error").text

        audit = pal.cli("audit", "list", "--json", json_out=True)
        acts = {(e["action"], e["target"], e["actor"]) for e in audit if e["action"].startswith("quarantine.")}
        assert {("quarantine.release", phish["id"], "admin"), ("quarantine.delete", news["id"], "admin")} <= acts, acts
        # Reading held mail leaves a trace: who viewed or downloaded which message.
        assert ("quarantine.view", phish["id"], "admin") in acts and ("quarantine.view", phish["id"], "arthur") in acts, acts
        assert ("quarantine.download", phish["id"], "admin") in acts, acts
        assert {a for a in acts if a[0] not in ("quarantine.view", "quarantine.download")} == {
            ("quarantine.release", phish["id"], "admin"), ("quarantine.delete", news["id"], "admin")}, acts
        assert remote.requests == [], remote.requests
        assert not b.console_errors, b.console_errors
        assert not a.console_errors, a.console_errors
    finally:
        remote.close()


def test_protection_antivirus_problem_by_its_field_then_saved(palisade_factory, browser_factory):
    """The Protection page (issue 10 item 7): an administrator turns antivirus on with a clamd
    address that is not one, sees the problem next to the field with what was typed kept and
    nothing saved, fixes it, and the new revision is what `palisade config export` shows."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    import tomllib

    pal = palisade_factory()
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "protection")
    first_login(b, pal)
    b.click("nav a[href='/protection']")
    assert b.path == "/protection", b.path
    b.shot("protection")
    assert "palisade av update FILE" in b.text
    assert b.all("#clamd-version") or b.all("#clamd-error"), b.text
    before = tomllib.loads(pal.cli("config", "export").stdout)
    assert before["antivirus"]["enabled"] is False, before["antivirus"]

    enabled = b.by("#antivirus-enabled")
    assert not enabled.is_selected()
    enabled.click()
    b.fill("#antivirus-clamd", "nonsense")
    b.select("#antivirus-infected", "quarantine")
    b.submit("form#antivirus")
    b.shot("antivirus-bad-address")
    err = b.by("#antivirus-clamd-err")
    assert "'nonsense' is neither unix:/path nor host:port" in err.text, err.text
    assert b.by("#antivirus-clamd").get_attribute("aria-describedby") == "antivirus-clamd-err"
    assert b.by("#antivirus-clamd").get_attribute("value") == "nonsense"
    assert b.by("#antivirus-enabled").is_selected(), "the ticked box stays ticked"
    assert tomllib.loads(pal.cli("config", "export").stdout)["antivirus"] == before["antivirus"]

    b.fill("#antivirus-clamd", "127.0.0.1:3310")
    b.submit("form#antivirus")
    b.shot("antivirus-saved")
    assert b.path == "/protection#antivirus", b.path
    assert "Saved as configuration revision" in b.text, b.text
    assert not b.all("#antivirus-clamd-err")
    after = tomllib.loads(pal.cli("config", "export").stdout)
    assert after["antivirus"]["enabled"] is True, after["antivirus"]
    assert after["antivirus"]["clamd"] == "127.0.0.1:3310"
    assert after["antivirus"]["infected"] == "quarantine"
    audit = pal.cli("audit", "list", "--json", json_out=True)
    assert any(e["action"].startswith("config.commit") and e["actor"] == "admin"
               and "antivirus settings changed" in e.get("detail", "") for e in audit), audit[:3]
    assert not b.console_errors, b.console_errors


def test_spam_held_learned_from_the_quarantine_and_settings_by_their_fields(
        palisade_factory, raw_sink_factory, browser_factory):
    """Issue 10 items 3, 5, 7: mail the spam check holds is taught to the Bayes classifier from
    the quarantine — "Not spam: learn and release" delivers it byte-identical, "Learn as spam"
    keeps it held — both audited as spam.learn and counted on the Protection page, whose spam
    form shows a bad threshold by its field and saves a good one."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console reads held files and bayes.db as palisade-web")
    import smtplib as _smtplib
    import tomllib

    raw = raw_sink_factory()
    pal = palisade_factory({
        # Loopback is not trusted here: the test's mail is inbound (outbound is not scored).
        "smtp": {"trusted_networks": []},
        "domain": [{"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        # Blocked senders score 10: held (quarantine at 8), not refused (reject at 15).
        "spam": {"enabled": True, "block_senders": ["@bulk.example"], "block_weight": 10.0},
    })
    with _smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=60) as s:
        for i, subject in enumerate(["Quarterly newsletter", "Cheap meds"]):
            s.sendmail(f"sender{i}@bulk.example", ["ward7@raw.test"], (
                f"From: sender{i}@bulk.example\r\nTo: ward7@raw.test\r\nSubject: {subject}\r\n"
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
                f"Message-ID: <{i}.spamtest@bulk.example>\r\n\r\nBody {i}.\r\n").encode())
    held = wait_for(lambda: len(pal.cli("quarantine", "list", "--json", json_out=True)) == 2
                    and pal.cli("quarantine", "list", "--json", json_out=True), 30, what="two held")
    assert all(h["reason"].startswith("spam: score 10") for h in held), held
    newsletter = next(h for h in held if h["sender"] == "sender0@bulk.example")
    meds = next(h for h in held if h["sender"] == "sender1@bulk.example")
    held_bytes = (pal.data / "quarantine" / newsletter["id"]).read_bytes()
    assert b"Subject: [SPAM] Quarterly newsletter" in held_bytes

    base = f"https://127.0.0.1:{pal.console_port}"
    b = browser_factory(base, "spam")
    first_login(b, pal)
    b.go(f"/quarantine/{newsletter['id']}", "spam-held")
    b.submit("form.inline:has(button[value=release_ham])")
    flash = b.by("p.flash").text
    assert f"{newsletter['id']} learned as wanted mail and released" in flash, flash
    wait_for(lambda: len(raw.messages) == 1, 30, what="the released newsletter")
    assert raw.messages[0]["data"] == held_bytes
    b.go(f"/quarantine/{meds['id']}")
    b.submit("form.inline:has(button[value=learn_spam])")
    assert f"{meds['id']} learned as spam." in b.by("p.flash").text, b.text
    assert [h["id"] for h in pal.cli("quarantine", "list", "--json", json_out=True)] == [meds["id"]]
    audit = pal.cli("audit", "list", "--json", json_out=True)
    def detail(e):
        return json.loads(e["detail"]) if isinstance(e["detail"], str) else e["detail"]
    learned = [(e["target"], detail(e)["class"]) for e in audit if e["action"] == "spam.learn"]
    assert sorted(learned) == sorted([(newsletter["id"], "ham"), (meds["id"], "spam")]), learned

    b.go("/protection#spam", "protection-spam")
    assert b.by("#bayes-spam").text == "1" and b.by("#bayes-ham").text == "1", b.by("#bayes-status").text
    b.fill("#spam-quarantine", "lots")
    b.fill("#spam-dnsbl", "bl.example ip 2.5\nnot a line")
    b.submit("form#spam")
    b.shot("spam-bad-fields")
    assert "'lots' is not a number" in b.by("#spam-quarantine-err").text
    assert "'not a line' is not ZONE" in b.by("#spam-dnsbl-err").text
    assert tomllib.loads(pal.cli("config", "export").stdout)["spam"]["quarantine"] == 8.0
    b.fill("#spam-quarantine", "7.5")
    b.fill("#spam-dnsbl", "bl.example ip 2.5 127.0.0.2")
    b.fill("#spam-weights", "rdns_none 0.25")
    b.submit("form#spam")
    assert "Saved as configuration revision" in b.text, b.text
    spam = tomllib.loads(pal.cli("config", "export").stdout)["spam"]
    assert spam["quarantine"] == 7.5, spam
    assert spam["dnsbl"] == [{"zone": "bl.example", "kind": "ip", "weight": 2.5, "answers": ["127.0.0.2"]}], spam
    assert spam["weights"] == {"RDNS_NONE": 0.25}, spam
    assert not b.console_errors, b.console_errors


def test_protection_digest_settings_problem_by_its_field_then_saved(palisade_factory, browser_factory):
    """The quarantine digest's settings on the Protection page: turned on with links to a host
    the console does not answer, the problem is shown by the field and nothing is saved; with
    the console's own address it is saved as a revision."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    import tomllib

    pal = palisade_factory()
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "digest-settings")
    first_login(b, pal)
    b.click("nav a[href='/protection']")
    before = tomllib.loads(pal.cli("config", "export").stdout)
    assert before["digest"]["enabled"] is False, before["digest"]
    assert not b.by("#digest-enabled").is_selected()

    b.by("#digest-enabled").click()
    b.fill("#digest-link_base_url", "https://mail.elsewhere.test")
    b.fill("#digest-hour", "6")
    b.submit("form#digest")
    b.shot("digest-bad-link")
    err = b.by("#digest-link_base_url-err")
    assert "the console does not answer https://mail.elsewhere.test" in err.text, err.text
    assert tomllib.loads(pal.cli("config", "export").stdout)["digest"] == before["digest"]

    b.fill("#digest-link_base_url", f"https://127.0.0.1:{pal.console_port}")
    b.submit("form#digest")
    b.shot("digest-saved")
    assert b.path == "/protection#digest", b.path
    assert "Saved as configuration revision" in b.text, b.text
    after = tomllib.loads(pal.cli("config", "export").stdout)["digest"]
    assert after["enabled"] is True and after["hour"] == 6, after
    assert after["link_base_url"] == f"https://127.0.0.1:{pal.console_port}"
    assert not b.console_errors, b.console_errors


def mail_with_attachment(sender: str, rcpt: str, subject: str, name: str, content: bytes) -> bytes:
    import base64

    b64 = base64.encodebytes(content).replace(b"\n", b"\r\n")
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        f"--b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + b64 + b"--b--\r\n"


def test_dashboard_protection_panel_counts_refusals_quarantine_and_viruses(
    palisade_factory, browser_factory, tmp_path
):
    """Issue 10 item 7, the dashboard's protection panel: mail refused by an operator rule, by
    the attachments check, by the antivirus check (a real clamd) and during the SMTP dialogue
    (relay), one held by a rule and one delivered, all through a running Palisade; the panel
    shows each under its reason, in bar charts (SVG, no script) and in tables, for both
    windows."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    if not shutil.which("clamd"):
        pytest.skip("needs clamd (scripts/test.sh installs clamav-daemon)")
    from clamav import EICAR, EICAR_SIGNATURE, Clamd, write_signatures

    clamd = Clamd("dashboard-protection")
    try:
        pal = palisade_factory({
            # Loopback is not trusted here: the test's mail is inbound, and relaying is refused.
            "smtp": {"trusted_networks": []},
            "antivirus": {"enabled": True, "clamd": clamd.address},
            "filter.rule": [
                {"name": "blocked sender", "senders": ["blocked@bad.example"], "action": "reject",
                 "reason": "This sender is blocked"},
                {"name": "newsletters held", "senders": ["news@lists.example"], "action": "quarantine",
                 "reason": "Newsletters are held"},
            ],
        })
        pal.cli("av", "update", str(write_signatures(tmp_path / "sigs", "eicar")))
        clamd.start(pal.data / "clamav")

        def data(sender, rcpt, body: bytes) -> int:
            with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=90) as s:
                s.ehlo("client.example.org")
                s.mail(sender)
                code, msg = s.rcpt(rcpt)
                assert code == 250, (rcpt, code, msg)
                try:
                    code, _ = s.data(body)
                except smtplib.SMTPDataError as e:
                    code = e.smtp_code
                return code

        plain = lambda sender, subject: (  # noqa: E731
            f"From: {sender}\r\nTo: ward@example.test\r\nSubject: {subject}\r\n\r\nHello.\r\n").encode()
        assert data("ada@example.org", "ward@example.test", plain("ada@example.org", "Rota")) == 250
        assert data("news@lists.example", "ward@example.test", plain("news@lists.example", "News")) == 250
        assert data("blocked@bad.example", "ward@example.test", plain("blocked@bad.example", "Hi")) >= 500
        exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200
        assert data("it@supplier.example", "ward@example.test",
                    mail_with_attachment("it@supplier.example", "ward@example.test", "Update", "update.exe", exe)) >= 500
        assert data("virus@sender.example", "ward@example.test",
                    mail_with_attachment("virus@sender.example", "ward@example.test", "Invoice", "invoice.txt", EICAR)) == 554
        # Relaying from an untrusted client: refused at RCPT, before any check.
        with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=30) as s:
            s.ehlo("client.example.org")
            s.mail("spammer@relay.example")
            code, _ = s.rcpt("someone@elsewhere.example")
            assert code >= 500, code
            s.rset()

        b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "dashboard-protection")
        first_login(b, pal)

        def table(chart_id: str) -> dict[str, int]:
            rows = b.all(f"#{chart_id}-table tbody tr")
            return {r.find_elements("css selector", "td")[0].text: int(r.find_elements("css selector", "td")[1].text)
                    for r in rows}

        def panel_complete():
            b.go("/")
            refused = {k: v for k, v in table("refused-by-reason").items() if v}
            return refused if b.by("#p-rejected").text == "4" and len(refused) == 4 else None

        refused = wait_for(panel_complete, 30, interval=1, what="four refusals in the panel")
        b.shot("dashboard-protection-24h")
        assert refused == {"Antivirus": 1, "Attachments": 1, "Rules": 1, "SMTP dialogue": 1}, refused
        assert b.by("#p-inbound").text == "2", b.by("#protection-totals").text
        assert table("in-out") == {"In (accepted)": 2, "Out (accepted)": 0, "Refused": 4, "Quarantined": 1}
        assert b.by("#p-quarantined").text == "1"
        assert b.by("#p-infected").text == "1"
        assert {k: v for k, v in table("quarantined-by-reason").items() if v} == {"Rules": 1}
        assert table("virus-signatures") == {EICAR_SIGNATURE: 1}
        assert "Nothing in this window." in b.by("#spam-clients-box").text

        # The charts: server-drawn SVG, named and described for a screen reader, one bar per
        # reason with its number in a tooltip; no script anywhere on the page.
        svg = b.by("svg#refused-by-reason")
        assert svg.get_attribute("role") == "img"
        assert svg.get_attribute("aria-labelledby") == "refused-by-reason-t refused-by-reason-d"
        assert "Refused by reason, last 24 hours" in b.by("#refused-by-reason-t").get_attribute("textContent")
        desc = b.by("#refused-by-reason-d").get_attribute("textContent")
        assert "Antivirus: 1" in desc and "SMTP dialogue: 1" in desc, desc
        tips = [t.get_attribute("textContent") for t in b.all("svg#refused-by-reason g > title")]
        assert "Rules: 1" in tips and "Attachments: 1" in tips, tips
        assert EICAR_SIGNATURE in b.by("svg#virus-signatures").get_attribute("textContent")
        assert b.all("script") == []

        # The other window: the same mail, and the link says which window is shown.
        b.click("nav.windows a[href='/?window=7d#protection']")
        b.shot("dashboard-protection-7d")
        assert "Protection, last 7 days" in b.text
        assert b.by("nav.windows a[aria-current]").text == "Last 7 days"
        assert b.by("#p-rejected").text == "4" and b.by("#p-infected").text == "1"
        assert "Refused by reason, last 7 days" in b.by("#refused-by-reason-t").get_attribute("textContent")
        status, _, body = console_request(f"https://127.0.0.1:{pal.console_port}", b, "/?window=1y")
        assert status == 400, (status, body[:200])
        assert not b.console_errors, b.console_errors
    finally:
        clamd.cleanup()


def test_dkim_keys_made_published_and_signing_from_the_console(
    palisade_factory, browser_factory, raw_sink_factory, tmp_path
):
    """Issue 10 item 1, DKIM keys the console generates: a key made on Protection › DKIM
    signing (by the engine, which alone can read DIR/keys), its TXT record shown, DNS (NSD)
    asked whether it is published, signing started from the page; the next outbound message
    leaves signed with it and dkimpy verifies the signature against that DNS. A second key
    with the same selector is refused with the reason, the typed values kept."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    import dkim
    from authdns import Nsd, txt

    raw = raw_sink_factory()
    # The zone exists from the start, without the key's record.
    dns = Nsd(tmp_path / "nsd", {"example.test": ""})
    dns.start()
    pal = palisade_factory({
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"]},
        "route": [{"domain": "partner.test", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
    })
    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "dkim")
    try:
        first_login(b, pal)
        b.go("/protection")
        b.click("#dkim-link")
        assert b.path == "/protection/dkim", b.path
        assert "No DKIM keys yet" in b.by("#dkim-none").text
        b.fill("#generate-domain", "example.test")
        b.select("#generate-algorithm", "rsa")
        b.fill("#generate-selector", "con1")
        b.submit("#generate")
        assert "Key con1._domainkey.example.test made (rsa-sha256)" in b.by("p.flash").text, b.text
        row = "#key-con1-example-test"
        assert b.by(f"{row} td.signing").text == "no"
        assert b.by(f"{row} td.dns").text == "not published", b.by(row).text
        b.by(f"{row} summary").click()  # opens the details; no navigation
        record = b.by("#record-key-con1-example-test").text
        assert record.startswith('con1._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=MII'), record
        b.shot("dkim-key-made")
        # The key stays with the engine: 0600, its user's, never in the page.
        key = pal.data / "keys" / "dkim" / "example.test" / "con1.key"
        st = key.stat()
        assert st.st_mode & 0o777 == 0o600 and st.st_uid != 0, oct(st.st_mode)
        assert "PRIVATE KEY" not in b.driver.page_source

        # The same selector again: refused, the form keeps what was typed.
        b.fill("#generate-domain", "example.test")
        b.fill("#generate-selector", "con1")
        b.submit("#generate")
        assert "never replaced" in b.by("#generate-selector-err").text, b.text
        assert b.by("#generate-selector").get_attribute("value") == "con1"

        # Published: the page says so; then signing starts from it.
        listed = {k["selector"]: k for k in pal.cli("dkim", "list", "--no-dns", "--json", json_out=True)}
        dns.stop()
        dns.zones = {"example.test": f"con1._domainkey IN TXT {txt(listed['con1']['record'])}\n"}
        dns.start()
        b.go("/protection/dkim")
        assert b.by(f"{row} td.dns").text == "published", b.by(row).text
        b.click(f"{row} button[name=sign]")
        assert "Signing example.test's outbound mail with con1" in b.by("p.flash").text, b.text
        assert b.by(f"{row} td.signing").text == "yes"
        b.shot("dkim-signing")
        assert 'selector = "con1"' in pal.cli("config", "export").stdout
        audit = pal.cli("audit", "list", "--json", json_out=True)
        assert any(e["action"] == "dkim.key_generated" and e["target"] == "con1._domainkey.example.test"
                   and e["actor"] == "admin" for e in audit), audit[:5]

        with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=60) as s:
            s.ehlo("ward-pc.example.test")
            s.sendmail("alice@example.test", ["bob@partner.test"],
                       b"From: Alice <alice@example.test>\r\nTo: bob@partner.test\r\nSubject: Rota\r\n"
                       b"Message-ID: <rota-1@example.test>\r\n\r\nSee you on the ward.\r\n")
        wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
        got = raw.messages[0]["data"]
        assert b"s=con1" in got.split(b"\r\n\r\n", 1)[0], got[:800]
        resolver = dns.resolver()

        def dnsfunc(name, timeout=5):
            name = name.decode() if isinstance(name, bytes) else name
            return b"".join(b"".join(rr.strings) for rr in resolver.resolve(name.rstrip("."), "TXT"))

        assert dkim.verify(got, dnsfunc=dnsfunc)
        # Stopping it is one press too.
        b.go("/protection/dkim")
        b.click(f"{row} button[name=sign]")
        assert "Stopped signing example.test's outbound mail with con1" in b.by("p.flash").text
        assert 'selector = "con1"' not in pal.cli("config", "export").stdout
        assert not b.console_errors, b.console_errors
    finally:
        dns.stop()


def test_antivirus_signatures_uploaded_from_the_console_reach_clamd(
    palisade_factory, browser_factory, tmp_path
):
    """Issue 10 item 2, signature files from the console: a clamd running on the data
    directory's clamav/ with only a custom signature; the EICAR signature file uploaded on the
    Protection page is checked, installed (by palisade-web, without root), audited, and clamd
    reloads it: EICAR is then refused with 554. A file that is not a database is refused."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    if not shutil.which("clamd"):
        pytest.skip("needs clamd (scripts/test.sh installs clamav-daemon)")
    from clamav import EICAR, Clamd, write_signatures

    clamd = Clamd("console-upload")
    try:
        pal = palisade_factory({
            "smtp": {"trusted_networks": []},
            "antivirus": {"enabled": True, "clamd": clamd.address},
        })
        pal.cli("av", "update", str(write_signatures(tmp_path / "custom", "custom")))
        clamd.start(pal.data / "clamav")

        def data(body: bytes) -> int:
            with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=90) as s:
                s.ehlo("client.example.org")
                s.mail("lab@sender.example")
                code, msg = s.rcpt("ward@example.test")
                assert code == 250, (code, msg)
                try:
                    code, _ = s.data(body)
                except smtplib.SMTPDataError as e:
                    code = e.smtp_code
                return code

        virus = mail_with_attachment("lab@sender.example", "ward@example.test", "Results", "results.txt", EICAR)
        assert data(virus) == 250, "not known to clamd yet"

        b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "av-upload")
        first_login(b, pal)
        b.go("/protection")
        bad = tmp_path / "notes.txt"
        bad.write_text("not a signature database\n")
        b.by("#signature-files").send_keys(str(bad))
        b.submit("#signature-upload")
        assert "not a plain database file name" in b.by("#upload-error").text or \
            "notes.txt" in b.by("#upload-error").text, b.text
        eicar = write_signatures(tmp_path / "eicar", "eicar")
        b.by("#signature-files").send_keys(str(eicar))
        b.submit("#signature-upload")
        flash = b.by("p.flash").text
        assert "Installed palisade-test.ndb (1 signature)" in flash and "clamd is loading them now" in flash, flash
        b.shot("av-uploaded")
        assert "palisade-test.ndb" in b.by("#av-status").text
        st = (pal.data / "clamav" / "palisade-test.ndb").stat()
        assert st.st_mode & 0o777 == 0o644
        audit = pal.cli("audit", "list", "--json", json_out=True)
        assert any(e["action"] == "antivirus.signatures" and e["target"] == "palisade-test.ndb"
                   and e["actor"] == "admin" for e in audit), audit[:5]
        wait_for(lambda: data(virus) == 554, 60, interval=2, what="EICAR refused after the reload")
        assert not b.console_errors, b.console_errors
    finally:
        clamd.stop()


def test_sender_confirms_mail_to_a_lookalike_domain_in_chromium(palisade_factory, raw_sink_factory, browser_factory):
    """Issue 11: mail to a domain that looks like one the organisation mails often is held;
    its sender's notice arrives at a sink; the link, followed in headless Chromium, shows the
    recipients and why, and "send" delivers it (audited as the sender). A second one is
    cancelled with its link and never leaves; the used link no longer works."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    import email
    import email.policy

    raw = raw_sink_factory()
    pal = palisade_factory({
        "domain": [{"name": "hospital.example", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "route": [
            {"domain": "nhs.net", "smarthosts": [f"127.0.0.1:{raw.port}"]},
            {"domain": "nhs.nte", "smarthosts": [f"127.0.0.1:{raw.port}"]},
        ],
        "filter": {"rule": [{
            "name": "look-alike recipients",
            "direction": "outbound",
            "lookalike_domain": True,
            "action": "confirm",
            "reason": "the recipient's domain looks like one you know",
        }]},
    }, start=False)
    pal.config.setdefault("digest", {})["link_base_url"] = f"https://127.0.0.1:{pal.console_port}"
    pal.config_file.write_text(to_toml(pal.config))
    pal.start()

    def send(to, subject):
        msg = (f"From: Ada <ada@hospital.example>\r\nTo: {to}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{uuid.uuid4()}@hospital.example>\r\n\r\nWard list attached.\r\n")
        with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=60) as s:
            s.sendmail("ada@hospital.example", [to], msg.encode())

    # The organisation mails nhs.net: three messages delivered make it a known domain.
    for i in range(3):
        send("colleague@nhs.net", f"rota {i}")
    wait_for(lambda: len(raw.messages) == 3, 30, what="three messages to nhs.net")
    send("partner@nhs.nte", "Ward list")
    send("partner@nhs.nte", "Second list")
    held = wait_for(lambda: (h := pal.cli("quarantine", "list", "--json", json_out=True)) and len(h) == 2 and h,
                    30, what="two held messages")
    assert all(h["reason"] == "confirmation: the recipient's domain looks like one you know" for h in held), held

    def notices():
        out = []
        for m in raw.messages:
            if "ada@hospital.example" in m["rcpts"]:
                out.append(email.message_from_bytes(m["data"], policy=email.policy.default))
        return out

    got = wait_for(lambda: len(notices()) == 2 and notices(), 30, what="two notices to the sender")
    links = {}
    for n in got:
        assert n["Subject"].startswith("Confirm before it is sent: "), n["Subject"]
        text = n.get_body(("plain",)).get_content()
        assert "partner@nhs.nte" in text and "nhs.nte looks like nhs.net" in text, text
        assert "Ward list attached" not in text, "no content in the notice"
        found = re.findall(r"https://127\.0\.0\.1:%d(/confirm/[0-9A-Za-z.]+)" % pal.console_port, text)
        assert len(found) == 1, text
        links[n["Subject"].removeprefix("Confirm before it is sent: ")] = found[0]

    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "sender-confirmation")
    b.go(links["Ward list"], "confirm-page")
    assert b.by("#confirm-subject").text == "Ward list"
    assert b.by("#confirm-recipients").text == "partner@nhs.nte"
    assert "nhs.nte looks like nhs.net" in b.by("#confirm-reasons").text
    b.click("#send")
    b.shot("sent")
    assert "Message sent" in b.text, b.text
    wait_for(lambda: any("partner@nhs.nte" in m["rcpts"] and b"Subject: Ward list" in m["data"] for m in raw.messages),
             30, what="the confirmed message at the sink")
    # The link is used up.
    b.go(links["Ward list"], "used")
    assert "already used" in b.text or "no longer waiting" in b.text, b.text

    b.go(links["Second list"], "confirm-second")
    b.click("#cancel")
    b.shot("cancelled")
    assert "Message cancelled" in b.text, b.text
    assert pal.cli("quarantine", "list", "--json", json_out=True) == []
    time.sleep(1)
    assert not any(b"Subject: Second list" in m["data"] and "partner@nhs.nte" in m["rcpts"] for m in raw.messages)

    audit = pal.cli("audit", "list", "--json", json_out=True)
    acts = [(e["action"], e["actor"]) for e in audit]
    assert ("quarantine.release", "sender:ada@hospital.example") in acts, acts
    assert ("quarantine.delete", "sender:ada@hospital.example") in acts, acts
    # The confirmed domain is known now: the next message to it is held again only because it
    # still looks like nhs.net (confirming does not whitelist a look-alike).
    assert not b.console_errors, b.console_errors


DLP_CORPUS = Path(__file__).resolve().parent.parent / "resources" / "dlp"


def corpus_nhs_numbers() -> list[str]:
    """The NHS numbers tests/resources/dlp/make.py puts in the corpus, in its order."""
    out, n = [], 400000000
    while len(out) < 10:
        p = str(n)
        c = 11 - sum(int(d) * (10 - i) for i, d in enumerate(p)) % 11
        c = 0 if c == 11 else c
        if c != 10:
            out.append(p + str(c))
        n += 7919
    return out


def test_dlp_rule_editor_dry_run_modes_incidents_and_report_in_chromium(
    palisade_factory, raw_sink_factory, browser_factory
):
    """Issue 11 items 7 and 8, in headless Chromium: a rule is written in the editor (a
    detector that does not exist is refused by its field), tried against the XLSX of five NHS
    numbers (every detection masked, the rule's monitor verdict, the decision), saved in
    monitor mode: the message is delivered and the incident recorded as "monitor: not done";
    set to enforce from the list, the same message is held. A second rule is moved above it.
    The incidents view filters by mode; the audit report counts both, and downloads as CSV and
    printable HTML. No full identifier reaches any page."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the console really runs as palisade-web")
    raw = raw_sink_factory()
    pal = palisade_factory({
        "domain": [{"name": "hospital.example", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "route": [{"domain": "clinic.example", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
    })
    eml = DLP_CORPUS / "xlsx_five_nhs_numbers.eml"
    full_numbers = corpus_nhs_numbers()[:5]
    assert len(full_numbers) == 5

    def send_eml():
        with smtplib.SMTP("127.0.0.1", pal.smtp_port, timeout=60) as s:
            s.sendmail("ada@hospital.example", ["partner@clinic.example"],
                       eml.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    b = browser_factory(f"https://127.0.0.1:{pal.console_port}", "dlp-rules")
    first_login(b, pal)
    b.go("/dlp", "dlp-empty")
    assert b.by("#no-rules")
    b.click("#new-rule")
    b.fill("#rule-name", "NHS numbers leaving")
    b.select("#rule-direction", "outbound")
    assert b.by("#rule-mode").get_attribute("value") == "monitor", "a new rule starts in monitor mode"
    b.fill("#rule-dlp", "nhs_numbr 5")
    b.by("#rule-external").click()
    b.select("#rule-action", "quarantine")
    b.fill("#rule-reason", "Patient identifiers to an outside address")
    b.submit("#rule")
    b.shot("unknown-detector")
    assert "no detector 'nhs_numbr'" in b.by("#rule-dlp-err").text, b.text
    b.fill("#rule-dlp", "nhs_number 5")

    # The dry run: the draft against the XLSX message, nothing saved.
    b.by("#test-message").send_keys(str(eml))
    b.click("#test-button")
    b.shot("dry-run")
    result = b.by("#dry-run-result").text
    assert "nhs_number" in b.by("#detections").text and " 5 " in f" {b.by('#detections').text} ", result
    assert "xlsx" in b.by("#detections").text, result
    matched = b.by("#matched").text
    assert "NHS numbers leaving" in matched and "monitor" in matched and "found 5 × nhs_number" in matched, matched
    decisions = b.by("#decisions").text
    assert "partner@clinic.example" in decisions and "deliver" in decisions, decisions
    assert "(monitor, not done)" in decisions, decisions
    assert pal.cli("config", "history", "--json", json_out=True)[0]["comment"] != "rule 'NHS numbers leaving' added"
    # The form kept what was typed; now save it.
    assert b.by("#rule-dlp").get_attribute("value") == "nhs_number 5"
    b.submit("#rule")
    assert b.path.startswith("/dlp"), b.path
    assert "Saved as configuration revision" in b.by("p.flash").text
    row = b.by('tr[data-rule="NHS numbers leaving"]').text
    assert "monitor" in row and "nhs_number ≥ 5" in row and "external recipients" in row, row

    # Monitor: delivered, recorded.
    send_eml()
    wait_for(lambda: any(b"Subject: ward list" in m["data"] for m in raw.messages), 30, what="delivered under monitor")
    assert pal.cli("quarantine", "list", "--json", json_out=True) == []

    # Enforce from the list: the same message is held.
    b.click('tr[data-rule="NHS numbers leaving"] button[value="enforce"]')
    assert "enforce" in b.by('tr[data-rule="NHS numbers leaving"]').text
    send_eml()
    held = wait_for(lambda: (h := pal.cli("quarantine", "list", "--json", json_out=True)) and h, 30, what="held when enforced")
    assert held[0]["reason"] == "Patient identifiers to an outside address", held

    # A second rule, moved above the first.
    b.go("/dlp/rules/new")
    b.fill("#rule-name", "Cards")
    b.fill("#rule-dlp", "payment_card 1")
    b.select("#rule-mode", "enforce")
    b.submit("#rule")
    names = [r.get_attribute("data-rule") for r in b.all("#rule-list tbody tr")]
    assert names == ["NHS numbers leaving", "Cards"], names
    b.click('tr[data-rule="Cards"] button[value="up"]')
    names = [r.get_attribute("data-rule") for r in b.all("#rule-list tbody tr")]
    assert names == ["Cards", "NHS numbers leaving"], names
    b.shot("two-rules")

    # Detectors: a pattern that does not compile is refused by its field; then saved with a
    # dictionary and a registered file.
    b.go("/dlp")
    b.fill("#detectors-patterns", "mrn: \\bMRN[0-9{7}")
    b.submit("#detectors")
    assert "mrn" in b.by("#detectors-patterns-err").text, b.text
    b.fill("#detectors-patterns", "mrn: \\bMRN[0-9]{7}\\b")
    b.fill("#detectors-dictionaries", "project-x: Bluebell, trial 42")
    b.fill("#detectors-fingerprints", "board-minutes: " + "ab" * 32)
    b.submit("#detectors")
    assert "Saved as configuration revision" in b.by("p.flash").text, b.text
    exported = pal.cli("config", "export").stdout
    assert 'name = "board-minutes"' in exported and 'name = "project-x"' in exported, exported
    assert "MRN[0-9]{7}" in exported, exported

    # Incidents, filtered by mode.
    b.go("/dlp/incidents", "incidents")
    rows = b.all("#incidents tbody tr")
    assert len(rows) == 2, b.text
    assert "monitor: not done" in b.by("#incidents").text
    b.select("#mode", "monitor")
    b.submit("#incident-filters")
    assert len(b.all("#incidents tbody tr")) == 1 and "monitor: not done" in b.by("#incidents").text
    b.select("#mode", "enforce")
    b.submit("#incident-filters")
    rows = b.all("#incidents tbody tr")
    assert len(rows) == 1 and "monitor: not done" not in rows[0].text and "nhs_number ×5" in rows[0].text, rows[0].text

    # The audit report: page, CSV, printable HTML.
    b.go("/dlp/report", "report")
    per_rule = b.by("#report-rules").text
    assert "NHS numbers leaving" in per_rule and "monitor" in per_rule and "enforce" in per_rule, per_rule
    assert "clinic.example" in per_rule, per_rule
    assert "nhs_number" in b.by("#report-identifiers").text
    base = f"https://127.0.0.1:{pal.console_port}"
    status, headers, body = console_request(base, b, "/dlp/report.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv"), (status, body[:200])
    assert b"NHS numbers leaving" in body and b"clinic.example" in body, body
    status, headers, body = console_request(base, b, "/dlp/report.html")
    assert status == 200 and b"Data-loss prevention report" in body, body[:300]
    assert "attachment" in headers["Content-Disposition"]

    # No page shows a whole identifier.
    for path in ["/dlp/incidents?mode=", "/dlp/report"]:
        b.go(path)
        for n in full_numbers:
            assert n.replace(" ", "") not in b.text.replace(" ", ""), (path, n)
    audit = pal.cli("audit", "list", "--json", json_out=True)
    assert any(e["action"] == "config.commit" for e in audit), [e["action"] for e in audit[:10]]
    assert not b.console_errors, b.console_errors
