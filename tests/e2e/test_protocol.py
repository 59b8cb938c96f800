"""The SMTP server's strictness, seen from raw sockets: smuggling, limits, relay control,
STARTTLS injection, timeouts, connection caps, address validation."""

import socket
import ssl
import time

import pytest

from harness import SmtpClient, wait_for

# Every vector is followed by a smuggled transaction; none of it may ever be queued.
SMUGGLING_VECTORS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n.\n",
    b"\r\n\x00.\r\n",
    b"\n\n.\n\n",
    b"\r\r\n.\r\r\n",
    b"\r\n.\x00\r\n",
]


@pytest.fixture(scope="module")
def gateway(request):
    """One instance for the protocol tests: loopback is NOT trusted here, so relay control is
    what an internet client sees."""
    from harness import Palisade

    p = Palisade(f"protocol-{request.module.__name__}", {
        "smtp": {
            "trusted_networks": ["192.0.2.0/24"],
            "max_message_size": 100_000,
            "command_timeout_secs": 3,
            "max_connections_per_ip": 5,
        },
        "domain": [{"name": "example.test", "route": "maildir"}],
    })
    p.start()
    yield p
    p.cleanup()


def client(p):
    c = SmtpClient(p.smtp_port)
    assert c.greeting.startswith("220 ")
    assert c.cmd("EHLO tester.example").startswith("250")
    return c


@pytest.mark.parametrize("vector", SMUGGLING_VECTORS, ids=lambda v: repr(v))
def test_smuggling_vectors_queue_nothing_smuggled(gateway, vector):
    before = {t["queue_id"] for t in gateway.track(limit=10000)}
    c = client(gateway)
    assert c.cmd("MAIL FROM:<alice@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<bob@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: innocent\r\n\r\nhello" + vector
           + b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
           + b"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
    reply = c.reply()
    # Bare CR/LF: the session is refused and closed; a NUL: the whole message is refused.
    assert reply.startswith(("521 5.5.2", "550 5.6.0")), (vector, reply)
    c.close()
    time.sleep(0.5)
    after = [t for t in gateway.track(limit=10000) if t["queue_id"] not in before]
    assert all(t["status"] == "rejected" for t in after), after
    assert not any(t["sender"] == "evil@attacker.example" for t in after)
    assert not any(b"smuggled" in m for m in gateway.mailbox())


def test_only_crlf_dot_crlf_ends_data_and_pipelined_commands_follow(gateway):
    c = client(gateway)
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<pipelined@example.test>\r\nDATA\r\n")
    assert c.reply().startswith("250")
    assert c.reply().startswith("250")
    assert c.reply().startswith("354")
    c.send(b"Subject: pipelined\r\n\r\nline\r\n.\r\nQUIT\r\n")
    assert c.reply().startswith("250 2.0.0 Ok: queued as ")
    assert c.reply().startswith("221")
    wait_for(lambda: any(b"Subject: pipelined" in m for m in gateway.mailbox()), 20, what="delivery")


def test_command_line_limit(gateway):
    c = client(gateway)
    assert c.cmd("NOOP " + "x" * 505).startswith("250")  # 512 octets with CRLF: allowed
    assert c.cmd("NOOP " + "x" * 506).startswith("500 5.5.2")  # 513: refused
    assert c.cmd("NOOP").startswith("250"), "the session goes on after an over-long line"
    assert c.cmd("NOOP " + "x" * 5000).startswith("500 5.5.2")
    assert c.cmd("RSET").startswith("250")


def test_text_line_over_1000_octets_is_refused_not_truncated(gateway):
    c = client(gateway)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<longline@example.test>")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n")  # 1000 with CRLF: fine
    c.send(b"z" * 999 + b"\r\n.\r\n")  # 1001: not fine
    assert c.reply().startswith("550 5.6.0")
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<longline@example.test>")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: long ok\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
    assert c.reply().startswith("250")
    time.sleep(1)
    assert not any(b"zzzz" in m for m in gateway.mailbox())


