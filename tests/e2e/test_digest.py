"""The quarantine digest end to end: a message held by an operator's [[filter.rule]] for two
local recipients, each recipient's digest sent on demand (`palisade quarantine digest --now`)
into the Maildir, its release link followed over HTTPS with a plain HTTP client (no login):
the confirmation page, a POST with the page's nonce, the held message delivered
byte-identical to that recipient only; the link refused a second time, a tampered link
refused, the release audited, the other recipient's link still working, and a stranger
guessing links throttled."""

import email
import email.policy
import http.client
import re
import smtplib
import ssl
import urllib.parse

from harness import strip_added_headers, to_toml, wait_for

MESSAGE = (
    "From: Prize Desk <winner@spam.test>\r\n"
    "To: alice@hospital.test, bob@hospital.test\r\n"
    "Subject: You have won <b>a prize</b>\r\n"
    "Message-ID: <prize-1@spam.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "SECRET-BODY-TEXT claim it now.\r\n"
).encode()


def digest_config():
    return {
        "domain": [{"name": "hospital.test", "route": "maildir"}],
        "filter.rule": [
            {"name": "prize spam", "senders": ["spam.test"], "action": "quarantine",
             "reason": "Looks like a prize scam"},
        ],
        "digest": {"enabled": True},
    }


