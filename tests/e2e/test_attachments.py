"""Attachment rules by real file type end to end: an executable named .pdf refused at DATA with
554 and never delivered; a macro document held in quarantine; a disguised executable stripped
from the delivered copy (a valid MIME message with a note in its place, parsed with Python's
email package) while the original waits in quarantine and is released byte-identical. The
corpus files in tests/resources/inbound are checked with `palisade check --json` too."""

import email
import email.policy
import smtplib
from pathlib import Path

from harness import wait_for

CORPUS = Path(__file__).resolve().parents[1] / "resources" / "inbound"
PE_MIME = "application/vnd.microsoft.portable-executable"


def send(port, data, rcpts=("staff@raw.test",), sender="sender@example.org"):
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example.org")
        s.mail(sender)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        try:
            code, msg = s.data(data)
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code, msg.decode(errors="replace")


def appliance(palisade_factory, raw, **attachments):
    cfg = {"domain": [{"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}]}
    if attachments:
        cfg["attachments"] = attachments
    return palisade_factory(cfg)


def check(p, path: Path) -> dict:
    return p.cli("check", str(path), "--to", "staff@raw.test", "--json", json_out=True)


def test_executable_named_pdf_is_refused_at_data_and_never_delivered(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = appliance(palisade_factory, raw)
    corpus = (CORPUS / "executable-named-pdf.eml").read_bytes()
    code, text = send(p.smtp_port, corpus)
    assert code == 554, (code, text)
    assert "5.7.1" in text and "invoice.pdf" in text and "(executable)" in text, text
    p.wait_queue_empty()
    assert raw.messages == []
    assert p.cli("quarantine", "list", "--json", json_out=True) == []

    report = check(p, CORPUS / "executable-named-pdf.eml")
    a = report["checks"]["attachments"]
    assert a["facts"]["status"] == "flagged" and a["facts"]["action"] == "block", a
    [flagged] = a["facts"]["flagged"]
    assert flagged["path"] == "invoice.pdf" and flagged["name"] == "invoice.pdf", flagged
    assert flagged["real_type"] == PE_MIME and flagged["category"] == "executable", flagged
    assert flagged["action"] == "block" and "Windows (PE) executable" in flagged["sentence"], flagged
    assert report["decisions"][0]["action"] == "reject", report["decisions"]
    assert report["smtp_reply"]["code"] == 554, report["smtp_reply"]
    assert any(e["stage"] == "attachments" for e in report["decisions"][0]["explanations"])

    rejected = p.track(status="rejected")
    assert len(rejected) == 1 and "invoice.pdf" in str(rejected[0]["events"]), rejected


def test_macro_document_is_quarantined(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = appliance(palisade_factory, raw)
    corpus = (CORPUS / "macro-document.eml").read_bytes()
    code, text = send(p.smtp_port, corpus)
    assert code == 250, (code, text)
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1, held
    assert held[0]["reason"] == "attachment: quarterly.docm (macro_document)", held
    assert (p.data / "quarantine" / held[0]["id"]).read_bytes().endswith(corpus)
    p.wait_queue_empty()
    assert raw.messages == []

    report = check(p, CORPUS / "macro-document.eml")
    [flagged] = report["checks"]["attachments"]["facts"]["flagged"]
    assert flagged["category"] == "macro_document" and flagged["action"] == "quarantine", flagged
    assert "vbaProject.bin" in flagged["sentence"], flagged
    assert report["decisions"][0]["action"] == "quarantine", report["decisions"]


def test_stripped_attachment_is_delivered_as_valid_mime_and_the_original_released_byte_identical(
        palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = appliance(palisade_factory, raw, executable="strip", double_extension="strip")
    corpus = (CORPUS / "double-extension.eml").read_bytes()
    code, text = send(p.smtp_port, corpus)
    assert code == 250, (code, text)
    wait_for(lambda: len(raw.messages) == 1, 30, what="the stripped copy delivered")
    delivered = raw.messages[0]["data"]

    # A valid MIME message: the text part as sent, the attachment replaced by the note.
    msg = email.message_from_bytes(delivered, policy=email.policy.default)
    assert msg.is_multipart() and msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert [q.get_content_type() for q in parts] == ["text/plain", "text/plain"], parts
    assert all(not q.defects for q in msg.walk()), [q.defects for q in msg.walk()]
    assert "Please pay the attached invoice" in parts[0].get_content()
    note = parts[1].get_content()
    assert 'removed the attachment "invoice.pdf.exe"' in note and "executable" in note, note
    assert parts[1].get_filename() is None
    assert b"invoice.pdf.exe\"\r\n" not in delivered  # no attachment header left
    assert b"TVoA" not in delivered  # the executable (base64 of "MZ\0") is gone
    # Untouched bytes: the header section and the first part are exactly as sent.
    head, _, _ = corpus.partition(b"--=_b1\r\nContent-Type: application/pdf")
    assert head in delivered

    # The original is held in quarantine for the recipient.
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1, held
    entry = held[0]
    assert entry["reason"] == "attachment stripped: invoice.pdf.exe (executable, double_extension)", entry
    assert [r["address"] for r in entry["recipients"]] == ["staff@raw.test"]
    held_bytes = (p.data / "quarantine" / entry["id"]).read_bytes()
    assert held_bytes.endswith(corpus)

    # Released: the original arrives, byte-identical.
    r = p.cli("quarantine", "release", entry["id"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(raw.messages) == 2, 30, what="the released original delivered")
    released = raw.messages[1]
    assert released["rcpts"] == ["staff@raw.test"]
    assert released["data"] == held_bytes
    p.wait_queue_empty()

    # `palisade check` with this configuration: delivered, with the strip edit explained.
    report = check(p, CORPUS / "double-extension.eml")
    a = report["checks"]["attachments"]["facts"]
    assert a["action"] == "strip", a
    assert sorted(f["category"] for f in a["flagged"]) == ["double_extension", "executable"], a
    assert all(f["path"] == "invoice.pdf.exe" and f["real_type"] == PE_MIME for f in a["flagged"]), a
    d = report["decisions"][0]
    assert d["action"] == "deliver", d
    [edit] = d["edits"]
    assert edit["action"] == "strip_parts" and edit["parts"][0]["name"] == "invoice.pdf.exe", edit
    assert any("Removed from the delivered copy" in e["sentence"] for e in d["explanations"]), d


def test_corpus_outcomes_with_the_default_configuration(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory()
    p = appliance(palisade_factory, raw)
    expected = {
        "executable-named-pdf.eml": ("reject", ["executable"]),
        "macro-document.eml": ("quarantine", ["macro_document"]),
        "double-extension.eml": ("reject", ["double_extension", "executable"]),
        "encrypted-zip.eml": ("quarantine", ["encrypted_archive"]),
        "eicar-zip-in-zip.eml": ("deliver", []),
    }
    for name, (action, categories) in expected.items():
        report = check(p, CORPUS / name)
        got = sorted(f["category"] for f in report["checks"]["attachments"]["facts"]["flagged"])
        assert (report["decisions"][0]["action"], got) == (action, categories), (name, report["checks"]["attachments"])
