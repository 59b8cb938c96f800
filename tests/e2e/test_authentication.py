"""Inbound authentication end to end: SPF, DKIM and DMARC of real messages against a real
authoritative DNS server (NSD serving a zone on a loopback port, configured as Palisade's
`[dns] nameservers`), messages signed by dkimpy with a key made by openssl, sent by
smtplib from chosen loopback addresses, delivered to a raw capture server.

Zone (all under .test, everything else under .test is NXDOMAIN):
  signed.test       SPF: only 127.0.0.2; DKIM key sel._domainkey; DMARC p=reject
  quarantined.test  SPF: only 127.0.0.2; DMARC p=quarantine
  broken.test       SPF: -all; DMARC p=reject; in authentication.dmarc_overrides
"""

import base64
import json
import smtplib
import subprocess
import time
from pathlib import Path

import dkim
import dns.resolver
import pytest

from authdns import Nsd, txt
from harness import wait_for

CORPUS = Path(__file__).resolve().parents[1] / "resources" / "inbound"
AUTHSERV = "palisade.test"  # the harness's system.hostname


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkim")
    key = d / "sel.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return key.read_bytes(), base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def dns_server(dkim_key, tmp_path_factory):
    _, public = dkim_key
    zone = "\n".join([
        "signed IN TXT " + txt("v=spf1 ip4:127.0.0.2 -all"),
        "sel._domainkey.signed IN TXT " + txt("v=DKIM1;k=rsa;p=" + public),
        "_dmarc.signed IN TXT " + txt("v=DMARC1; p=reject"),
        "quarantined IN TXT " + txt("v=spf1 ip4:127.0.0.2 -all"),
        "_dmarc.quarantined IN TXT " + txt("v=DMARC1; p=quarantine"),
        "broken IN TXT " + txt("v=spf1 -all"),
        "_dmarc.broken IN TXT " + txt("v=DMARC1; p=reject"),
    ])
    with Nsd(tmp_path_factory.mktemp("nsd"), {"test": zone}) as d:
        yield d.port


def dnsfunc(port):
    """dkimpy's key lookup, asking our DNS server."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port

    def lookup(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        answer = r.resolve(name.rstrip("."), "TXT")
        return b"".join(b"".join(rr.strings) for rr in answer)
    return lookup


@pytest.fixture
def appliance(palisade_factory, raw_sink_factory, dns_server):
    raw = raw_sink_factory()
    p = palisade_factory({
        # Loopback is an ordinary (inbound) client here, not a trusted network.
        "smtp": {"trusted_networks": ["192.0.2.0/24"]},
        "dns": {"nameservers": [f"127.0.0.1:{dns_server}"]},
        "domain": [{"name": "raw.test", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "authentication": {"enabled": True, "dmarc_overrides": ["broken.test"]},
    })
    return p, raw


def message(author, subject="Newsletter", body="Hello from the newsletter.\r\n", extra=""):
    return (
        f"{extra}"
        f"From: News <{author}>\r\n"
        "To: staff@raw.test\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{abs(hash((author, subject)))}@example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def sign(msg: bytes, key: bytes) -> bytes:
    sig = dkim.sign(msg, b"sel", b"signed.test", key,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + msg


def send(port, data, sender, source="127.0.0.1", helo="mail.signed.test"):
    """(code, text) of the reply to DATA, from `source` (a loopback address)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as s:
        s.ehlo(helo)
        s.mail(sender)
        code, msg = s.rcpt("staff@raw.test")
        assert code == 250, (code, msg)
        code, msg = s.data(data)
        return code, msg.decode()


