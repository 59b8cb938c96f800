"""The spam check end to end: a running Palisade scoring real SMTP traffic, with DNS lists
served by a real DNS server (NSD on a loopback port as `[dns] nameservers`), the Bayes
classifier trained with `palisade learn` from a corpus built for the project
(tests/lib/corpus.py), and `palisade check` giving the same rules with their weights.

Zones (everything else under .test is NXDOMAIN):
  bl.test     IP list: 192.0.2.66 is listed (127.0.0.2), 192.0.2.67 answers 127.255.255.254
              (an error code, which must not count)
  uribl.test  domain list: listed-spam.test is listed
  wl.test     IP allowlist: 192.0.2.80 is listed (negative weight)
"""

import json
import smtplib
import time

import pytest

from corpus import make_corpus
from authdns import Nsd
from harness import wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    zone = "\n".join([
        "66.2.0.192.bl IN A 127.0.0.2",
        # An error answer of a list (RFC 5782 127.255.255.x): never a listing.
        "67.2.0.192.bl IN A 127.255.255.254",
        "listed-spam.test.uribl IN A 127.0.0.2",
        "80.2.0.192.wl IN A 127.0.0.3",
    ])
    with Nsd(tmp_path_factory.mktemp("nsd"), {"test": zone}) as d:
        yield d.port


def spam_config(dns_port, **extra):
    spam = {
        "enabled": True,
        "bayes_min_spam": 20, "bayes_min_ham": 20,
        "dnsbl": [
            {"zone": "bl.test", "kind": "ip", "weight": 4.0},
            {"zone": "uribl.test", "kind": "domain", "weight": 9.0},
            {"zone": "wl.test", "kind": "ip", "weight": -3.0},
        ],
    }
    spam.update(extra)
    return {
        # Loopback is an ordinary (inbound) client here, not a trusted network.
        "smtp": {"trusted_networks": ["192.0.2.0/24"]},
        "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
        "spam": spam,
    }


def message(subject="Clinic rota", body="See you at the ward round.\r\n", extra="",
            sender="alice@example.org", msgid=None):
    return (
        f"{extra}From: Alice <{sender}>\r\nTo: staff@example.test\r\nSubject: {subject}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: <{msgid or abs(hash((subject, body)))}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}"
    ).encode()


def send(p, data, sender="alice@example.org", helo="mail.example.org"):
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60) as s:
        s.ehlo(helo)
        s.mail(sender)
        code, msg = s.rcpt("staff@example.test")
        assert code == 250, (code, msg)
        code, msg = s.data(data)
        return code, msg.decode(errors="replace")


def check(p, path, *args):
    r = p.cli("check", str(path), "--json", *args, json_out=True)
    return r["checks"]["spam"]


def rule_names(spam):
    return [r["name"] for r in spam["facts"]["rules"]]


def test_gtube_is_refused_at_data_and_nothing_is_kept(palisade_factory, dns_server):
    p = palisade_factory(spam_config(dns_server))
    code, text = send(p, message(body=f"test {GTUBE}\r\n"))
    assert code == 550, (code, text)
    assert "spam" in text
    code, _ = send(p, message(subject="Normal", body="An ordinary note.\r\n"))
    assert code == 250
    wait_for(lambda: len(p.mailbox()) == 1, 30, what="the ordinary message delivered")
    delivered = p.mailbox()[0]
    assert b"GTUBE" not in delivered
    assert b"X-Spam-Flag" not in delivered  # below every threshold: not marked
    # Tracking has the refusal with the rule that made it.
    rejected = [m for m in p.track() if m.get("status") == "rejected"]
    assert rejected, p.track()


