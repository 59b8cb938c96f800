"""The filter seam end to end: per-recipient decisions from the operator's rules, edited
copies as separate artifacts, quarantine as a spool area with release and delete, whole-message
refusals, and explanations in tracking. Real SMTP clients (smtplib) and a raw capture server."""

import json
import smtplib

from harness import wait_for

MESSAGE = (
    "From: Dr Ada <ada@example.org>\r\n"
    "To: ceo@raw.test, staff@raw.test\r\n"
    "Subject: Quarterly figures\r\n"
    "Message-ID: <q3-figures@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "The figures are attached in spirit.\r\n"
).encode()


def send(port, rcpts, data=MESSAGE, sender="ada@example.org"):
    """Sends one message; returns (code, text) of the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example.org")
        s.mail(sender)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        code, msg = s.data(data)
        return code, msg.decode()


def config(raw, rules, **filter_settings):
    return {
        "domain": [
            {"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
        ],
        "filter": filter_settings,
        "filter.rule": rules,
    }


def by_rcpt(raw):
    return {m["rcpts"][0]: m for m in raw.messages}


def test_quarantine_one_recipient_deliver_the_other_then_release_byte_identical(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = palisade_factory(config(raw, [
        {"name": "ceo mail reviewed", "recipients": ["ceo@raw.test"], "action": "quarantine",
         "reason": "Mail to the CEO is reviewed first"},
    ]))

    code, text = send(p.smtp_port, ["ceo@raw.test", "staff@raw.test"])
    assert code == 250, text
    queue_id = text.split()[-1]

    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery to staff")
    assert raw.messages[0]["rcpts"] == ["staff@raw.test"]

    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1, held
    entry = held[0]
    assert entry["queue_id"] == queue_id
    assert [r["address"] for r in entry["recipients"]] == ["ceo@raw.test"]
    assert entry["reason"] == "Mail to the CEO is reviewed first"
    held_bytes = (p.data / "quarantine" / entry["id"]).read_bytes()
    # The held copy is the message as received (our Received header + what the client sent).
    assert held_bytes.endswith(MESSAGE)
    assert held_bytes == raw.messages[0]["data"]

    shown = p.cli("quarantine", "show", entry["id"], "--json", json_out=True)
    assert "ceo mail reviewed" in json.dumps(shown)

    # Tracking explains it: a decision event for the held recipient, with the rule's sentence.
    tracked = p.track(queue_id=queue_id)
    events = tracked[0]["events"]
    decisions = [e for e in events if e["event"] == "decision"]
    assert [e["rcpt"] for e in decisions] == ["ceo@raw.test"], events
    assert "ceo mail reviewed" in decisions[0]["detail"] and "reviewed first" in decisions[0]["detail"]
    assert any(e["event"] == "quarantined" and e["rcpt"] == "ceo@raw.test" for e in events), events
    human = p.cli("track", "--queue-id", queue_id, "--events").stdout
    assert "ceo mail reviewed" in human
    # Delivered to one recipient, held for the other: partly delivered, never "delivered".
    wait_for(lambda: p.track(queue_id=queue_id)[0]["status"] == "partial", 30, what="status partial")

    # Release: delivered through the normal queue, byte-identical to what was held.
    r = p.cli("quarantine", "release", entry["id"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(raw.messages) == 2, 30, what="delivery of the released copy")
    released = raw.messages[1]
    assert released["rcpts"] == ["ceo@raw.test"]
    assert released["from"] == "ada@example.org"
    assert released["data"] == held_bytes

    after = p.cli("quarantine", "list", "--json", "--state", "all", json_out=True)
    assert [e["state"] for e in after] == ["released"]
    assert not (p.data / "quarantine" / entry["id"]).exists()
    audit = p.cli("audit", "list", "--json", json_out=True)
    releases = [a for a in audit if a["action"] == "quarantine.release"]
    assert len(releases) == 1 and releases[0]["target"] == entry["id"], releases
    # A second release is refused: it is no longer held.
    again = p.cli("quarantine", "release", entry["id"], check=False)
    assert again.returncode != 0
    p.wait_queue_empty()


def test_edits_make_separate_copies_and_delete_is_audited(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = palisade_factory(config(raw, [
        {"name": "tag for staff", "recipients": ["staff@raw.test"], "action": "tag_subject", "value": "[EXTERNAL]"},
        {"name": "stamp", "action": "add_header", "header_name": "X-Palisade-Rule", "value": "stamped"},
        {"name": "hold audit", "recipients": ["audit@raw.test"], "action": "quarantine"},
    ]))
    code, text = send(p.smtp_port, ["ceo@raw.test", "staff@raw.test", "audit@raw.test"])
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 2, 30, what="two deliveries")
    got = by_rcpt(raw)
    ceo, staff = got["ceo@raw.test"]["data"], got["staff@raw.test"]["data"]
    assert ceo.startswith(b"X-Palisade-Rule: stamped\r\nReceived: ")
    assert b"\r\nSubject: Quarterly figures\r\n" in ceo
    assert b"\r\nSubject: [EXTERNAL] Quarterly figures\r\n" in staff
    assert staff.startswith(b"X-Palisade-Rule: stamped\r\n")
    # Bodies untouched.
    assert ceo.endswith(b"\r\n\r\nThe figures are attached in spirit.\r\n")
    assert staff.endswith(b"\r\n\r\nThe figures are attached in spirit.\r\n")

    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1
    # The held copy carries the edits that applied to its recipient.
    assert (p.data / "quarantine" / held[0]["id"]).read_bytes().startswith(b"X-Palisade-Rule: stamped\r\n")
    p.cli("quarantine", "delete", held[0]["id"])
    assert p.cli("quarantine", "list", "--json", json_out=True) == []
    assert not (p.data / "quarantine" / held[0]["id"]).exists()
    audit = p.cli("audit", "list", "--json", json_out=True)
    assert len([a for a in audit if a["action"] == "quarantine.delete"]) == 1
    p.wait_queue_empty()
    # Nothing left in the spool: the unused received file and every artifact are gone.
    assert sorted(x.name for x in (p.data / "spool").iterdir()) == []


def test_refusals_whole_and_per_recipient_without_backscatter(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = palisade_factory(config(raw, [
        {"name": "no invoices", "header": "Subject", "contains": "invoice", "action": "reject",
         "reply_text": "Invoices go through the portal"},
        {"name": "no mail for former staff", "recipients": ["former@raw.test"], "action": "reject"},
        {"name": "drop newsletters", "header": "Subject", "contains": "newsletter", "action": "discard"},
    ]))
    invoice = MESSAGE.replace(b"Quarterly figures", b"Your invoice")
    code, text = send(p.smtp_port, ["ceo@raw.test"], data=invoice)
    assert code == 550 and "Invoices go through the portal" in text, (code, text)

    # One recipient refused after DATA: the others get it, the sender (inbound) gets nothing.
    code, text = send(p.smtp_port, ["former@raw.test", "staff@raw.test"])
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery to staff")
    assert raw.messages[0]["rcpts"] == ["staff@raw.test"]

    code, text = send(p.smtp_port, ["staff@raw.test"], data=MESSAGE.replace(b"Quarterly figures", b"Our newsletter"))
    assert code == 250, text
    p.wait_queue_empty()
    assert len(raw.messages) == 1  # discarded, and no DSN to anyone
    rejected = p.track(status="rejected")
    assert any("no invoices" in json.dumps(m["events"]) for m in rejected), rejected
    discarded = p.track(status="discarded")
    assert len(discarded) == 1


def test_uninspectable_message_is_held_not_delivered(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    cfg = config(raw, [])
    cfg["inspect"] = {"max_parts": 3}
    p = palisade_factory(cfg)
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(6))
    bomb = (
        "From: a@example.org\r\nTo: staff@raw.test\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + "--b--\r\n"
    ).encode()
    code, text = send(p.smtp_port, ["staff@raw.test"], data=bomb)
    assert code == 250, text
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1 and "max_parts" in held[0]["reason"], held
    assert raw.messages == []
    out = p.cli("check", str(p.data / "quarantine" / held[0]["id"]), "--to", "staff@raw.test", "--json", json_out=True)
    assert out["decisions"][0]["action"] == "quarantine"
    assert any(l["limit"] == "max_parts" for l in out["limits"])


def test_checks_see_the_forward_confirmed_client_name(palisade_factory, raw_sink_factory):
    """The client's reverse name, confirmed forward, reaches the checks (and tracking). Loopback
    127/8 names are answered by the resolver itself (RFC 6761 "localhost"), so the clients use
    two benchmark-range addresses added to `lo` for the test (never routed anywhere)."""
    import subprocess
    import time

    from harness import free_port

    good, liar = "198.18.7.2", "198.18.7.3"
    for a in (good, liar):
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True, capture_output=True)
    raw = raw_sink_factory()
    dns_port = free_port()
    dnsmasq = subprocess.Popen([
        "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={dns_port}",
        # PTR and A agree for the first; the second has a PTR whose name does not point back.
        f"--host-record=client.example.net,{good}",
        "--ptr-record=3.7.18.198.in-addr.arpa,liar.example.net",
        "--local=/example.net/",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert dnsmasq.poll() is None, "dnsmasq failed to start"
        cfg = config(raw, [])
        cfg["dns"] = {"nameservers": [f"127.0.0.1:{dns_port}"]}
        p = palisade_factory(cfg)
        for source in (good, liar):
            with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60, source_address=(source, 0)) as s:
                time.sleep(0.5)  # the lookup runs in the background from the connection on
                s.ehlo("client.example.org")
                s.sendmail("ada@example.org", ["staff@raw.test"], MESSAGE)
        names = {}
        for m in p.track():
            envelope = json.loads(m["verdict"])["envelope"]
            names[envelope["client_ip"]] = envelope.get("client_name")
        assert names == {good: "client.example.net", liar: None}, names
    finally:
        dnsmasq.terminate()
        dnsmasq.wait()
        for a in (good, liar):
            subprocess.run(["ip", "addr", "del", f"{a}/32", "dev", "lo"], capture_output=True)


def test_rules_change_with_the_configuration_without_a_restart(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = palisade_factory(config(raw, []))
    code, text = send(p.smtp_port, ["ceo@raw.test"])
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery before the rule")

    exported = p.cli("config", "export").stdout
    f = p.dir / "with-rule.toml"
    f.write_text(exported + '\n[[filter.rule]]\nname = "hold ceo"\nrecipients = ["ceo@raw.test"]\naction = "quarantine"\n')
    r = p.cli("config", "import", str(f), "--comment", "hold mail to the CEO")
    assert "applied" in r.stdout, r.stdout

    code, text = send(p.smtp_port, ["ceo@raw.test"])
    assert code == 250, text
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1 and held[0]["queue_id"] == text.split()[-1]
    assert len(raw.messages) == 1
