"""Antivirus end to end with a real clamd over its unix socket: signatures installed with
`palisade av update` (local .ndb files: EICAR's test string and a custom marker), a virus
refused at DATA with 554 and never delivered (or quarantined, per policy), an encrypted
archive and clamd being down never called clean, and a client's retry accepted and scanned
once clamd is back."""

import json
import smtplib
from pathlib import Path

import pytest

from clamav import CUSTOM_MARKER, CUSTOM_SIGNATURE, EICAR, EICAR_SIGNATURE, Clamd, write_signatures
from harness import wait_for

CORPUS = Path(__file__).resolve().parents[1] / "resources" / "inbound"

CLEAN = (
    "From: Dr Ada <ada@example.org>\r\n"
    "To: staff@raw.test\r\n"
    "Subject: Rota for December\r\n"
    "Message-ID: <rota-dec@example.org>\r\n"
    "\r\n"
    "The rota is unchanged.\r\n"
).encode()


def with_attachment(name: str, content: bytes, subject="Document") -> bytes:
    import base64
    b64 = base64.encodebytes(content).replace(b"\n", b"\r\n")
    return (
        b"From: sender@example.org\r\nTo: staff@raw.test\r\nSubject: " + subject.encode() + b"\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b\r\nContent-Type: application/octet-stream; name=\"" + name.encode() + b"\"\r\n"
        b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b--\r\n"
    )


def send(port, data, rcpts=("staff@raw.test",), sender="sender@example.org"):
    with smtplib.SMTP("127.0.0.1", port, timeout=90) as s:
        s.ehlo("client.example.org")
        s.mail(sender)
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, (r, code, msg)
        try:
            code, msg = s.data(data)
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        return code, msg.decode(errors="replace")


@pytest.fixture
def clamd_factory(request):
    made = []

    def make():
        c = Clamd(request.node.name)
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


def appliance(palisade_factory, raw, clamd_socket: str, **antivirus):
    return palisade_factory({
        "domain": [{"name": "raw.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{raw.port}"]}],
        "antivirus": {"enabled": True, "clamd": clamd_socket, **antivirus},
    })


def install(p, tmp_path, which="eicar"):
    r = p.cli("av", "update", str(write_signatures(tmp_path / which, which)))
    return r.stdout


def check(p, path: Path) -> dict:
    return p.cli("check", str(path), "--to", "staff@raw.test", "--json", json_out=True)


def test_virus_refused_at_data_never_delivered_and_explained(palisade_factory, raw_sink_factory, clamd_factory, tmp_path):
    raw = raw_sink_factory()
    # The engine is configured before clamd exists: the socket path is known in advance.
    clamd = clamd_factory()
    p = appliance(palisade_factory, raw, clamd.address)
    out = install(p, tmp_path)
    # clamd is not running yet: installed, loaded when it starts.
    assert "installed palisade-test.ndb: 1 signature(s)" in out and "loads the databases when it starts" in out, out
    clamd.start(p.data / "clamav")

    # EICAR inside a zip inside a zip, from the corpus: refused at DATA, never delivered.
    corpus = (CORPUS / "eicar-zip-in-zip.eml").read_bytes()
    code, text = send(p.smtp_port, corpus)
    assert code == 554, (code, text)
    assert "5.7.1" in text and EICAR_SIGNATURE in text, text
    # A clean message passes and is scanned.
    code, text = send(p.smtp_port, CLEAN)
    assert code == 250, (code, text)
    wait_for(lambda: len(raw.messages) == 1, 30, what="the clean message delivered")
    assert b"The rota is unchanged." in raw.messages[0]["data"]
    p.wait_queue_empty()
    assert len(raw.messages) == 1

    # `palisade check` explains: the signature, and where clamd found it.
    report = check(p, CORPUS / "eicar-zip-in-zip.eml")
    av = report["checks"]["antivirus"]
    assert av["facts"]["status"] == "infected", av
    assert av["facts"]["signatures"] == [EICAR_SIGNATURE], av
    assert report["decisions"][0]["action"] == "reject", report["decisions"]
    assert report["smtp_reply"]["code"] == 554, report["smtp_reply"]
    clean = tmp_path / "clean.eml"
    clean.write_bytes(CLEAN)
    assert check(p, clean)["checks"]["antivirus"]["facts"]["status"] == "clean"

    # The refusal is tracked with the reason.
    rejected = p.track(status="rejected")
    assert rejected and any(EICAR_SIGNATURE in json.dumps(m) for m in rejected), rejected

    # A custom signature installed while clamd runs: clamd reloads and knows it.
    out = install(p, tmp_path, "custom")
    assert "is reloading its databases" in out, out
    clamd.wait_signature(CUSTOM_SIGNATURE, CUSTOM_MARKER)
    code, text = send(p.smtp_port, with_attachment("notes.txt", b"hello\n" + CUSTOM_MARKER + b"\n"))
    assert code == 554 and CUSTOM_SIGNATURE in text, (code, text)
    status = p.cli("av", "status", "--json", json_out=True)
    assert [d["name"] for d in status["databases"]] == ["palisade-custom.ndb", "palisade-test.ndb"], status
    assert status["stale"] is False and status["clamd"]["version"].startswith("ClamAV "), status
    audit = p.cli("audit", "list", "--json", json_out=True)
    assert len([a for a in audit if a["action"] == "antivirus.signatures"]) == 2
    assert len(raw.messages) == 1