def header_fields(raw: bytes, name: str) -> list[str]:
    """Unfolded values of every `name` field of the header section."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    fields, out = [], []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += " " + line.strip()
        else:
            fields.append(line)
    for f in fields:
        n, _, v = f.partition(":")
        if n.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def check(p, path, client, sender, helo="mail.signed.test"):
    return p.cli("check", str(path), "--json", "--client", client, "--helo", helo,
                 "--from", sender, "--to", "staff@raw.test", json_out=True)


def test_spf_and_dkim_pass_forged_results_removed_ours_on_top(appliance, dkim_key, dns_server):
    p, raw = appliance
    key, _ = dkim_key
    forged = (f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=signed.test\r\n"
              "Authentication-Results: upstream.example; spf=pass smtp.mailfrom=signed.test\r\n")
    data = sign(message("news@signed.test", extra=forged), key)

    code, text = send(p.smtp_port, data, "bounce@signed.test", source="127.0.0.2")
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
    got = raw.messages[0]["data"]

    ours = header_fields(got, "Authentication-Results")
    # Ours first (on top, above our Received), the forged one claiming our id gone, the
    # other authserv-id's left alone.
    assert got.startswith(f"Authentication-Results: {AUTHSERV};".encode()), got[:200]
    assert len([v for v in ours if v.startswith(AUTHSERV)]) == 1, ours
    assert any(v.startswith("upstream.example;") for v in ours), ours
    mine = ours[0]
    assert "spf=pass" in mine and "smtp.mailfrom=bounce@signed.test" in mine, mine
    assert "dkim=pass" in mine and "header.i=@signed.test" in mine and "header.s=sel" in mine, mine
    assert "dmarc=pass" in mine and "header.from=signed.test" in mine, mine
    # The signature still verifies on what was delivered: only fields above it were changed.
    assert dkim.verify(got, dnsfunc=dnsfunc(dns_server))

    # The same facts from the check, in tracking.
    queue_id = text.split()[-1]
    tracked = json.dumps(p.track(queue_id=queue_id))
    assert "authentication" in tracked


def test_dmarc_reject_spoofed_from_is_refused_at_data_and_never_delivered(appliance):
    p, raw = appliance
    spoofed = (CORPUS / "spoofed-from.eml").read_bytes()

    report = check(p, CORPUS / "spoofed-from.eml", "127.0.0.1", "billing@elsewhere.test")
    auth = report["checks"]["authentication"]
    facts = auth["facts"]
    assert facts["spf"] == {"result": "none", "domain": "elsewhere.test", "identity": "mailfrom",
                            "explanation": None}, facts
    assert facts["dkim"] == []
    assert facts["dmarc"]["result"] == "fail"
    assert facts["dmarc"]["policy"] == "reject"
    assert facts["dmarc"]["domain"] == "signed.test"
    assert facts["dmarc"]["aligned_by"] == []
    assert report["smtp_reply"]["result"] == "reject"
    assert report["smtp_reply"]["code"] == 550
    sentences = " ".join(e["sentence"] for e in report["decisions"][0]["explanations"])
    assert "failed DMARC" in sentences and "signed.test" in sentences, sentences

    code, text = send(p.smtp_port, spoofed, "billing@elsewhere.test", helo="spoofer.test")
    assert code == 550, text
    assert text.startswith("5.7.1") and "DMARC" in text and "signed.test" in text, text
    time.sleep(1)
    assert raw.messages == []
    assert p.queue() == []


def test_spf_fail_and_a_tampered_body_fail_dmarc(appliance, dkim_key, tmp_path):
    p, raw = appliance
    key, _ = dkim_key
    signed = sign(message("news@signed.test"), key)
    tampered = signed.replace(b"Hello from the newsletter.", b"Send the wire to IBAN X.")
    path = tmp_path / "tampered.eml"
    path.write_bytes(tampered)

    # From an address signed.test's SPF does not list, with signed.test as envelope sender.
    report = check(p, path, "127.0.0.1", "bounce@signed.test")
    facts = report["checks"]["authentication"]["facts"]
    assert facts["spf"]["result"] == "fail", facts
    # mail-auth calls a body hash mismatch "neutral" (the signature was not evaluated); either
    # way it is not a pass and cannot align.
    (sig,) = facts["dkim"]
    assert (sig["result"], sig["domain"], sig["selector"]) == ("neutral", "signed.test", "sel"), sig
    assert "body hash" in sig["error"], sig
    assert facts["dmarc"]["result"] == "fail"
    assert "spf=fail" in facts["header"] and "dkim=neutral" in facts["header"], facts["header"]

    # The untouched message from the same place passes by DKIM alone.
    path.write_bytes(signed)
    facts = check(p, path, "127.0.0.1", "bounce@signed.test")["checks"]["authentication"]["facts"]
    assert facts["spf"]["result"] == "fail"
    assert facts["dkim"][0]["result"] == "pass"
    assert facts["dmarc"]["result"] == "pass" and facts["dmarc"]["aligned_by"] == ["dkim"]

    code, text = send(p.smtp_port, tampered, "bounce@signed.test")
    assert code == 550, text
    assert raw.messages == []


def test_dmarc_quarantine_is_held(appliance):
    p, raw = appliance
    code, text = send(p.smtp_port, message("offers@quarantined.test"), "offers@elsewhere.test")
    assert code == 250, text
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1, held
    assert held[0]["reason"] == "dmarc: quarantined.test p=quarantine", held
    # The held copy carries our results too.
    copy = (p.data / "quarantine" / held[0]["id"]).read_bytes()
    (mine,) = header_fields(copy, "Authentication-Results")
    assert "dmarc=fail" in mine and "policy.dmarc=quarantine" in mine, mine
    time.sleep(1)
    assert raw.messages == []


def test_override_domain_is_delivered_with_its_failure_recorded(appliance):
    p, raw = appliance
    data = (CORPUS / "dmarc-override.eml").read_bytes()
    report = check(p, CORPUS / "dmarc-override.eml", "127.0.0.1", "list@broken.test")
    facts = report["checks"]["authentication"]["facts"]
    assert facts["spf"]["result"] == "fail"
    assert facts["dmarc"]["result"] == "fail" and facts["dmarc"]["action"] == "override", facts
    assert report["decisions"][0]["action"] == "deliver"
    assert report["decisions"][0]["monitored"], report["decisions"][0]

    code, text = send(p.smtp_port, data, "list@broken.test", helo="lists.broken.test")
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
    (mine,) = header_fields(raw.messages[0]["data"], "Authentication-Results")
    assert "spf=fail" in mine and "dmarc=fail" in mine and "policy.dmarc=reject" in mine, mine


def test_trusted_network_mail_is_not_evaluated(palisade_factory, raw_sink_factory, dns_server):
    raw = raw_sink_factory()
    p = palisade_factory({
        "dns": {"nameservers": [f"127.0.0.1:{dns_server}"]},
        "authentication": {"enabled": True},
        "domain": [{"name": "raw.test", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
    })
    # Loopback is on the default trusted networks: outbound, skipped, nothing added.
    code, text = send(p.smtp_port, (CORPUS / "spoofed-from.eml").read_bytes(), "billing@elsewhere.test")
    assert code == 250, text
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
    assert header_fields(raw.messages[0]["data"], "Authentication-Results") == []
    report = p.cli("check", str(CORPUS / "spoofed-from.eml"), "--json", "--direction", "out",
                   "--to", "staff@raw.test", json_out=True)
    auth = json.dumps(report["checks"]["authentication"])
    assert "skipped" in auth and "only inbound mail is authenticated" in auth, auth
