"""Gateway S/MIME (issue 13): an outbound message that a rule encrypts leaves encrypted to the
partner's certificate and signed with the gateway's key — `openssl cms` decrypts and verifies
what the sink received; a recipient with no certificate and no enforced TLS is held, never
sent in clear. Keys and partners are set up with `palisade keys` / `palisade partner`."""

import smtplib
import subprocess

from harness import wait_for

BODY = "Referral for patient 943 476 5919, see attached.\r\n"


def openssl(*args, cwd, check=True):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_encrypt_rule_sends_smime_to_partners_and_holds_the_rest(palisade_factory, raw_sink_factory, tmp_path):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "partner.key", "-out", "partner.pem",
            "-days", "2", "-subj", "/CN=Partner Registry",
            "-addext", "subjectAltName=email:registry@partner.test",
            "-addext", "extendedKeyUsage=emailProtection", cwd=tmp_path)
    sink = raw_sink_factory()
    p = palisade_factory({
        "route": [
            {"domain": "partner.test", "smarthosts": [f"127.0.0.1:{sink.port}"]},
            {"domain": "nokey.test", "smarthosts": [f"127.0.0.1:{sink.port}"]},
            {"domain": "other.test", "smarthosts": [f"127.0.0.1:{sink.port}"]},
            {"domain": "partner2.test", "smarthosts": [f"127.0.0.1:{sink.port}"]},
        ],
        "filter": {"rule": [{
            "name": "encrypt referrals", "direction": "outbound", "action": "encrypt",
            "recipients": ["*@partner.test", "*@nokey.test"], "reason": "referrals leave encrypted",
        }]},
    })
    out = p.cli("keys", "generate", "--name", "Example Hospital gateway", "--email", "gateway@example.test").stdout
    assert "fingerprint" in out, out
    key = p.data / "keys" / "smime" / "gateway.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "gateway.pem").write_text(p.cli("keys", "export").stdout)
    assert "BEGIN CERTIFICATE" in (tmp_path / "gateway.pem").read_text()
    assert "PRIVATE" not in (tmp_path / "gateway.pem").read_text()

    # A certificate that is not one is refused, naming the field; nothing changes.
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = p.cli("partner", "add", "Bad", "--domain", "partner.test", "--smime-cert", str(tmp_path / "bad.pem"), check=False)
    assert r.returncode == 64 and "partner[0].smime[0]" in r.stderr, r.stderr
    p.cli("partner", "add", "Partner Registry", "--domain", "partner.test", "--domain", "partner2.test",
          "--smime-cert", str(tmp_path / "partner.pem"))
    listed = p.cli("partner", "list", "--json", json_out=True)
    assert listed[0]["name"] == "Partner Registry"
    assert listed[0]["certificates"][0]["emails"] == ["registry@partner.test"]

    msg = ("From: Dr Ada <ada@example.test>\r\nTo: registry@partner.test, ward@nokey.test, x@other.test\r\n"
           "Subject: Referral\r\nMessage-ID: <ref-1@example.test>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n" + BODY)
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail("ada@example.test", ["registry@partner.test", "ward@nokey.test", "x@other.test"], msg)

    wait_for(lambda: len(sink.messages) == 2, 30, interval=0.5, what="two deliveries")
    by_rcpt = {m["rcpts"][0]: m["data"] for m in sink.messages}
    assert set(by_rcpt) == {"registry@partner.test", "x@other.test"}, by_rcpt.keys()
    # Not an encrypt recipient: as sent.
    assert b"943 476 5919" in by_rcpt["x@other.test"]
    enc = by_rcpt["registry@partner.test"]
    assert b"943 476 5919" not in enc and b"application/pkcs7-mime" in enc
    assert b"Subject: Referral" in enc
    (tmp_path / "enc.eml").write_bytes(enc)
    openssl("cms", "-decrypt", "-in", "enc.eml", "-recip", "partner.pem", "-inkey", "partner.key",
            "-out", "signed.eml", cwd=tmp_path)
    openssl("cms", "-verify", "-in", "signed.eml", "-CAfile", "gateway.pem", "-purpose", "smimesign",
            "-out", "content.eml", cwd=tmp_path)
    content = (tmp_path / "content.eml").read_bytes()
    assert b"Content-Type: text/plain; charset=utf-8" in content and b"943 476 5919" in content

    # A changed byte in the signed part: openssl refuses it.
    signed = (tmp_path / "signed.eml").read_bytes()
    (tmp_path / "tampered.eml").write_bytes(signed.replace(b"943 476 5919", b"943 476 5918"))
    r = openssl("cms", "-verify", "-in", "tampered.eml", "-CAfile", "gateway.pem", "-purpose", "smimesign",
                cwd=tmp_path, check=False)
    assert r.returncode != 0

    # No certificate, no enforced TLS: held, never delivered in clear.
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1 and held[0]["reason"].startswith("encryption pending"), held
    assert "ward@nokey.test" in str(held[0]), held
    tracked = p.track(message_id="ref-1@example.test")
    assert "Encrypted with S/MIME for Partner Registry" in str(tracked), tracked

    # No rule, but the sender typed [secure]: the external recipient's copy is encrypted, the
    # internal one is not, and neither carries the tag.
    msg = ("From: Dr Ada <ada@example.test>\r\nTo: y@partner2.test, ward7@example.test\r\n"
           "Subject: [SECURE] Results\r\nMessage-ID: <ref-2@example.test>\r\n\r\n" + BODY)
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail("ada@example.test", ["y@partner2.test", "ward7@example.test"], msg)
    wait_for(lambda: len(sink.messages) == 3, 30, interval=0.5, what="the tagged message")
    enc = sink.messages[2]["data"]
    assert sink.messages[2]["rcpts"] == ["y@partner2.test"]
    assert b"application/pkcs7-mime" in enc and b"943 476 5919" not in enc
    assert b"\r\nSubject: Results\r\n" in enc, enc[:600]
    wait_for(lambda: p.mailbox(), 30, interval=0.5, what="the internal copy")
    internal = p.mailbox()[0]
    assert b"\nSubject: Results\n" in internal and b"943 476 5919" in internal
    assert b"[SECURE]" not in internal