def test_quarantine_policy_holds_the_virus(palisade_factory, raw_sink_factory, clamd_factory, tmp_path):
    raw = raw_sink_factory()
    clamd = clamd_factory()
    p = appliance(palisade_factory, raw, clamd.address, infected="quarantine")
    install(p, tmp_path)
    clamd.start(p.data / "clamav")
    code, text = send(p.smtp_port, with_attachment("eicar.com", EICAR))
    assert code == 250, (code, text)
    held = wait_for(lambda: p.cli("quarantine", "list", "--json", json_out=True), 30, what="quarantined")
    assert held[0]["reason"] == f"virus: {EICAR_SIGNATURE}", held
    p.wait_queue_empty()
    assert raw.messages == []


def test_encrypted_archive_is_never_clean(palisade_factory, raw_sink_factory, clamd_factory, tmp_path):
    raw = raw_sink_factory()
    clamd = clamd_factory()
    p = appliance(palisade_factory, raw, clamd.address)
    install(p, tmp_path)
    clamd.start(p.data / "clamav")
    corpus = (CORPUS / "encrypted-zip.eml").read_bytes()
    # Default: unscannable → tempfail.
    code, text = send(p.smtp_port, corpus)
    assert code == 451, (code, text)
    report = check(p, CORPUS / "encrypted-zip.eml")
    av = report["checks"]["antivirus"]["facts"]
    assert av["status"] == "unscannable" and "encrypted" in av["unscannable"][0], av
    assert raw.messages == []


def test_clamd_down_tempfails_and_the_retry_is_scanned_once_it_is_back(palisade_factory, raw_sink_factory, clamd_factory, tmp_path):
    raw = raw_sink_factory()
    clamd = clamd_factory()
    p = appliance(palisade_factory, raw, clamd.address)
    install(p, tmp_path)
    clamd.write_conf(p.data / "clamav")
    # clamd is not running: never "clean", a 451 the client retries.
    virus = with_attachment("eicar.com", EICAR)
    for data in (CLEAN, virus):
        code, text = send(p.smtp_port, data)
        assert code == 451, (code, text)
    clean = tmp_path / "clean.eml"
    clean.write_bytes(CLEAN)
    av = check(p, clean)["checks"]["antivirus"]
    assert av["status"]["state"] == "failed" and av["facts"]["status"] == "error", av
    assert raw.messages == []
    # Shown as degraded (the engine probes clamd every 10 s), in words, while it lasts.
    degraded = wait_for(lambda: p.cli("av", "status", "--json", json_out=True)["engine_degraded"], 30,
                        what="the engine reporting clamd down")
    assert any("Antivirus:" in d and "did not answer" in d for d in degraded), degraded
    assert "antivirus.clamd_down" in p.log_text()

    clamd.start()
    wait_for(lambda: p.cli("av", "status", "--json", json_out=True)["engine_degraded"] == [], 30,
             what="clamd no longer degraded")
    # The retries: the virus is now found, the clean message accepted and delivered.
    code, text = send(p.smtp_port, virus)
    assert code == 554 and EICAR_SIGNATURE in text, (code, text)
    code, text = send(p.smtp_port, CLEAN)
    assert code == 250, (code, text)
    wait_for(lambda: len(raw.messages) == 1, 30, what="delivery after clamd is back")
    # Stopped again while running: the same.
    clamd.stop()
    code, text = send(p.smtp_port, CLEAN)
    assert code == 451, (code, text)


