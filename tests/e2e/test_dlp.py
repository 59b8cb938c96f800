"""Data-loss prevention end to end (issue 11): the golden corpus (tests/resources/dlp, written
by its make.py) gives exactly the expected detections and unscannable parts through `palisade
check`; an outbound message with 5 valid NHS numbers in an XLSX is held by an enforcing rule,
while the same message under a monitoring rule is delivered; both are incidents and both are
in the audit report (text, JSON, CSV, printable HTML), with masked snippets only."""

import email
import io
import json
import re
import smtplib
import time
import zipfile
from pathlib import Path

import pytest
from harness import wait_for

CORPUS = Path(__file__).resolve().parents[1] / "resources" / "dlp"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def send(p, data, rcpts=("partner@clinic.example",), sender="ada@hospital.example"):
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60) as s:
        s.ehlo("workstation.hospital.example")
        s.mail(sender)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        try:
            code, msg = s.data(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code, msg.decode(errors="replace")


@pytest.fixture
def checker(palisade_factory):
    return palisade_factory({})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_corpus(checker, name):
    want = EXPECTED[name]
    report = checker.cli("check", str(CORPUS / f"{name}.eml"), "--direction", "out", "--no-dns",
                         "--to", "partner@clinic.example", "--json", json_out=True)
    dlp = report["checks"]["dlp"]
    assert dlp["status"] == {"state": "completed"}, dlp
    facts = dlp["facts"]
    got = {d["detector"]: d["count"] for d in facts["detections"]}
    assert got == want["detections"], json.dumps(facts, indent=1)
    assert sorted(u["location"] for u in facts["unscannable"]) == want["unscannable"], facts["unscannable"]
    for d in facts["detections"]:
        for s in d["snippets"]:
            # Masked: only the last 3 letters or digits show.
            shown = [c for c in s if c.isalnum()]
            assert len(shown) == 3 and "*" in s, s
        assert d["locations"] and sum(l["count"] for l in d["locations"]) == d["count"], d
    assert facts["status"] == ("found" if want["detections"] else "none")


def rules(monitor: bool):
    return [{
        "name": "patient identifiers leave only encrypted" if not monitor else "patient identifiers (audit)",
        "direction": "outbound",
        "dlp": {"nhs_number": 5},
        "external": True,
        "action": "quarantine",
        "reason": "5 or more NHS numbers to an outside address",
        "monitor": monitor,
        "notify_sender": True,
        "notify": ["dpo@hospital.example"],
    }]


@pytest.mark.parametrize("monitor", [False, True], ids=["enforced", "monitor"])
def test_xlsx_with_five_nhs_numbers(palisade_factory, raw_sink_factory, monitor):
    raw = raw_sink_factory()
    p = palisade_factory({
        "domain": [{"name": "hospital.example", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "route": [{"domain": "clinic.example", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "filter": {"rule": rules(monitor)},
    })
    data = (CORPUS / "xlsx_five_nhs_numbers.eml").read_bytes()
    # An internal colleague on the same message is not external: the rule spares them.
    code, text = send(p, data, rcpts=("partner@clinic.example", "ward7@hospital.example"))
    assert code == 250, (code, text)
    p.wait_queue_empty()
    delivered = sorted(r for m in raw.messages for r in m["rcpts"] if email.message_from_bytes(m["data"])["Subject"] == "ward list")
    held = p.cli("quarantine", "list", "--json", json_out=True)
    if monitor:
        # Flows as if the rule were absent.
        assert held == [], held
        assert delivered == ["partner@clinic.example", "ward7@hospital.example"], delivered
    else:
        assert delivered == ["ward7@hospital.example"], delivered
        assert len(held) == 1, held
        assert held[0]["reason"] == "5 or more NHS numbers to an outside address", held
        assert "partner@clinic.example" in json.dumps(held[0]["recipients"]), held
        assert "ward7" not in json.dumps(held[0]["recipients"]), held
    # Notices: the enforcing rule tells the sender and the address it names (masked findings,
    # no content); the monitoring one tells nobody.
    def notices():
        return {r: email.message_from_bytes(m["data"]) for m in raw.messages for r in m["rcpts"]
                if r in ("ada@hospital.example", "dpo@hospital.example")}
    if monitor:
        time.sleep(2)
        assert notices() == {}, notices()
    else:
        got = wait_for(lambda: len(notices()) == 2 and notices(), 30, what="two policy notices")
        told = got["ada@hospital.example"]
        assert told["Subject"] == "Mail policy applied: ward list", told["Subject"]
        text = told.get_payload(decode=True).decode()
        assert "is held for review" in text and "partner@clinic.example" in text, text
        assert "5 or more NHS numbers to an outside address" in text, text
        dpo = got["dpo@hospital.example"]
        assert dpo["Subject"].startswith("DLP rule matched: patient identifiers leave only encrypted"), dpo["Subject"]
        text = dpo.get_payload(decode=True).decode()
        assert "From: ada@hospital.example" in text and "nhs_number x5" in text and "*******" in text, text
        assert "The list is attached" not in text, "no content in the notice"
    [incident] = p.cli("dlp", "incidents", "--json", json_out=True)
    assert incident["monitor"] is monitor and incident["action"] == "quarantine", incident
    assert incident["recipients"] == ["partner@clinic.example"], incident
    assert incident["sender"] == "ada@hospital.example", incident
    [d] = incident["detections"]
    assert d["detector"] == "nhs_number" and d["count"] == 5, d
    assert d["locations"] == [{"location": "ward list.xlsx", "count": 5}], d
    # No full identifier in the database (tracking, incidents): only masked snippets.
    stored = b"".join(f.read_bytes() for f in p.data.glob("mail.db*"))
    msg = email.message_from_bytes(data)
    xlsx = next(part for part in msg.walk() if part.get_filename() == "ward list.xlsx").get_payload(decode=True)
    sheet = zipfile.ZipFile(io.BytesIO(xlsx)).read("xl/worksheets/sheet1.xml").decode()
    numbers = re.findall(r"<v>(\d{10})</v>", sheet)
    assert len(numbers) == 5
    for n in numbers:
        assert n.encode() not in stored, n
        assert not any(n.encode() in m["data"] for m in raw.messages
                       if "dpo@hospital.example" in m["rcpts"] or "ada@hospital.example" in m["rcpts"]), n

    report = p.cli("dlp", "report", "--since", "1h", "--format", "json", json_out=True)
    assert report["messages"] == 1, report
    [rule] = report["rules"]
    assert rule["monitor"] is monitor and rule["messages"] == 1 and rule["senders"] == 1, rule
    assert rule["recipient_domains"] == [["clinic.example", 1]], rule
    assert report["identifiers"] == [["nhs_number", 5]], report
    assert report["top_domains"] == [["clinic.example", 1]], report
    csv = p.cli("dlp", "report", "--since", "1h", "--format", "csv").stdout
    assert "identifier,nhs_number,,,5," in csv, csv
    html = p.cli("dlp", "report", "--since", "1h", "--format", "html").stdout
    assert "<table>" in html and "clinic.example (1)" in html and "<script" not in html, html
    assert ("monitor (would have)" in html) is monitor


def test_first_mail_to_a_domain_unconfirmed_is_discarded_and_the_sender_told(palisade_factory, raw_sink_factory):
    """A `confirm` rule on the first mail to a domain: the sender's notice arrives; nobody
    confirms; once the confirmation time is over (here: the entry's expiry moved into the past
    while the appliance was stopped; the sweep runs at start) the message is discarded, never
    delivered, and the sender gets "Not sent"."""
    import sqlite3

    raw = raw_sink_factory()
    p = palisade_factory({
        "domain": [{"name": "hospital.example", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "route": [{"domain": "clinic.example", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "filter": {"rule": [{"name": "new domains", "direction": "outbound",
                             "first_mail_to_domain": True, "action": "confirm",
                             "reason": "first mail to this organisation"}]},
    })
    code, text = send(p, b"From: ada@hospital.example\r\nSubject: Referral\r\n\r\nPlease see.\r\n",
                      rcpts=("partner@clinic.example", "ward7@hospital.example"))
    assert code == 250, (code, text)
    [held] = wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True), 30, what="held entry")
    assert held["reason"] == "confirmation: first mail to this organisation", held
    # Only the external recipient waits; the colleague has it.
    assert [r["address"] for r in held["recipients"]] == ["partner@clinic.example"], held

    def to_sender(subject_prefix):
        return [m for m in raw.messages if m["rcpts"] == ["ada@hospital.example"]
                and email.message_from_bytes(m["data"])["Subject"].startswith(subject_prefix)]

    wait_for(lambda: to_sender("Confirm before it is sent"), 30, what="the notice")
    assert any(m["rcpts"] == ["ward7@hospital.example"] for m in raw.messages)
    p.stop()
    with sqlite3.connect(p.data / "mail.db") as db:
        db.execute("UPDATE quarantine SET expires_at = 1 WHERE id = ?", (held["id"],))
    p.start()
    [gone] = wait_for(lambda: to_sender("Not sent"), 30, what="the not-sent notice")
    body = email.message_from_bytes(gone["data"]).get_payload(decode=True).decode()
    assert "partner@clinic.example" in body and "was not sent" in body, body
    assert p.cli("quarantine", "list", "--json", json_out=True) == []
    assert not any("partner@clinic.example" in m["rcpts"] for m in raw.messages)


def test_strip_rule_removes_the_spreadsheet_for_outside_recipients(palisade_factory, raw_sink_factory):
    """A `strip` rule (DLP hit, external recipients): the outside recipient gets the message
    without the XLSX, replaced by a note naming it; the colleague inside gets it whole; the
    original is kept in quarantine for the outside recipient, so an operator can release it."""
    raw = raw_sink_factory()
    p = palisade_factory({
        "domain": [{"name": "hospital.example", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "route": [{"domain": "clinic.example", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "filter": {"rule": [{
            "name": "spreadsheets of patients stay inside",
            "direction": "outbound",
            "dlp": {"nhs_number": 5},
            "external": True,
            "file_extensions": ["xlsx"],
            "action": "strip",
            "reason": "patient list",
        }]},
    })
    data = (CORPUS / "xlsx_five_nhs_numbers.eml").read_bytes()
    code, text = send(p, data, rcpts=("partner@clinic.example", "ward7@hospital.example"))
    assert code == 250, (code, text)
    p.wait_queue_empty()
    by_rcpt = {r: m["data"] for m in raw.messages for r in m["rcpts"]}
    assert sorted(by_rcpt) == ["partner@clinic.example", "ward7@hospital.example"], sorted(by_rcpt)
    outside = email.message_from_bytes(by_rcpt["partner@clinic.example"])
    inside = email.message_from_bytes(by_rcpt["ward7@hospital.example"])
    assert [x.get_filename() for x in inside.walk() if x.get_filename()] == ["ward list.xlsx"]
    assert not [x for x in outside.walk() if x.get_filename()], "the spreadsheet went out"
    notes = [x.get_payload(decode=True).decode() for x in outside.walk()
             if x.get_content_type() == "text/plain"]
    assert any('removed the attachment "ward list.xlsx"' in n and "patient list" in n for n in notes), notes
    assert any("The list is attached." in n for n in notes), "the body stays"
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1 and "partner@clinic.example" in json.dumps(held[0]["recipients"]), held
    assert "ward7" not in json.dumps(held[0]["recipients"]), held


def test_registered_file_found_attached_and_inside_a_zip(palisade_factory, tmp_path):
    """`[[dlp.fingerprint]]`: the exact bytes of a registered file are found attached and as a
    member of a zip (detector fingerprint:NAME, its location), and a rule on it matches; the
    same spreadsheet saved again (other bytes) is not that file."""
    import hashlib
    from email.message import EmailMessage

    msg = email.message_from_bytes((CORPUS / "xlsx_five_nhs_numbers.eml").read_bytes())
    xlsx = next(part for part in msg.walk() if part.get_filename() == "ward list.xlsx").get_payload(decode=True)
    p = palisade_factory({
        "dlp": {"fingerprint": [{"name": "ward-list", "sha256": hashlib.sha256(xlsx).hexdigest()}]},
        "filter": {"rule": [{"name": "registered files", "direction": "outbound",
                             "dlp": {"fingerprint:ward-list": 1}, "action": "quarantine"}]},
    })

    def check(attachments):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "ada@hospital.example", "partner@clinic.example", "files"
        m.set_content("Attached.\n")
        for name, data, maintype, subtype in attachments:
            m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        f = tmp_path / f"m{len(list(tmp_path.iterdir()))}.eml"
        f.write_bytes(bytes(m))
        return p.cli("check", str(f), "--direction", "out", "--no-dns", "--json", json_out=True)

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/copy.xlsx", xlsx)
    for attachments, where in [
        ([("ward list.xlsx", xlsx, "application", "octet-stream")], "ward list.xlsx"),
        ([("export.zip", buf.getvalue(), "application", "zip")], "export.zip/inner/copy.xlsx"),
    ]:
        r = check(attachments)
        found = {d["detector"]: d for d in r["checks"]["dlp"]["facts"]["detections"]}
        assert "fingerprint:ward-list" in found, found
        assert found["fingerprint:ward-list"]["locations"] == [{"location": where, "count": 1}], found
        assert r["decisions"][0]["action"] == "quarantine", r["decisions"]
    # The same spreadsheet saved again (a zip comment added): other bytes, not that file.
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.comment = b"saved again"
    changed = out.getvalue()
    assert changed != xlsx
    r = check([("ward list.xlsx", changed, "application", "octet-stream")])
    assert not any(d["detector"].startswith("fingerprint:") for d in r["checks"]["dlp"]["facts"]["detections"])
    assert r["decisions"][0]["action"] == "deliver", r["decisions"]
