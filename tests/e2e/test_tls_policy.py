"""TLS policy per destination (issue 13, item 1): verified TLS delivers only to a server whose
certificate chains to the trust anchors and names it; required TLS never falls back to
plaintext; what each delivery's TLS was, and how the server was verified, is in tracking.

The receiving servers are Python's ssl (OpenSSL) behind the raw sink's STARTTLS, with
certificates made by the `openssl` command; host names come from a real authoritative DNS
server (NSD) so that MX delivery and routes name the hosts they verify."""

import smtplib
import ssl
import subprocess

import pytest

from authdns import Nsd
from harness import wait_for

HOSTS = ["mx.partner.test", "mx.wrong.test", "mx.names.test", "mx.selfsigned.test", "mx.plain.test"]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA, a server certificate it issued for mx.partner.test, and a self-signed one
    for mx.selfsigned.test."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=Partner Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:mx.partner.test\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "mx.key", "-out", "mx.csr",
            "-subj", "/CN=mx.partner.test", cwd=d)
    openssl("x509", "-req", "-in", "mx.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "mx.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem",
            "-days", "2", "-subj", "/CN=mx.selfsigned.test",
            "-addext", "subjectAltName=DNS:mx.selfsigned.test", cwd=d)
    return d


def server_context(pki, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    return ctx


@pytest.fixture(scope="module")
def dns_port(tmp_path_factory):
    zone = "\n".join(
        ["partner IN MX 10 mx.partner"] + [f"{h.removesuffix('.test')} IN A 127.0.0.1" for h in HOSTS])
    with Nsd(tmp_path_factory.mktemp("nsd"), {"test": zone}) as d:
        yield d.port


def send(port, rcpt):
    msg = (f"From: ada@example.test\r\nTo: {rcpt}\r\nSubject: referral for {rcpt}\r\n"
           f"Message-ID: <{rcpt.replace('@', '.')}@example.test>\r\n\r\nPlease see the patient.\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("ada@example.test", [rcpt], msg)


def test_verified_and_required_tls_deliver_only_as_the_policy_says(palisade_factory, raw_sink_factory,
                                                                     pki, dns_port):
    partner = raw_sink_factory(tls=server_context(pki, "mx"))        # CA-issued, mx.partner.test
    other = raw_sink_factory(tls=server_context(pki, "mx"))          # the same certificate elsewhere
    selfsigned = raw_sink_factory(tls=server_context(pki, "self"))
    plain = raw_sink_factory()                                       # no STARTTLS at all
    ca = (pki / "ca.pem").read_text()
    p = palisade_factory({
        "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
        "delivery": {"remote_port": partner.port, "retry_initial_secs": 3600, "retry_max_secs": 3600},
        "route": [
            {"domain": "wrong.test", "smarthosts": [f"mx.wrong.test:{other.port}"]},
            {"domain": "names.test", "smarthosts": [f"mx.names.test:{other.port}"]},
            {"domain": "selfsigned.test", "smarthosts": [f"mx.selfsigned.test:{selfsigned.port}"]},
            {"domain": "opportunistic.test", "smarthosts": [f"mx.selfsigned.test:{selfsigned.port}"]},
            {"domain": "plain.test", "smarthosts": [f"mx.plain.test:{plain.port}"]},
            {"domain": "cleartext.test", "smarthosts": [f"mx.plain.test:{plain.port}"]},
        ],
        "tls_policy": [
            # MX delivery: the certificate names the MX host and chains to the partner's CA.
            {"destination": "partner.test", "mode": "verified", "ca": ca},
            # The same CA, but the certificate names another host.
            {"destination": "wrong.test", "mode": "verified", "ca": ca},
            # ... which is accepted when the policy names it.
            {"destination": "names.test", "mode": "verified", "ca": ca, "names": ["mx.partner.test"]},
            # A self-signed certificate chains to nothing trusted.
            {"destination": ".selfsigned.test", "mode": "required"},
            {"destination": "selfsigned.test", "mode": "verified"},
            {"destination": "plain.test", "mode": "required"},
        ],
    })
    for rcpt in ["a@partner.test", "b@wrong.test", "c@names.test", "d@selfsigned.test",
                 "e@opportunistic.test", "f@plain.test", "g@cleartext.test"]:
        send(p.smtp_port, rcpt)

    def tracked(rcpt):
        return [e for row in p.track(rcpt=rcpt) for e in row.get("events", [])
                if e["event"] in ("delivered", "deferred")]

    for rcpt in ["a@partner.test", "c@names.test", "e@opportunistic.test", "g@cleartext.test",
                 "b@wrong.test", "d@selfsigned.test", "f@plain.test"]:
        wait_for(lambda: tracked(rcpt), 30, interval=0.5, what=f"an attempt for {rcpt}")

    def outcome(rcpt):
        (e,) = [e for e in tracked(rcpt)][-1:]
        return e

    # Delivered, and tracking says how.
    a = outcome("a@partner.test")
    assert a["event"] == "delivered", a
    assert a["tls"].startswith("TLSv1.") and a["tls"].endswith("certificate verified for mx.partner.test"), a
    c = outcome("c@names.test")
    assert c["event"] == "delivered", c
    assert c["tls"].endswith("certificate verified for mx.partner.test"), c
    e = outcome("e@opportunistic.test")
    assert e["event"] == "delivered" and e["tls"].endswith("certificate not verified"), e
    g = outcome("g@cleartext.test")
    assert g["event"] == "delivered" and not g["tls"], g
    assert [m["rcpts"] for m in partner.messages] == [["a@partner.test"]] and partner.messages[0]["tls"]
    assert [m["rcpts"] for m in other.messages] == [["c@names.test"]] and other.messages[0]["tls"]
    assert [m["rcpts"] for m in selfsigned.messages] == [["e@opportunistic.test"]]
    assert [m["rcpts"] for m in plain.messages] == [["g@cleartext.test"]]

    # Deferred with 4.7.5 and the reason; never sent in clear, still queued.
    for rcpt, why in [("b@wrong.test", "mx.wrong.test"), ("d@selfsigned.test", "invalid peer certificate"),
                      ("f@plain.test", "not offered")]:
        ev = outcome(rcpt)
        assert ev["event"] == "deferred", ev
        assert "4.7.5" in ev["reply"] and "TLS policy" in ev["reply"] and why in ev["reply"], ev
    queued = {r["address"]: r for m in p.queue() for r in m["recipients"]}
    assert set(queued) == {"b@wrong.test", "d@selfsigned.test", "f@plain.test"}, queued
    assert "tls_policy plain.test" in queued["f@plain.test"]["last_error"]
    assert other.failed_handshakes >= 1 and selfsigned.failed_handshakes >= 1

    # An operator who fixes the policy sees the queued message follow it at the next attempt.
    cfg = p.cli("config", "export").stdout
    fixed = cfg.replace('destination = "plain.test"\nmode = "required"', 'destination = "plain.test"\nmode = "opportunistic"')
    assert fixed != cfg, cfg
    (p.data / "fixed.toml").write_text(fixed)
    p.cli("config", "import", str(p.data / "fixed.toml"))
    p.cli("queue", "retry", "--all")
    wait_for(lambda: any(m["rcpts"] == ["f@plain.test"] for m in plain.messages), 30, interval=0.5,
             what="the message delivered under the relaxed policy")
