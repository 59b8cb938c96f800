"""Gateway OpenPGP (issue 13): mail a rule encrypts for a partner that prefers OpenPGP leaves
as PGP/MIME (RFC 3156) — `gpg --decrypt` on what the sink received gets the content back and a
good signature by the gateway's key; what `gpg --encrypt --sign` makes for the gateway (in
PGP/MIME or inline) arrives decrypted with its signature checked against the partner's key."""

import smtplib
import subprocess

from harness import wait_for

BODY = "Referral for patient 943 476 5919.\r\n"


def gpg(home, *args, data=None):
    r = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--trust-model", "always",
                        "--status-fd", "2", *args], input=data, capture_output=True, timeout=120)
    return r


def partner_home(tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    r = gpg(home, "--passphrase", "", "--quick-gen-key", "Registry <registry@partner.test>", "default", "default", "2d")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    (tmp_path / "partner.asc").write_bytes(gpg(home, "--armor", "--export", "registry@partner.test").stdout)
    return home


def test_outbound_pgp_mime_that_gpg_decrypts_and_verifies(palisade_factory, raw_sink_factory, tmp_path):
    home = partner_home(tmp_path)
    sink = raw_sink_factory()
    p = palisade_factory({
        "route": [{"domain": "partner.test", "smarthosts": [f"127.0.0.1:{sink.port}"]}],
        "filter": {"rule": [{"name": "encrypt to partners", "direction": "outbound", "action": "encrypt",
                             "recipients": ["*@partner.test"], "reason": "clinical mail"}]},
    })
    out = p.cli("keys", "generate", "--name", "Example gateway", "--email", "gateway@example.test").stdout
    assert "OpenPGP" in out, out
    secret = p.data / "keys" / "openpgp" / "gateway.sec.asc"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    public = p.cli("keys", "export", "--openpgp").stdout
    assert "BEGIN PGP PUBLIC KEY BLOCK" in public and "PRIVATE" not in public
    shown = p.cli("keys", "show", "--json", json_out=True)
    fpr = shown["openpgp"]["fingerprint"]
    assert shown["openpgp"]["emails"] == ["gateway@example.test"], shown
    assert gpg(home, "--import", data=public.encode()).returncode == 0

    # A secret key where a public one belongs is refused, naming the field.
    r = p.cli("partner", "add", "Bad", "--domain", "partner.test", "--pgp-key", str(secret), check=False)
    assert r.returncode == 64 and "partner[0].pgp" in r.stderr, r.stderr
    p.cli("partner", "add", "Registry", "--domain", "partner.test", "--pgp-key", str(tmp_path / "partner.asc"),
          "--prefer", "pgp")
    listed = p.cli("partner", "list", "--json", json_out=True)
    assert listed[0]["prefer"] == "pgp" and listed[0]["openpgp"][0]["emails"] == ["registry@partner.test"], listed

    msg = ("From: Dr Ada <ada@example.test>\r\nTo: registry@partner.test\r\nSubject: Referral\r\n"
           "Message-ID: <pgp-1@example.test>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n" + BODY)
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail("ada@example.test", ["registry@partner.test"], msg)
    wait_for(lambda: sink.messages, 30, interval=0.5, what="the encrypted delivery")
    enc = sink.messages[0]["data"]
    assert b"943 476 5919" not in enc and b"Subject: Referral" in enc
    assert b'multipart/encrypted; protocol="application/pgp-encrypted"' in enc, enc[:800]
    r = gpg(home, "--decrypt", data=enc)
    status = r.stderr.decode(errors="replace")
    assert r.returncode == 0, status
    assert "[GNUPG:] DECRYPTION_OKAY" in status and "[GNUPG:] GOODMDC" in status, status
    assert any(l.startswith("[GNUPG:] VALIDSIG ") and l.endswith(fpr) for l in status.splitlines()), status
    assert b"Content-Type: text/plain; charset=utf-8" in r.stdout and b"943 476 5919" in r.stdout
    assert "Encrypted with OpenPGP for Registry" in str(p.track(message_id="pgp-1@example.test"))


def test_inbound_openpgp_from_gpg_is_decrypted_and_verified(palisade_factory, tmp_path):
    home = partner_home(tmp_path)
    p = palisade_factory({"smtp": {"trusted_networks": ["192.0.2.0/24"]}})
    p.cli("keys", "generate", "--name", "Example gateway", "--email", "gateway@example.test")
    assert gpg(home, "--import", data=p.cli("keys", "export", "--openpgp").stdout.encode()).returncode == 0
    p.cli("partner", "add", "Registry", "--domain", "partner.test", "--pgp-key", str(tmp_path / "partner.asc"))

    entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\nDischarge summary for patient 943 476 5919.\r\n"
    r = gpg(home, "--encrypt", "--sign", "--armor", "-r", "gateway@example.test", "-u", "registry@partner.test",
            data=entity)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    armored = r.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = (b"From: Registry <registry@partner.test>\r\nTo: ward7@example.test\r\nSubject: Discharge\r\n"
            b"Message-ID: <%s@partner.test>\r\n")
    pgp_mime = (head % b"pgp-in-1" + b"MIME-Version: 1.0\r\n"
                b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"\r\n\r\n'
                b"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
                b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"\r\n--b1--\r\n")
    # Inline: gpg's output as the body of a plain message (the text itself encrypted).
    r = gpg(home, "--encrypt", "--sign", "--armor", "-r", "gateway@example.test", "-u", "registry@partner.test",
            data=b"Results attached to the record.\n")
    inline = head % b"pgp-in-2" + b"\r\n" + r.stdout.replace(b"\n", b"\r\n")
    # Encrypted to the partner itself, not to us: passed on as it is.
    r = gpg(home, "--encrypt", "--armor", "-r", "registry@partner.test", data=b"private\n")
    other = head % b"pgp-in-3" + b"\r\n" + r.stdout.replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        for m in (pgp_mime, inline, other):
            s.sendmail("registry@partner.test", ["ward7@example.test"], m)
    wait_for(lambda: len(p.mailbox()) == 3, 30, interval=0.5, what="three deliveries")
    box = {mid: m for m in p.mailbox() for mid in (b"pgp-in-1", b"pgp-in-2", b"pgp-in-3") if mid in m}

    got = box[b"pgp-in-1"]
    assert b"Discharge summary for patient 943 476 5919." in got and b"BEGIN PGP MESSAGE" not in got, got[:900]
    assert b"Content-Type: text/plain; charset=utf-8" in got
    assert (b"x-pgp=pass (decrypted openpgp aes-256; signer trusted: partner) "
            b"body.x-pgp-identifier=registry@partner.test") in got, got[:900].decode(errors="replace").split("\n")[2]
    got = box[b"pgp-in-2"]
    assert b"Results attached to the record." in got and b"BEGIN PGP MESSAGE" not in got, got[:900]
    assert b"x-pgp=pass" in got
    got = box[b"pgp-in-3"]
    assert b"BEGIN PGP MESSAGE" in got
    assert b"x-pgp=none (encrypted to another recipient, not opened)" in got, got[:900]
