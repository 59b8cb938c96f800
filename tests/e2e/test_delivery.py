"""Mail in with swaks and smtplib, out to Postfix's smtp-sink, a raw capture server and the
Maildir: content arrives unchanged, tracking tells the story, failures bounce, retries work."""

import email
import email.utils
import smtplib
import ssl
import subprocess
import time

from harness import SmtpSink, strip_added_headers, wait_for

MESSAGE = (
    "From: Dr Ada <ada@example.org>\r\n"
    "To: Ward 7 <ward7@example.test>\r\n"
    "Subject: Discharge summary\r\n"
    "Message-ID: <discharge-1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Patient stable. Caf\u00e9 \u2014 na\u00efve r\u00e9sum\u00e9.\r\n"
    ".a line that starts with a dot\r\n"
    "..two dots\r\n"
    ".\t\r\n"
    + "x" * 990 + "\r\n"
    "\r\n"
    "last line\r\n"
).encode()


def swaks(port, to, sender="ada@example.org", tls=False, data=None, extra=()):
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", "--to", to, "--from", sender, "--hide-all"]
    if tls:
        cmd += ["--tls"]
    if data is not None:
        cmd += ["--data", "-"]
    cmd += list(extra)
    return subprocess.run(cmd, input=data, capture_output=True, timeout=60)


def test_swaks_and_smtplib_deliver_unchanged_to_sink_raw_capture_and_maildir(palisade_factory, sink_factory, raw_sink_factory):
    sink = sink_factory()
    raw = raw_sink_factory()
    p = palisade_factory({
        "domain": [
            {"name": "example.test", "route": "maildir"},
            {"name": "sink.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{sink.port}"]},
            {"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
        ]
    })

    r = swaks(p.smtp_port, "ward7@example.test", data=MESSAGE)
    assert r.returncode == 0, r.stdout + r.stderr
    r = swaks(p.smtp_port, "ward7@sink.test", tls=True, data=MESSAGE)
    assert r.returncode == 0, r.stdout + r.stderr

    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.starttls(context=ssl._create_unverified_context())
        s.ehlo("smtplib.example.org")
        refused = s.sendmail("ada@example.org", ["ward7@raw.test"], MESSAGE)
        assert refused == {}

    wait_for(lambda: len(p.mailbox()) == 1 and len(sink.messages()) == 1 and len(raw.messages) == 1, 30,
             what="three deliveries")

    # swaks terminates DATA with "\r\n.\r\n" after the data it was given, so what it sent is
    # the message plus one CRLF. Maildir and smtp-sink's dump store lines with LF.
    lf = (MESSAGE + b"\r\n").replace(b"\r\n", b"\n")
    assert strip_added_headers(p.mailbox()[0]) == lf
    assert strip_added_headers(SmtpSink.content(sink.messages()[0])) == lf
    # Exact bytes, CRLF and all: only our Received header was added in front.
    got = raw.messages[0]["data"]
    assert got.startswith(b"Received: from smtplib.example.org ([127.0.0.1])\r\n\tby palisade.test (Palisade) with ESMTPS")
    assert got.split(b"\r\n\r\n", 1)[0].count(b"Received:") == 1
    assert got[got.index(b"From: Dr Ada"):] == MESSAGE
    assert raw.messages[0]["from"] == "ada@example.org"
    assert raw.messages[0]["rcpts"] == ["ward7@raw.test"]

    p.wait_queue_empty()
    tracked = p.track(message_id="discharge-1@example.org")
    assert len(tracked) == 3
    by_rcpt = {t["rcpts"][0]: t for t in tracked}
    assert {t["status"] for t in tracked} == {"delivered"}
    assert by_rcpt["ward7@example.test"]["tls"] is None
    assert by_rcpt["ward7@sink.test"]["tls"].startswith("TLSv1.")
    assert by_rcpt["ward7@raw.test"]["client_helo"] == "smtplib.example.org"
    for t in tracked:
        assert t["subject"] == "Discharge summary"
        assert t["message_id"] == "<discharge-1@example.org>"
        assert t["client_ip"] == "127.0.0.1"
        assert t["size"] > len(MESSAGE)
        events = [e["event"] for e in t["events"]]
        assert events == ["received", "delivered"], events
    assert f"127.0.0.1]:{sink.port}" in by_rcpt["ward7@sink.test"]["events"][1]["remote"]


def test_smarthosts_fail_over_in_order(palisade_factory, sink_factory):
    from harness import free_port

    dead = free_port()
    sink = sink_factory()
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "hosp.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{dead}", f"127.0.0.1:{sink.port}"]},
    ]})
    assert swaks(p.smtp_port, "x@hosp.test").returncode == 0
    wait_for(lambda: len(sink.messages()) == 1, 30, what="delivery to the second smarthost")
    p.wait_queue_empty()
    (t,) = p.track(rcpt="x@hosp.test")
    assert t["status"] == "delivered"
    assert f":{sink.port}" in t["events"][-1]["remote"]