class Mirror:
    """A local HTTP server standing in for the organisation's signature mirror: it serves the
    files of a directory and records each path asked for."""

    def __init__(self, directory: Path):
        import http.server
        import threading

        self.asked: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(directory), **kw)

            def log_message(self, *a):
                pass

            def send_head(self):
                mirror.asked.append(self.path)
                return super().send_head()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_signatures_fetched_by_freshclam_on_schedule_and_on_request(
    palisade_factory, raw_sink_factory, clamd_factory, tmp_path
):
    """Issue 10 item 2, the configurable mirror for freshclam: with `antivirus.custom_urls` the
    engine runs the real freshclam on its schedule (the first run 20 s after it starts) as its
    own user; the fetched database is installed into clamav/, clamd reloads, and the custom
    signature then refuses mail (554). A private mirror without the official databases makes
    `palisade av fetch` fail with freshclam's reason, shown by `palisade av status` as a
    degraded state; the mirror saw freshclam ask it for daily.cvd."""
    import shutil as _shutil
    if not _shutil.which("freshclam"):
        pytest.skip("needs freshclam (clamav-freshclam, installed with clamav-daemon)")
    served = tmp_path / "mirror"
    write_signatures(served, "custom")
    mirror = Mirror(served)
    raw = raw_sink_factory()
    clamd = clamd_factory()
    try:
        url = f"http://127.0.0.1:{mirror.port}/palisade-custom.ndb"
        p = appliance(palisade_factory, raw, clamd.address,
                      custom_urls=[url], update_interval_minutes=15,
                      freshclam=_shutil.which("freshclam"))
        install(p, tmp_path, "eicar")
        clamd.start(p.data / "clamav")
        marked = with_attachment("notes.txt", b"see " + CUSTOM_MARKER + b" here", "Notes")
        assert send(p.smtp_port, marked)[0] == 250, "not known before the fetch"

        status = wait_for(lambda: (s := p.cli("av", "status", "--json", json_out=True))["last_update"] and s,
                          90, what="the scheduled freshclam run")
        assert (p.data / "clamav" / "palisade-custom.ndb").exists()
        assert "/palisade-custom.ndb" in mirror.asked
        assert status["last_update"]["ok"], status
        assert "palisade-custom.ndb updated" in status["last_update"]["message"], status
        wait_for(lambda: send(p.smtp_port, marked)[0] == 554, 60, interval=2,
                 what="the fetched signature in use")
        audit = p.cli("audit", "list", "--json", json_out=True)
        assert any(e["action"] == "antivirus.update" and e["target"] == "ok" and e["actor"] == "engine"
                   for e in audit), audit[:5]

        # A private mirror that does not have the official databases: a clear failure.
        toml = p.cli("config", "export").stdout
        f = tmp_path / "mirror.toml"
        assert 'mirror = ""\n' in toml, toml
        f.write_text(toml.replace('mirror = ""\n', f'mirror = "http://127.0.0.1:{mirror.port}"\n', 1))
        p.cli("config", "import", str(f), "--comment", "private mirror")
        r = p.cli("av", "fetch", check=False)
        assert r.returncode != 0 and "freshclam failed" in r.stderr, (r.stdout, r.stderr)
        assert "/daily.cvd" in mirror.asked, mirror.asked
        status = p.cli("av", "status", "--json", json_out=True)
        assert not status["last_update"]["ok"], status
        assert any("fetching signatures from the mirror failed" in d for d in status["engine_degraded"]), status
        # What was fetched before stays in use.
        assert send(p.smtp_port, marked)[0] == 554
    finally:
        mirror.close()
