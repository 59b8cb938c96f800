"""DKIM signing of outbound mail end to end: keys made by `palisade dkim generate` (RSA-2048
and Ed25519), the record it prints served by a real DNS server (NSD), mail from a trusted
client signed by the engine and verified by dkimpy (an independent implementation) against
that DNS; `palisade dkim list` tells a published key from one that is not; inbound mail and
mail of other domains are not signed."""

import base64
import os
import smtplib
import subprocess
import time

import dkim
import pytest

from authdns import Nsd, txt
from harness import wait_for


def message(author="alice@example.test", subject="Clinic rota", body="See you at the ward round.\r\n"):
    return (
        f"From: Alice <{author}>\r\nTo: Bob <bob@partner.test>\r\nSubject: {subject}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: <{abs(hash((author, subject)))}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}"
    ).encode()


def send(p, data, sender="alice@example.test"):
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60) as s:
        s.ehlo("ward-pc.example.test")
        s.mail(sender)
        code, msg = s.rcpt("bob@partner.test")
        assert code == 250, (code, msg)
        code, msg = s.data(data)
        assert code == 250, (code, msg)


def signatures(raw: bytes) -> int:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in head.split(b"\r\n") if line.lower().startswith(b"dkim-signature:"))


def verify_all(raw: bytes, resolver) -> list[bool]:
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        answer = resolver.resolve(name.rstrip("."), "TXT")
        return b"".join(b"".join(rr.strings) for rr in answer)

    def one(i):
        try:
            return dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException:
            return False

    return [one(i) for i in range(signatures(raw))]