def test_recipient_limit_and_size_limits(gateway):
    c = client(gateway)
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=100001").startswith("552 5.3.4")
    assert c.cmd("MAIL FROM:<a@example.org> SIZE=1000").startswith("250")
    for i in range(100):
        assert c.cmd(f"RCPT TO:<r{i}@example.test>").startswith("250"), i
    assert c.cmd("RCPT TO:<r100@example.test>").startswith("452 4.5.3")
    assert c.cmd("RSET").startswith("250")
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<big@example.test>")
    assert c.cmd("DATA").startswith("354")
    for _ in range(120):
        c.send(b"a" * 998 + b"\r\n")
    c.send(b".\r\n")
    assert c.reply().startswith("552 5.3.4")
    assert c.cmd("NOOP").startswith("250")


@pytest.mark.parametrize("rcpt", [
    "<someone@elsewhere.example>",
    "<user%other.example@example.test>",
    "<a!b@example.test>",
    '<"x@other.example"@example.test>',
    "<@relay.example:victim@example.test>",
    "<@a.example,@b.example:victim@other.example>",
    "<victim@[192.0.2.7]>",
])
def test_open_relay_attempts_are_refused(gateway, rcpt):
    c = client(gateway)
    assert c.cmd("MAIL FROM:<spammer@example.org>").startswith("250")
    reply = c.cmd(f"RCPT TO:{rcpt}")
    assert reply.startswith("554 5.7.1"), (rcpt, reply)


def test_inbound_domain_accepted_case_insensitively(gateway):
    c = client(gateway)
    assert c.cmd("MAIL FROM:<a@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<Bob@EXAMPLE.test>").startswith("250")
    assert c.cmd("RCPT TO:<Postmaster>").startswith("250")


def test_submission_port_requires_a_trusted_network(gateway):
    c = SmtpClient(gateway.submission_port)
    c.cmd("EHLO tester")
    assert c.cmd("MAIL FROM:<a@example.test>").startswith("530 5.7.0")


@pytest.mark.parametrize("cmd,code", [
    ("MAIL FROM:<a\x00b@example.org>", "501"),
    ("MAIL FROM:<" + "l" * 65 + "@example.org>", "501"),
    ("RCPT TO:<bob@exa mple.test>", "501"),
    ("MAIL FROM:a@example.org", "501"),
    ("MAIL FROM:<a@example.org> BOGUS=1", "555"),
    ("MAIL FROM:<caf\u00e9@example.org>", "553"),
])
def test_envelope_addresses_are_validated(gateway, cmd, code):
    c = client(gateway)
    if cmd.startswith("RCPT"):
        c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd(cmd).startswith(code), cmd


def test_utf8_addresses_with_smtputf8(gateway):
    c = client(gateway)
    assert c.cmd("MAIL FROM:<caf\u00e9@example.org> SMTPUTF8").startswith("250")
    assert c.cmd("RCPT TO:<j\u00fcrgen@example.test>").startswith("250")


def test_plaintext_pipelined_after_starttls_is_discarded(gateway):
    c = client(gateway)
    # The injected MAIL arrives in the same packet as STARTTLS (CVE-2011-0411).
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@attacker.example>\r\n")
    assert c.reply().startswith("220")
    ctx = ssl._create_unverified_context()
    tls = ctx.wrap_socket(c.sock, server_hostname="palisade.test")
    c.sock, c.buf = tls, b""
    ehlo = c.cmd("EHLO tester")
    assert ehlo.startswith("250") and "STARTTLS" not in ehlo
    # Had the injected MAIL been executed, this RCPT would be accepted.
    assert c.cmd("RCPT TO:<bob@example.test>").startswith("503 5.5.1")


def test_idle_client_times_out(gateway):
    c = client(gateway)
    start = time.monotonic()
    reply = c.reply()
    assert reply.startswith("421 4.4.2"), reply
    assert c.closed()
    assert time.monotonic() - start < 10


def test_connection_cap_per_client_address(gateway):
    held = [client(gateway) for _ in range(5)]
    extra = socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=5)
    assert extra.recv(200).startswith(b"421 4.7.0")
    extra.close()
    for c in held:
        c.close()
    time.sleep(0.3)
    client(gateway).close()


def test_bare_lf_in_command_closes_session(gateway):
    c = client(gateway)
    c.send(b"NOOP\n")
    assert c.reply().startswith("521 5.5.2")
    assert c.closed()


def test_too_many_errors_disconnects(gateway):
    c = client(gateway)
    for _ in range(9):
        assert c.cmd("BOGUS").startswith("500")
    assert c.cmd("BOGUS").startswith("500")
    assert c.reply().startswith("421 4.7.0")