def test_dns_lists_count_with_their_weights_and_error_answers_do_not(
        palisade_factory, dns_server, tmp_path):
    p = palisade_factory(spam_config(dns_server))
    f = tmp_path / "m.eml"
    f.write_bytes(message())
    listed = check(p, f, "--client", "192.0.2.66")
    assert "DNSBL_BL_TEST" in rule_names(listed), listed
    hit = [r for r in listed["facts"]["rules"] if r["name"] == "DNSBL_BL_TEST"][0]
    assert hit["weight"] == 4.0 and "192.0.2.66" in hit["sentence"]
    error_code = check(p, f, "--client", "192.0.2.67")
    assert "DNSBL_BL_TEST" not in rule_names(error_code)
    answers = [d for d in error_code["facts"]["dnsbl"] if d["zone"] == "bl.test"]
    assert answers[0]["answers"] == ["127.255.255.254"] and not answers[0]["listed"]
    allowed = check(p, f, "--client", "192.0.2.80")
    assert "DNSBL_WL_TEST" in rule_names(allowed)
    assert allowed["facts"]["score"] == -3.0
    # --no-dns leaves the lists out.
    quiet = check(p, f, "--client", "192.0.2.66", "--no-dns")
    assert quiet["facts"]["dnsbl"] == []

    # Through SMTP: a link to a listed domain puts the message in quarantine with its reason.
    code, _ = send(p, message(subject="Offer", body="Visit https://www.listed-spam.test/deal now\r\n"))
    assert code == 250
    held = wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True), 30,
                    what="the message held")
    assert held[0]["reason"].startswith("spam: score 9"), held
    assert p.mailbox() == []


def test_bayes_learns_from_the_command_line_and_scores_new_mail(palisade_factory, dns_server, tmp_path):
    p = palisade_factory(spam_config(dns_server, add_header=2.0, tag_subject=4.0, quarantine=50.0,
                                     reject=100.0))
    train = make_corpus(40, 40, seed=7)
    for label in ("spam", "ham"):
        (tmp_path / label).mkdir()
    for i, (label, raw) in enumerate(train):
        (tmp_path / label / f"{i}.eml").write_bytes(raw)
    # An mbox of ham too (the format mail clients export).
    mbox = tmp_path / "ham.mbox"
    with open(mbox, "wb") as fh:
        for i, (label, raw) in enumerate(make_corpus(0, 5, seed=8)):
            fh.write(b"From someone@example Mon Jan  1 00:00:00 2026\n" + raw.replace(b"\nFrom ", b"\n>From ") + b"\n")
    out = p.cli("learn", "--spam", str(tmp_path / "spam"), "--json", json_out=True)
    assert out["learned"]["new"] == 40 and out["totals"]["spam"] == 40, out
    out = p.cli("learn", "--ham", str(tmp_path / "ham"), str(mbox), "--json", json_out=True)
    assert out["learned"]["new"] == 45 and out["totals"]["ham"] == 45, out
    again = p.cli("learn", "--ham", str(mbox), "--json", json_out=True)
    assert again["learned"]["already_known"] == 5 and again["learned"]["new"] == 0
    # Audited.
    audit = p.cli("audit", "list", "--json", json_out=True)
    assert any(e["action"] == "spam.learn" for e in audit), audit[:3]

    fresh = make_corpus(10, 10, seed=99)  # never learned
    spam = [raw for label, raw in fresh if label == "spam"]
    ham = [raw for label, raw in fresh if label == "ham"]
    for raw in spam[:3] + ham[:3]:
        code, text = send(p, raw, sender="x@example.org")
        assert code == 250, text
    wait_for(lambda: len(p.mailbox()) == 6, 30, what="six messages delivered")
    flagged = [m for m in p.mailbox() if b"X-Spam-Flag: YES" in m]
    tagged = [m for m in flagged if b"Subject: [SPAM]" in m]
    assert len(flagged) == 3, [m[:400] for m in p.mailbox()]
    assert len(tagged) == 3
    for m in flagged:
        status = [l for l in m.splitlines() if l.startswith(b"X-Spam-Status:")][0]
        assert b"BAYES_99" in status or b"BAYES_95" in status, status
    # palisade check explains the probability.
    f = tmp_path / "probe.eml"
    f.write_bytes(ham[4])
    facts = check(p, f)["facts"]
    assert facts["bayes"]["state"] == "scored", facts
    assert facts["bayes"]["probability"] < 0.2, facts
    # Learning needs a class and something readable.
    r = p.cli("learn", str(f), check=False)
    assert r.returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    r = p.cli("learn", "--spam", str(empty), check=False)
    assert r.returncode == 65


def test_spam_headers_from_outside_are_replaced(palisade_factory, dns_server):
    p = palisade_factory(spam_config(dns_server))
    raw = message(extra="X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=99\r\n", subject="Hi",
                  body="Lunch on Friday?\r\n")
    code, _ = send(p, raw)
    assert code == 250
    wait_for(lambda: len(p.mailbox()) == 1, 30, what="delivered")
    m = p.mailbox()[0]
    assert b"X-Spam-Flag" not in m and b"X-Spam-Status" not in m, m[:600]
