"""The operational CLI: configuration export/import/rollback with revisions and audit,
tamper-evident audit log, queue list/retry/delete/bounce, tracking search."""

import json
import smtplib
import sqlite3
import subprocess

from harness import SmtpClient, free_port, palisade_bin, wait_for


def test_config_export_import_rollback_and_live_reload(palisade_factory):
    p = palisade_factory()
    exported = p.cli("config", "export").stdout
    assert "[smtp]" in exported and 'name = "example.test"' in exported

    new = exported.replace('[[domain]]\nname = "example.test"',
                           '[[domain]]\nname = "newdomain.test"\nroute = "maildir"\nsmarthosts = []\n\n[[domain]]\nname = "example.test"')
    new = new.replace("trusted_networks = [", 'trusted_networks = ["192.0.2.0/24", ')
    new = new.replace('"127.0.0.0/8", "::1/128"', '"198.51.100.0/24"')
    f = p.dir / "new.toml"
    f.write_text(new)
    dry = p.cli("config", "import", str(f), "--dry-run").stdout
    assert '+name = "newdomain.test"' in dry and "dry run" in dry
    r = p.cli("config", "import", str(f), "--comment", "add newdomain")
    assert "imported as revision 2" in r.stdout
    assert "revision 2 applied" in r.stdout, "the running engine reloaded"

    # Loopback is no longer trusted, the new domain is inbound: seen by a new session at once.
    c = SmtpClient(p.smtp_port)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd("RCPT TO:<x@newdomain.test>").startswith("250")
    assert c.cmd("RCPT TO:<x@elsewhere.example>").startswith("554 5.7.1")

    hist = p.cli("config", "history", "--json", json_out=True)
    assert [h["revision"] for h in hist] == [2, 1]
    assert hist[0]["comment"] == "add newdomain"
    assert hist[0]["author"].startswith("cli:")

    # An invalid file changes nothing and lists every problem.
    bad = p.dir / "bad.toml"
    bad.write_text(new.replace('hostname = "palisade.test"', 'hostname = "bad host"')
                      .replace("max_recipients = 100", "max_recipients = 0"))
    r = p.cli("config", "import", str(bad), check=False)
    assert r.returncode == 64
    assert "system.hostname" in r.stderr and "smtp.max_recipients" in r.stderr
    assert len(p.cli("config", "history", "--json", json_out=True)) == 2

    r = p.cli("config", "rollback", "1")
    assert "current again as revision 3" in r.stdout
    c = SmtpClient(p.smtp_port)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd("RCPT TO:<x@elsewhere.example>").startswith("250"), "loopback trusted again"

    audit = p.cli("audit", "list", "--json", "--action", "config.", json_out=True)
    assert [a["target"] for a in audit] == ["3", "2", "1"]
    assert "+name = \"newdomain.test\"" in json.loads(audit[1]["detail"])["diff"]


def test_audit_chain_names_the_tampered_entry(palisade_factory):
    p = palisade_factory()
    f = p.dir / "c.toml"
    text = p.cli("config", "export").stdout
    for i in range(3):
        text = text.replace(f"max_recipients = {100 + i}", f"max_recipients = {101 + i}")
        f.write_text(text)
        p.cli("config", "import", str(f))
    r = p.cli("audit", "verify", "--json", json_out=True)
    entries = p.cli("audit", "list", "--json", "--limit", "1000", json_out=True)
    assert len([e for e in entries if e["action"] == "config.commit"]) == 4
    assert r == {"verdict": "intact", "entries": len(entries), "head": entries[0]["hash"]}
    db = sqlite3.connect(p.data / "audit.db")
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    db.commit()
    db.close()
    r = p.cli("audit", "verify", check=False)
    assert r.returncode == 2
    assert "TAMPERED at entry 3" in r.stdout


def test_queue_list_retry_delete_bounce_and_track(palisade_factory):
    dead = free_port()
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "down.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{dead}"]},
    ], "delivery": {"retry_initial_secs": 3600, "retry_max_secs": 3600}})
    with smtplib.SMTP("127.0.0.1", p.smtp_port) as s:
        for i in range(3):
            s.sendmail("ada@example.test", [f"r{i}@down.test"], f"Subject: queued {i}\r\nMessage-ID: <q{i}@example.test>\r\n\r\nx\r\n")
    wait_for(lambda: len(p.queue()) == 3 and all(q["recipients"][0]["attempts"] == 1 for q in p.queue()), 30,
             what="three deferred")
    q = p.queue()
    assert all("no host accepted the connection" in m["recipients"][0]["last_error"] for m in q)
    human = p.cli("queue", "list").stdout
    assert "3 message(s)" in human and "r0@down.test" in human

    ids = [m["id"] for m in q]
    r = p.cli("queue", "retry", ids[0])
    assert "1 recipient(s) due now" in r.stdout
    wait_for(lambda: [m for m in p.queue() if m["id"] == ids[0]][0]["recipients"][0]["attempts"] == 2, 30,
             what="the retried attempt")

    r = p.cli("queue", "delete", ids[1])
    assert f"{ids[1]} deleted" in r.stdout
    assert len(p.queue()) == 2
    assert not (p.data / "spool" / ids[1]).exists()
    r = p.cli("queue", "delete", ids[1], check=False)
    assert r.returncode == 1 and "no longer queued" in r.stdout
    (t,) = p.track(queue_id=ids[1])
    assert t["status"] == "deleted"

    r = p.cli("queue", "bounce", ids[2])
    assert "returned to the sender" in r.stdout
    wait_for(lambda: len(p.mailbox()) == 1, 30, what="the bounce in the sender's mailbox")
    assert "returned to the sender by the administrator" in p.mailbox()[0].decode()
    # The Maildir file appears before the bounce's outcome is committed and it leaves the queue.
    wait_for(lambda: [m["id"] for m in p.queue()] == [ids[0]], 10, what="the bounce to leave the queue")

    actions = [a["action"] for a in p.cli("audit", "list", "--json", json_out=True)]
    assert {"queue.retry", "queue.delete", "queue.bounce"} <= set(actions)
    # Made by the engine and audited there, once each (the CLI writes no entry of its own).
    for action in ("queue.retry", "queue.delete", "queue.bounce"):
        assert actions.count(action) == 1, (action, actions)

    assert len(p.track(subject="QUEUED", status="deferred")) == 1
    assert len(p.track(message_id="q2@example.test")) == 1
    assert p.track(sender="nobody@nowhere") == []
    assert len(p.track(since="1h")) >= 3


def test_cli_on_a_missing_data_dir_says_so(tmp_path):
    r = subprocess.run([palisade_bin(), "--data", str(tmp_path / "nope"), "queue", "list"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "is not a Palisade data directory" in r.stderr
