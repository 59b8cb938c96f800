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


def _identity(tmp_path, name, email):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=email:{email}",
            "-addext", "extendedKeyUsage=emailProtection", cwd=tmp_path)


def _send_in(p, msg: bytes):
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail("ada@partner.test", ["ward7@example.test"], msg)


OUTER = ("From: Ada <ada@partner.test>\r\nTo: ward7@example.test\r\nSubject: {subject}\r\n"
         "Message-ID: <{mid}@partner.test>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n")
ENTITY = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
          "Discharge summary for patient 943 476 5919.\r\n")


def test_inbound_smime_is_decrypted_verified_and_failures_are_never_clean(palisade_factory, tmp_path):
    """What `openssl cms -sign` then `-encrypt` makes for the gateway arrives decrypted, its
    signature checked against the partner's certificate (Authentication-Results smime=pass);
    an altered signature is reported as failed and marked; ciphertext for the gateway that
    cannot be opened is held; mail encrypted to someone else passes as it is, said so."""
    _identity(tmp_path, "sender", "ada@partner.test")
    _identity(tmp_path, "someone", "someone@example.test")
    p = palisade_factory({"smtp": {"trusted_networks": ["192.0.2.0/24"]}})
    p.cli("keys", "generate", "--name", "Example gateway", "--email", "gateway@example.test")
    (tmp_path / "gateway.pem").write_text(p.cli("keys", "export").stdout)
    p.cli("partner", "add", "Partner", "--domain", "partner.test", "--smime-cert", str(tmp_path / "sender.pem"))
    (tmp_path / "entity.mime").write_text(ENTITY, newline="")
    openssl("cms", "-sign", "-in", "entity.mime", "-signer", "sender.pem", "-inkey", "sender.key",
            "-out", "signed.mime", cwd=tmp_path)
    openssl("cms", "-encrypt", "-aes256", "-in", "signed.mime", "-out", "enc.mime", "gateway.pem", cwd=tmp_path)
    openssl("cms", "-encrypt", "-aes256", "-in", "signed.mime", "-out", "other.mime", "someone.pem", cwd=tmp_path)

    def message(subject, mid, body_file):
        return OUTER.format(subject=subject, mid=mid).encode() + (tmp_path / body_file).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    # 1. Signed and encrypted to the gateway: decrypted, verified, delivered readable.
    enc = message("Discharge", "in-1", "enc.mime")
    (tmp_path / "in-1.eml").write_bytes(enc)
    assert b"943 476 5919" not in enc
    _send_in(p, enc)
    wait_for(lambda: len(p.mailbox()) == 1, 30, interval=0.5, what="the decrypted message")
    got = p.mailbox()[0]
    assert b"943 476 5919" in got and b"enveloped-data" not in got, got[:800]
    assert b"multipart/signed" in got, "the signature stays for the recipient's client"
    ar = [l for l in got.split(b"\n") if l.startswith(b"Authentication-Results: palisade.test; smime=")]
    assert len(ar) == 1, got[:1500]
    assert b"smime=pass (decrypted aes256-cbc; signer trusted: partner) body.smime-identifier=ada@partner.test" in ar[0], ar
    tracked = p.track(message_id="in-1@partner.test")
    assert '"decryption":"decrypted"' in str(tracked), tracked
    # `palisade check` opens it the same way, and its checks read the decrypted content.
    report = p.cli("check", str(tmp_path / "in-1.eml"), "--json", json_out=True)
    assert report["checks"]["encryption"]["facts"]["decryption"] == "decrypted", report["checks"]["encryption"]
    assert report["checks"]["encryption"]["facts"]["result"] == "pass"
    assert any("text/plain" in str(part) for part in report["parts"]), report["parts"]

    # 2. Signed in the clear, altered on the way: delivered marked, the failure recorded.
    signed = message("Results", "in-2", "signed.mime")
    _send_in(p, signed.replace(b"943 476 5919", b"943 476 5918"))
    wait_for(lambda: len(p.mailbox()) == 2, 30, interval=0.5, what="the altered message")
    got = [m for m in p.mailbox() if b"in-2@partner.test" in m][0]
    assert b"smime=fail (signature does not verify)" in got, got[:1500]
    assert b"Subject: [signature failed] Results" in got
    # The same message unaltered: pass, untagged.
    _send_in(p, signed.replace(b"in-2@", b"in-3@"))
    wait_for(lambda: len(p.mailbox()) == 3, 30, interval=0.5, what="the signed message")
    got = [m for m in p.mailbox() if b"in-3@partner.test" in m][0]
    assert b"smime=pass (signer trusted: partner)" in got and b"[signature failed]" not in got, got[:1500]

    # 3. Encrypted to the gateway but damaged: held, never delivered as if it were clean.
    text = enc.decode().rstrip()
    broken = (text[:-60] + "\r\n").replace("in-1@", "in-4@").encode()
    _send_in(p, broken)
    wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True), 30, interval=0.5, what="the hold")
    held = p.cli("quarantine", "list", "--json", json_out=True)
    assert len(held) == 1 and held[0]["reason"] == "smime: decrypt_failure", held
    assert not any(b"in-4@partner.test" in m for m in p.mailbox())

    # 4. Encrypted to a person's own certificate: passed on as it is, said so.
    _send_in(p, message("Personal", "in-5", "other.mime"))
    wait_for(lambda: len(p.mailbox()) == 4, 30, interval=0.5, what="the personal message")
    got = [m for m in p.mailbox() if b"in-5@partner.test" in m][0]
    assert b"enveloped-data" in got
    assert b"smime=none (encrypted to another recipient, not opened)" in got, got[:1500]