def test_temporary_failure_is_retried_with_backoff(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory(rcpt_reply="451 4.3.0 mailbox busy")
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "busy.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
    ]})
    assert swaks(p.smtp_port, "x@busy.test").returncode == 0
    wait_for(lambda: any(r["recipients"][0]["attempts"] >= 2 for r in p.queue()), 30, what="two attempts")
    (q,) = p.queue()
    assert q["recipients"][0]["state"] == "queued"
    assert "451 4.3.0 mailbox busy" in q["recipients"][0]["last_error"]
    raw.rcpt_reply = "250 2.1.5 Ok"
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery after the retry")
    p.wait_queue_empty()
    (t,) = p.track(rcpt="x@busy.test")
    assert t["status"] == "delivered"
    events = [e["event"] for e in t["events"]]
    assert events[0] == "received" and events[-1] == "delivered"
    assert events.count("deferred") >= 2


def test_permanent_failure_bounces_once_and_never_bounces_a_bounce(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory(rcpt_reply="550 5.1.1 <nobody@fail.test>: no such user")
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "fail.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
    ]})
    # 1. A normal sender gets a DSN (RFC 3464) in its mailbox.
    r = swaks(p.smtp_port, "nobody@fail.test", sender="ada@example.test", extra=["--header", "Subject: lab results"])
    assert r.returncode == 0
    wait_for(lambda: len(p.mailbox()) == 1, 30, what="the bounce")
    dsn = email.message_from_bytes(p.mailbox()[0])
    assert email.utils.parseaddr(dsn["From"]) == ("Mail Delivery System", "MAILER-DAEMON@palisade.test")
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    raw_dsn = p.mailbox()[0].decode()
    assert "Final-Recipient: rfc822; nobody@fail.test" in raw_dsn
    assert "Status: 5.1.1" in raw_dsn
    assert "Action: failed" in raw_dsn
    assert "Subject: lab results" in raw_dsn
    assert "Return-Path: <>" in raw_dsn

    # 2. The null sender is never bounced to.
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail("", ["nobody@fail.test"], "Subject: from the null sender\r\n\r\nx\r\n")
    # 3. A bounce that itself fails is not bounced either: the sender's domain is the failing one.
    assert swaks(p.smtp_port, "nobody@fail.test", sender="someone@fail.test").returncode == 0
    p.wait_queue_empty()
    time.sleep(1)
    assert len(p.mailbox()) == 1
    statuses = sorted(t["status"] for t in p.track(rcpt="fail.test"))
    # the 3 originals and the 1 bounce that went to someone@fail.test
    assert statuses == ["bounced"] * 4, statuses
    assert "delivery.bounce_suppressed" in p.log_text()


def test_expired_message_bounces_with_4_4_7(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory(rcpt_reply="452 4.2.2 mailbox full")
    p = palisade_factory({
        "delivery": {"retry_initial_secs": 1, "retry_max_secs": 1, "max_lifetime_secs": 3},
        "domain": [
            {"name": "example.test", "route": "maildir"},
            {"name": "full.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
        ],
    })
    assert swaks(p.smtp_port, "x@full.test", sender="ada@example.test").returncode == 0
    wait_for(lambda: len(p.mailbox()) == 1, 30, what="the expiry bounce")
    text = p.mailbox()[0].decode()
    assert "Status: 4.4.7" in text
    assert "expired in the queue" in text
    assert "452 4.2.2 mailbox full" in text
    p.wait_queue_empty()


def test_per_destination_concurrency_limit_and_connection_reuse(palisade_factory, raw_sink_factory):
    raw = raw_sink_factory(session_delay=0.2)
    p = palisade_factory({
        "delivery": {"max_per_destination": 2},
        "domain": [
            {"name": "example.test", "route": "maildir"},
            {"name": "slow.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]},
        ],
    })
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        for i in range(12):
            s.sendmail("ada@example.org", [f"r{i}@slow.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n")
    wait_for(lambda: len(raw.messages) == 12, 60, what="12 deliveries")
    assert raw.max_open <= 2, raw.max_open
    p.wait_queue_empty()


def test_mx_lookup_delivery_and_nxdomain_bounce(palisade_factory, sink_factory, tmp_path):
    from harness import free_port, port_open

    sink = sink_factory()
    dns_port = free_port()
    dnsmasq = subprocess.Popen([
        "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={dns_port}",
        "--mx-host=mx.test,mail.mx.test,10", "--host-record=mail.mx.test,127.0.0.1",
        "--local=/nxd.test/", "--local=/mx.test/",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert dnsmasq.poll() is None, "dnsmasq failed to start"
        p = palisade_factory({
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "delivery": {"remote_port": sink.port},
        })
        # From a trusted network (loopback): outbound relay through MX lookup.
        assert swaks(p.smtp_port, "partner@mx.test", sender="ada@example.test").returncode == 0
        wait_for(lambda: len(sink.messages()) == 1, 30, what="MX delivery")
        assert swaks(p.smtp_port, "someone@nxd.test", sender="ada@example.test").returncode == 0
        wait_for(lambda: len(p.mailbox()) == 1, 30, what="NXDOMAIN bounce")
        assert "domain does not exist" in p.mailbox()[0].decode()
        p.wait_queue_empty()
        (t,) = p.track(rcpt="partner@mx.test")
        assert "mail.mx.test[127.0.0.1]" in t["events"][-1]["remote"]
    finally:
        dnsmasq.terminate()
        dnsmasq.wait()