class Console:
    """HTTPS to the console, certificate unchecked (self-signed on a test box)."""

    def __init__(self, port):
        self.port = port
        self.ctx = ssl._create_unverified_context()

    def request(self, method, path, form=None, origin=True):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        headers = {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if origin and method == "POST":
            headers["Origin"] = f"https://127.0.0.1:{self.port}"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, text, r


def send(port, rcpts, data=MESSAGE, sender="winner@spam.test"):
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.spam.test")
        s.mail(sender)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        code, msg = s.data(data)
        assert code == 250, msg


def parsed(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def digests_for(p, rcpt):
    out = []
    for raw in p.mailbox():
        m = parsed(raw)
        if str(m["Subject"] or "").startswith("Quarantine digest") and m["X-Original-To"] == rcpt:
            out.append(m)
    return out


def release_link(digest, console_port):
    text = digest.get_body(("plain",)).get_content()
    links = re.findall(r"https://127\.0\.0\.1:%d(/digest/release/[0-9A-Za-z.]+)" % console_port, text)
    assert len(links) == 1, text
    html = digest.get_body(("html",)).get_content()
    assert links[0] in html
    return links[0], text, html


def nonce_of(page):
    m = re.search(r'name="nonce" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def test_digest_release_link_releases_once_to_that_recipient_only(palisade_factory):
    p = palisade_factory(digest_config(), start=False)
    # Links point at the console the recipients reach: here, its loopback listener.
    p.config["digest"]["link_base_url"] = f"https://127.0.0.1:{p.console_port}"
    p.config_file.write_text(to_toml(p.config))
    p.start()
    web = Console(p.console_port)

    send(p.smtp_port, ["alice@hospital.test", "bob@hospital.test"])
    held = wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True), 30, what="held entry")
    assert len(held) == 1, held
    entry = held[0]
    assert sorted(r["address"] for r in entry["recipients"]) == ["alice@hospital.test", "bob@hospital.test"]
    held_bytes = (p.data / "quarantine" / entry["id"]).read_bytes()
    assert held_bytes.endswith(MESSAGE)

    # What the next digest would list, without sending anything.
    preview = p.cli("quarantine", "digest", "--json", json_out=True)
    assert preview["enabled"] is True
    assert sorted(x["recipient"] for x in preview["pending"]) == ["alice@hospital.test", "bob@hospital.test"]
    assert p.mailbox() == []

    out = p.cli("quarantine", "digest", "--now", "--to", "alice@hospital.test").stdout
    assert "1 digest(s)" in out, out
    out = p.cli("quarantine", "digest", "--now").stdout
    assert "1 digest(s)" in out and "bob@hospital.test" in out, out
    # Recorded in mail.db: nothing is listed twice.
    out = p.cli("quarantine", "digest", "--now").stdout
    assert "no digest due" in out, out
    assert p.cli("quarantine", "digest", "--json", json_out=True)["pending"] == []

    wait_for(lambda: len(digests_for(p, "alice@hospital.test")) == 1
             and len(digests_for(p, "bob@hospital.test")) == 1, 30, what="both digests in the Maildir")
    alice_digest = digests_for(p, "alice@hospital.test")[0]
    assert alice_digest["Subject"] == "Quarantine digest: 1 message held for you"
    assert alice_digest["From"].addresses[0].addr_spec == "postmaster@palisade.test"
    assert alice_digest["Auto-Submitted"] == "auto-generated"
    link, text, html = release_link(alice_digest, p.console_port)
    # Sender, subject and reason are listed; the subject's markup is escaped in the HTML; the
    # message's content is not in the digest.
    assert "winner@spam.test" in text and "You have won <b>a prize</b>" in text and "Looks like a prize scam" in text
    assert "&lt;b&gt;a prize&lt;/b&gt;" in html and "<b>a prize</b>" not in html
    assert "SECRET-BODY-TEXT" not in text and "SECRET-BODY-TEXT" not in html
    bob_link, _, _ = release_link(digests_for(p, "bob@hospital.test")[0], p.console_port)
    assert bob_link != link

    # A tampered link: alice's token with bob's address in it.
    parts = link.rsplit("/", 1)[1].split(".")
    forged = ".".join([parts[0], parts[1], "bob@hospital.test".encode().hex(), parts[3]])
    status, page, _ = web.request("GET", f"/digest/release/{forged}")
    assert status == 403, page
    assert "signature does not match" in page

    # GET: the confirmation page, no login, no state change.
    status, page, r = web.request("GET", link)
    assert status == 200, page
    assert r.getheader("Cache-Control") == "no-store"
    assert "alice@hospital.test" in page and "You have won &#60;b&#62;a prize&#60;/b&#62;" in page
    assert "<b>a prize" not in page
    nonce = nonce_of(page)
    assert p.cli("quarantine", "list", "--json", json_out=True)[0]["state"] == "held"

    # A POST without the page's nonce, or from another origin, releases nothing.
    status, page, _ = web.request("POST", link, form={"nonce": "1.00.00"})
    assert status == 403, page
    status, page, _ = web.request("POST", link, form={"nonce": nonce}, origin=False)
    assert status == 403, page

    before = len(p.mailbox())
    status, page, _ = web.request("POST", link, form={"nonce": nonce})
    assert status == 200, page
    assert "Message released" in page

    def released():
        for raw in p.mailbox():
            m = parsed(raw)
            if m["Message-ID"] == "<prize-1@spam.test>":
                return raw
        return None

    raw = wait_for(released, 30, what="the released message in the Maildir")
    assert len(p.mailbox()) == before + 1
    assert parsed(raw)["X-Original-To"] == "alice@hospital.test"
    # Byte for byte what was held (the Maildir stores LF line ends and adds the envelope
    # lines Return-Path / X-Original-To in front).
    assert strip_added_headers(raw) == strip_added_headers(held_bytes.replace(b"\r\n", b"\n"))
    assert raw.endswith(held_bytes.replace(b"\r\n", b"\n"))

    # Still held for bob only.
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert [r["address"] for r in held[0]["recipients"]] == ["bob@hospital.test"], held
    assert held[0]["state"] == "held"

    # The same link again: GET and POST are refused, nothing more is delivered.
    status, page, _ = web.request("GET", link)
    assert status == 410 and "already used" in page, page
    status, page, _ = web.request("POST", link, form={"nonce": nonce})
    assert status == 410 and "already used" in page, page

    # Audited by the engine: the release with the recipient as actor, and both sends.
    audit = p.cli("audit", "list", "--json", json_out=True)
    releases = [a for a in audit if a["action"] == "quarantine.release"]
    assert len(releases) == 1, releases
    assert releases[0]["actor"] == "digest:alice@hospital.test"
    assert releases[0]["target"] == entry["id"]
    assert releases[0]["source"] == "127.0.0.1"
    sends = [a for a in audit if a["action"] == "digest.send"]
    assert len(sends) == 3, sends
    assert p.cli("audit", "verify", "--json", json_out=True)["verdict"] == "intact"

    # Bob's link still works and releases to bob.
    status, page, _ = web.request("GET", bob_link)
    assert status == 200, page
    status, page, _ = web.request("POST", bob_link, form={"nonce": nonce_of(page)})
    assert status == 200, page
    wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True) == [], 30, what="entry released")
    everything = p.cli("quarantine", "list", "--state", "all", "--json", json_out=True)
    assert everything[0]["state"] == "released"
    assert not (p.data / "quarantine" / entry["id"]).exists()

    # A stranger trying links from one address is slowed down: 429 with Retry-After.
    statuses = []
    for i in range(8):
        status, _, r = web.request("GET", f"/digest/release/1.{entry['id']}.{'61' * 4}.{i:064x}")
        statuses.append(status)
        if status == 429:
            assert int(r.getheader("Retry-After")) >= 1
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {403}, statuses
