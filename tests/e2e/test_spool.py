"""The spool on bad days: damaged and partial files after a crash, and a full disk."""

import os
import smtplib
import subprocess
import time

import pytest

from harness import SmtpClient, free_port, wait_for


def send(p, rcpt, subject, body="body\r\n", sender="ada@example.org"):
    with smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=30) as s:
        s.sendmail(sender, [rcpt], f"Subject: {subject}\r\n\r\n{body}")


def test_damaged_files_are_set_aside_never_delivered_and_partials_removed(palisade_factory, sink_factory):
    sink_port = free_port()  # nothing listens yet: mail stays queued
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "later.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{sink_port}"]},
    ]})
    for name in ["truncated", "flipped", "missing", "good"]:
        send(p, f"{name}@later.test", name, body=f"{name} body " * 20 + "\r\n")
    wait_for(lambda: len(p.queue()) == 4 and all(q["recipients"][0]["attempts"] >= 1 for q in p.queue()), 30,
             what="four deferred messages")
    ids = {q["recipients"][0]["address"].split("@")[0]: q["id"] for q in p.queue()}
    assert p.stop() == 0

    spool = p.data / "spool"
    with open(spool / ids["truncated"], "r+b") as f:
        f.truncate(os.path.getsize(spool / ids["truncated"]) - 5)
    content = bytearray((spool / ids["flipped"]).read_bytes())
    content[-10] ^= 0x01  # same size, different byte: only the checksum notices
    (spool / ids["flipped"]).write_bytes(bytes(content))
    (spool / ids["missing"]).unlink()
    partial = spool / "0123456789ABCDEF0123"
    partial.write_bytes(b"Subject: never acknowledged\r\n\r\nhalf")

    sink = sink_factory(port=sink_port)
    p.start()
    wait_for(lambda: len(sink.messages()) == 1, 30, what="the good message")
    p.wait_queue_empty()
    time.sleep(1)
    assert len(sink.messages()) == 1
    assert b"good body" in sink.messages()[0]
    assert not partial.exists()
    corrupt_dir = p.data / "spool-corrupt"
    assert (corrupt_dir / ids["truncated"]).exists()
    assert (corrupt_dir / ids["flipped"]).exists()
    for name in ["truncated", "flipped", "missing"]:
        (t,) = p.track(queue_id=ids[name])
        assert t["status"] == "corrupt", (name, t)
        assert any(e["event"] == "corrupt" for e in t["events"])
    log = p.log_text()
    assert "spool.corrupt" in log and "spool.partial_removed" in log
    assert p.engine_pid(), "no crash loop"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_full_disk_gets_452_and_loses_nothing(palisade_factory, sink_factory):
    from harness import Palisade

    sink_port = free_port()
    p = palisade_factory({
        "smtp": {"min_free_disk_mb": 1},
        "domain": [
            {"name": "example.test", "route": "maildir"},
            {"name": "later.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{sink_port}"]},
        ],
    }, start=False)
    p.data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(p.data)], check=True)
    try:
        p.start()
        send(p, "before@later.test", "accepted before the disk filled")
        filler = p.dir / "data" / "filler"
        # Leave less than min_free_disk_mb free.
        free = os.statvfs(p.data).f_bavail * os.statvfs(p.data).f_frsize
        with open(filler, "wb") as f:
            f.write(b"\0" * (free - 512 * 1024))
        c = SmtpClient(p.smtp_port)
        c.cmd("EHLO full")
        assert c.cmd("MAIL FROM:<a@example.org>").startswith("452 4.3.1")
        c.close()

        # Below the reserve check but the message itself does not fit: 452 after DATA.
        with open(filler, "r+b") as f:
            f.truncate(free - 1536 * 1024)
        c = SmtpClient(p.smtp_port)
        c.cmd("EHLO full")
        assert c.cmd("MAIL FROM:<a@example.org>").startswith("250")
        assert c.cmd("RCPT TO:<big@later.test>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        line = b"x" * 998 + b"\r\n"
        for _ in range(2000):  # ~2 MB
            c.send(line)
        c.send(b".\r\n")
        assert c.reply().startswith("452 4.3.1")
        c.close()

        filler.unlink()
        send(p, "after@later.test", "accepted after space came back")
        sink = sink_factory(port=sink_port)
        wait_for(lambda: len(sink.messages()) == 2, 30, what="both acknowledged messages")
        subjects = b"".join(sink.messages())
        assert b"accepted before the disk filled" in subjects and b"accepted after space came back" in subjects
        p.wait_queue_empty()
        assert list((p.data / "spool").iterdir()) == []
    finally:
        p.stop()
        subprocess.run(["umount", "-l", str(p.data)], check=False)
