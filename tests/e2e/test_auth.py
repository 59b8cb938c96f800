"""Authenticated submission: SMTP AUTH (PLAIN, LOGIN) on the submission port, only under TLS,
only for submission accounts, throttled and audited like console logins."""

import base64
import json
import re
import ssl
import subprocess

from harness import SmtpClient, wait_for


def swaks(port, *args):
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "scanner@example.test",
                           "--to", "partner@partner.test", *args], capture_output=True, text=True, timeout=60)


def tls_client(port):
    c = SmtpClient(port)
    c.cmd("EHLO mfp.ward7")
    assert c.cmd("STARTTLS").startswith("220")
    c.sock = ssl._create_unverified_context().wrap_socket(c.sock, server_hostname="palisade.test")
    c.buf = b""
    return c


def test_submission_auth_relays_and_is_tracked_and_audited(palisade_factory, sink_factory):
    sink = sink_factory()
    p = palisade_factory({
        "smtp": {"trusted_networks": ["192.0.2.0/24"]},  # loopback is an ordinary client here
        "route": [{"domain": "partner.test", "smarthosts": [f"127.0.0.1:{sink.port}"]}],
    })
    out = p.cli("admin", "add-user", "scanner", "--role", "submission").stdout
    password = re.search(r"password (\S+)", out).group(1)

    # Without authentication the submission port refuses.
    r = swaks(p.submission_port, "--tls")
    assert "530 5.7.0" in r.stdout, r.stdout

    # Not offered, and refused, before TLS.
    c = SmtpClient(p.submission_port)
    assert "AUTH" not in c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0scanner\0" + password.encode()).decode()).startswith("538 5.7.11")
    # Never offered on the MX port.
    c = SmtpClient(p.smtp_port)
    c.cmd("EHLO x")
    assert c.cmd("AUTH LOGIN").startswith("502")

    r = swaks(p.submission_port, "--tls", "--auth", "PLAIN", "--auth-user", "scanner", "--auth-password", password,
              "--header", "Subject: scan from ward 7")
    assert r.returncode == 0, r.stdout + r.stderr
    r = swaks(p.submission_port, "--tls", "--auth", "LOGIN", "--auth-user", "scanner", "--auth-password", password)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: len(sink.messages()) == 2, 30, what="two relayed messages")
    assert b"with ESMTPSA" in sink.messages()[0]
    p.wait_queue_empty()
    tracked = p.track(rcpt="partner@partner.test")
    assert {t["auth_user"] for t in tracked} == {"scanner"}
    assert all(t["status"] == "delivered" for t in tracked)

    # A console account cannot send mail, and a wrong password is refused: both audited.
    c = tls_client(p.submission_port)
    assert "AUTH PLAIN LOGIN" in c.cmd("EHLO x")
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0scanner\0wrong").decode()).startswith("535 5.7.8")
    admin_pw = next(l for l in p.stdout_lines if "admin password" in l).rsplit(" ", 1)[1]
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0admin\0" + admin_pw.encode()).decode()).startswith("535 5.7.8")
    assert c.cmd("AUTH LOGIN").startswith("334 VXNlcm5hbWU6")
    assert c.cmd("*").startswith("501 5.0.0")
    audit = p.cli("audit", "list", "--json", "--action", "smtp_auth.", json_out=True)
    reasons = [json.loads(a["detail"]).get("reason") for a in audit if a["action"] == "smtp_auth.failed"]
    assert "wrong password" in reasons and "role not allowed here" in reasons
    assert sum(a["action"] == "smtp_auth.success" for a in audit) == 2

    # After five failures for the account it is throttled, even with the right password.
    for _ in range(4):
        assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0scanner\0wrong").decode()).startswith("535")
    c = tls_client(p.submission_port)
    c.cmd("EHLO x")
    reply = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0scanner\0" + password.encode()).decode())
    assert reply.startswith("454 4.7.0"), reply
    assert any(a["action"] == "smtp_auth.throttled"
               for a in p.cli("audit", "list", "--json", "--action", "smtp_auth.", json_out=True))
