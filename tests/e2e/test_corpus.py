"""The golden inbound corpus end to end: every message of tests/resources/inbound/*.eml goes
through a running Palisade with a real clamd (local signatures) and a real authoritative DNS
server (NSD serving tests/resources/inbound/dns/test.zone: SPF, DKIM keys, DMARC policies, a
URI blocklist), sent by smtplib from the loopback address and with the envelope its entry in
expected.json gives; `palisade check --json` of the same message with the same envelope gives
the same outcome, with the facts that entry names.

expected.json, for each file:
  envelope   client address (a loopback address), HELO name, MAIL FROM
  smtp       the reply code to DATA (250, 451, 550, 554)
  action     the pipeline's decision: deliver | quarantine | reject | tempfail
  reason     for quarantine: the start of the quarantine reason
  facts      "check.path": value — checks.<check>.facts.<path> of `palisade check --json`
             ("a[].b" is the list of b of every element of a)
  includes   "check.path": [values] — the path's list holds at least these
Every file in the directory must have an entry, and every entry a file.
"""

import json
import smtplib
import time
from pathlib import Path

import pytest

from authdns import Nsd
from clamav import Clamd, write_signatures
from harness import Palisade, RawSink, wait_for

CORPUS = Path(__file__).resolve().parents[1] / "resources" / "inbound"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    zone = (CORPUS / "dns" / "test.zone").read_text()
    # `example` too: the corpus's other senders get authoritative "no such domain" answers.
    with Nsd(tmp_path_factory.mktemp("nsd"), {"test": zone, "example": ""}) as d:
        yield d


@pytest.fixture(scope="module")
def appliance(dns_server, tmp_path_factory):
    raw = RawSink()
    clamd = Clamd("corpus")
    p = Palisade("corpus", {
        # Every loopback client is a stranger sending inbound mail.
        "smtp": {"trusted_networks": ["192.0.2.0/24"]},
        "dns": {"nameservers": [f"127.0.0.1:{dns_server.port}"]},
        "domain": [{"name": "raw.test", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "authentication": {"enabled": True, "dmarc_overrides": ["broken.test"],
                           "trusted_arc_sealers": ["list.test"]},
        # What a hospital sets: a password-protected archive is held for review (the default,
        # tempfail, is tested in test_antivirus.py).
        "antivirus": {"enabled": True, "clamd": clamd.address, "unscannable": "quarantine"},
        "spam": {"enabled": True,
                 "dnsbl": [{"zone": "uribl.test", "kind": "domain", "weight": 5.0}]},
    })
    try:
        p.start()
        p.cli("av", "update", str(write_signatures(tmp_path_factory.mktemp("sig"), "eicar")))
        clamd.start(p.data / "clamav")
        yield p, raw
    finally:
        p.cleanup()
        clamd.cleanup()
        raw.close()


def lookup(value, path: str):
    """`a.b[].c` of `value` (see the module's doc)."""
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        items = value.get(head[:-2]) or []
        return [lookup(i, rest) if rest else i for i in items]
    v = value.get(head) if isinstance(value, dict) else None
    return lookup(v, rest) if rest and v is not None else v


def check(p, name: str) -> dict:
    env = EXPECTED[name]["envelope"]
    return p.cli("check", str(CORPUS / name), "--json", "--client", env["client"],
                 "--helo", env["helo"], "--from", env["from"], "--to", "staff@raw.test",
                 json_out=True)


def send(p, name: str) -> tuple[int, str]:
    env = EXPECTED[name]["envelope"]
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60,
                      source_address=(env["client"], 0)) as s:
        s.ehlo(env["helo"])
        s.mail(env["from"])
        code, msg = s.rcpt("staff@raw.test")
        assert code == 250, (name, code, msg)
        try:
            code, msg = s.data((CORPUS / name).read_bytes())
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code, msg.decode(errors="replace")


def message_id(name: str) -> bytes:
    for line in (CORPUS / name).read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError(f"{name} has no Message-ID")


def test_every_corpus_file_has_an_expected_outcome():
    files = sorted(f.name for f in CORPUS.glob("*.eml"))
    assert files == sorted(EXPECTED), "tests/resources/inbound/expected.json and the .eml files differ"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_gives_the_expected_outcome(appliance, name):
    p, _ = appliance
    want = EXPECTED[name]
    report = check(p, name)
    decision = report["decisions"][0]
    assert decision["action"] == want["action"], (name, decision)
    # An accepted message's reply carries no code of the pipeline's: the spool's 250.
    assert report["smtp_reply"].get("code", 250) == want["smtp"], (name, report["smtp_reply"])
    if "reason" in want:
        reason = decision["disposition"].get("reason", "")
        assert reason.startswith(want["reason"]), (name, decision["disposition"])
    for path, value in want.get("facts", {}).items():
        check_name, _, rest = path.partition(".")
        got = lookup(report["checks"][check_name]["facts"], rest)
        assert got == value, (name, path, got, report["checks"][check_name])
    for path, values in want.get("includes", {}).items():
        check_name, _, rest = path.partition(".")
        got = lookup(report["checks"][check_name]["facts"], rest) or []
        missing = [v for v in values if v not in got]
        assert not missing, (name, path, missing, got)


def test_every_message_through_smtp(appliance):
    p, raw = appliance
    replies = {name: send(p, name) for name in sorted(EXPECTED)}
    for name, (code, text) in replies.items():
        assert code == EXPECTED[name]["smtp"], (name, code, text)

    delivered = [n for n in EXPECTED if EXPECTED[n]["action"] == "deliver"]
    held = [n for n in EXPECTED if EXPECTED[n]["action"] == "quarantine"]
    wait_for(lambda: len(raw.messages) >= len(delivered), 60, what="the deliveries")
    p.wait_queue_empty()
    time.sleep(0.5)
    got = [m["data"] for m in raw.messages]
    for name in EXPECTED:
        mid = message_id(name)
        copies = [d for d in got if mid in d.split(b"\r\n\r\n", 1)[0]]
        if name in delivered:
            assert len(copies) == 1, (name, len(copies))
            # Our authentication results are in what was delivered.
            head = copies[0].split(b"\r\n\r\n", 1)[0]
            assert b"\r\nAuthentication-Results: palisade.test;" in b"\r\n" + head, (name, head)
        else:
            assert copies == [], f"{name} was delivered"

    quarantine = p.cli("quarantine", "list", "--json", json_out=True)
    reasons = sorted(q["reason"] for q in quarantine)
    assert len(reasons) == len(held), (reasons, held)
    for name in held:
        want = EXPECTED[name]["reason"]
        assert any(r.startswith(want) for r in reasons), (name, want, reasons)