@pytest.fixture
def signing(palisade_factory, raw_sink_factory, tmp_path):
    raw = raw_sink_factory()
    dns = Nsd(tmp_path / "nsd", {})
    p = palisade_factory({
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"]},
        "route": [{"domain": "partner.test", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
    })
    rsa = p.cli("dkim", "generate", "example.test", "--sign", "--json", json_out=True)
    ed = p.cli("dkim", "generate", "example.test", "--algorithm", "ed25519", "--selector", "e1",
               "--sign", "--json", json_out=True)
    # Only the RSA key's record is published; the Ed25519 one is not (yet).
    name = rsa["name"].removesuffix(".example.test")
    dns.zones = {"example.test": f"{name} IN TXT {txt(rsa['record'])}\n"}
    dns.start()
    yield p, raw, dns, rsa, ed
    dns.stop()


def test_outbound_mail_is_signed_with_both_keys_and_verifies(signing):
    p, raw, dns, rsa, ed = signing
    assert rsa["algorithm"] == "rsa-sha256" and ed["algorithm"] == "ed25519-sha256"
    assert rsa["record"].startswith("v=DKIM1; k=rsa; p=MII"), rsa
    for k in (rsa, ed):
        assert os.stat(k["key_file"]).st_mode & 0o777 == 0o600, k
    # Never replaced: the same selector again is refused.
    again = p.cli("dkim", "generate", "example.test", "--selector", rsa["selector"], check=False)
    assert again.returncode != 0 and "never replaced" in again.stderr, again.stderr

    send(p, message())
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
    got = raw.messages[0]["data"]
    assert signatures(got) == 2, got[:600]
    head = got.split(b"\r\n\r\n", 1)[0].decode()
    assert f"s={rsa['selector']}" in head and "s=e1" in head, head
    # Publish the Ed25519 record too, then both verify with dkimpy.
    dns.stop()
    dns.zones = {"example.test": "\n".join([
        f"{rsa['name'].removesuffix('.example.test')} IN TXT {txt(rsa['record'])}",
        f"e1._domainkey IN TXT {txt(ed['record'])}",
    ])}
    dns.start()
    assert verify_all(got, dns.resolver()) == [True, True]
    # A changed body does not verify: the check above can fail.
    tampered = got.replace(b"See you at the ward round.", b"See you at the bank.")
    assert verify_all(tampered, dns.resolver()) == [False, False]


def test_list_tells_published_from_missing_and_check_explains(signing, tmp_path):
    p, raw, dns, rsa, ed = signing
    listed = {k["selector"]: k for k in p.cli("dkim", "list", "--json", json_out=True)}
    assert listed[rsa["selector"]]["dns"] == "published", listed
    assert listed["e1"]["dns"] == "missing", listed
    assert all(k["signing"] for k in listed.values())

    f = tmp_path / "m.eml"
    f.write_bytes(message())
    out = p.cli("check", str(f), "--direction", "out", "--json", json_out=True)["checks"]["dkim"]
    assert out["facts"]["status"] == "signed", out
    assert sorted(s["selector"] for s in out["facts"]["signatures"]) == sorted([rsa["selector"], "e1"])
    inbound = p.cli("check", str(f), "--json", json_out=True)["checks"]["dkim"]
    assert inbound["status"]["state"] == "skipped", inbound
    f.write_bytes(message(author="carol@elsewhere.test"))
    other = p.cli("check", str(f), "--direction", "out", "--json", json_out=True)["checks"]["dkim"]
    assert other["facts"]["status"] == "unsigned", other

    # Mail of a domain without a key leaves unsigned.
    send(p, message(author="carol@elsewhere.test", subject="Other"), sender="carol@elsewhere.test")
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery")
    assert signatures(raw.messages[0]["data"]) == 0


def arc_verify(raw: bytes, resolver):
    """dkimpy's ARC verification (an independent implementation) against our DNS: (cv, why)."""
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        answer = resolver.resolve(name.rstrip("."), "TXT")
        return b"".join(b"".join(rr.strings) for rr in answer)

    cv, _results, why = dkim.arc_verify(raw, dnsfunc=dnsfunc)
    return cv, why


def arc_seals(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return [line for line in head.split("\r\n") if line.lower().startswith("arc-seal:")]


def test_inbound_mail_is_arc_sealed_over_the_chain_it_arrived_with(
    palisade_factory, raw_sink_factory, tmp_path
):
    """Issue 10 item 1, ARC sealing for the organisation's own hops: with
    `[authentication.arc_seal]` and a key made by `palisade dkim generate`, inbound mail that
    arrived through a sealing forwarder leaves with a second ARC set (cv=pass) and mail that
    arrived directly with a first one (cv=none); dkimpy verifies both chains against NSD, and
    a body changed after us does not verify."""
    raw = raw_sink_factory()
    # The forwarder's own RSA key (openssl), as a mailing list would have.
    fwd_key = tmp_path / "fwd.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(fwd_key), "2048"],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(fwd_key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    dns = Nsd(tmp_path / "nsd", {})
    p = palisade_factory({
        # Loopback is an ordinary (inbound) client here.
        "smtp": {"trusted_networks": ["192.0.2.0/24"]},
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"]},
        "domain": [{"name": "raw.test", "route": "smarthosts",
                    "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "authentication": {"enabled": True},
    })
    ours = p.cli("dkim", "generate", "hospital.test", "--selector", "arc1", "--json", json_out=True)
    dns.zones = {
        "hospital.test": f"arc1._domainkey IN TXT {txt(ours['record'])}\n",
        "forwarder.test": "fwd._domainkey IN TXT " + txt("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()) + "\n",
    }
    dns.start()
    try:
        toml = p.cli("config", "export").stdout
        f = tmp_path / "arc.toml"
        f.write_text(toml + '\n[authentication.arc_seal]\ndomain = "hospital.test"\nselector = "arc1"\n')
        p.cli("config", "import", str(f), "--comment", "seal inbound mail with ARC")

        plain = (
            "From: Ada <ada@partner.test>\r\nTo: Staff <staff@raw.test>\r\nSubject: Referral\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            "Message-ID: <referral-1@partner.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Please see the patient on Tuesday.\r\n"
        ).encode()
        forwarded = b"Authentication-Results: lists.forwarder.test; spf=pass smtp.mailfrom=partner.test\r\n" + plain
        sets = dkim.arc_sign(forwarded, b"fwd", b"forwarder.test", fwd_key.read_bytes(),
                             b"lists.forwarder.test")
        forwarded = b"".join(sets) + forwarded
        resolver = dns.resolver()
        assert arc_verify(forwarded, resolver)[0] == b"pass"

        for i, data in enumerate([forwarded, plain]):
            with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=60) as s:
                s.ehlo("lists.forwarder.test")
                s.mail("bounces@forwarder.test")
                code, msg = s.rcpt("staff@raw.test")
                assert code == 250, (code, msg)
                code, msg = s.data(data)
                assert code == 250, (code, msg)
            wait_for(lambda: len(raw.messages) == i + 1, 30, what="delivery")

        via_forwarder, direct = (m["data"] for m in raw.messages)
        seals = arc_seals(via_forwarder)
        assert len(seals) == 2 and "i=2" in seals[0] and "cv=pass" in seals[0], seals
        assert "d=hospital.test" in seals[0] and "s=arc1" in seals[0], seals
        head = via_forwarder.split(b"\r\n\r\n", 1)[0].decode()
        assert "ARC-Authentication-Results: i=2; palisade.test;" in head, head
        assert arc_verify(via_forwarder, resolver) == (b"pass", "success"), arc_verify(via_forwarder, resolver)

        seals = arc_seals(direct)
        assert len(seals) == 1 and "i=1" in seals[0] and "cv=none" in seals[0], seals
        assert arc_verify(direct, resolver)[0] == b"pass"
        # Changed after our seal: it no longer verifies (the check above can fail).
        tampered = via_forwarder.replace(b"on Tuesday", b"on Friday")
        assert arc_verify(tampered, resolver)[0] == b"fail"

    finally:
        dns.stop()
