"""The supervisor: least privilege, restarts, crash loops (reported, never given up on),
draining on SIGTERM, sd-notify, and refusing a broken configuration before binding anything."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from harness import Palisade, SmtpClient, palisade_bin, port_open, wait_for


def proc_status(pid: int) -> dict:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_engine_runs_as_its_own_user_without_privileges(palisade_factory):
    import pwd

    p = palisade_factory()
    st = proc_status(p.engine_pid())
    uid = pwd.getpwnam("palisade-mail").pw_uid
    assert st["Uid"].split() == [str(uid)] * 4
    assert st["CapEff"] == "0000000000000000"
    assert st["CapPrm"] == "0000000000000000"
    assert st["NoNewPrivs"] == "1"
    import grp

    assert st["Groups"].split() == [str(grp.getgrnam("palisade").gr_gid)], "only the shared group"
    sup = proc_status(p.proc.pid)
    assert sup["Uid"].split()[0] == "0"
    # keys and spool belong to the engine's user; nobody else may read the keys
    assert oct(os.stat(p.data / "tls" / "smtp.key").st_mode & 0o777) == "0o600"
    assert os.stat(p.data / "tls" / "smtp.key").st_uid == uid
    assert os.stat(p.data / "spool").st_uid == uid


def test_crashed_engine_is_restarted_and_serves_again(palisade_factory):
    p = palisade_factory()
    first = p.engine_pid()
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (pid := p.engine_pid()) and pid != first and pid, 30, what="a new engine")
    assert second != first
    c = SmtpClient(p.smtp_port)
    assert c.greeting.startswith("220")
    assert p.child()["restarts"] == 1
    assert "supervisor.child_exited" in p.log_text()


def console_answers(port: int) -> bool:
    """The console's HTTPS port completes a TLS handshake and answers a request."""
    import http.client
    import ssl

    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    try:
        c.request("GET", "/login")
        return c.getresponse().status == 200
    finally:
        c.close()


def crash_loop_events(log: str) -> int:
    return len(re.findall(r"supervisor\.crash_loop(?!_ended)\b", log))


def test_crash_looping_engine_is_reported_and_recovers_without_stopping_anything(palisade_factory, tmp_path):
    import threading

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    statuses = []

    def collect():
        while True:
            try:
                statuses.extend(l for l in notify.recv(4096).decode().splitlines() if l.startswith("STATUS="))
            except OSError:
                return

    threading.Thread(target=collect, daemon=True).start()
    # A 20 s window: the crash loop ends once the engine has been ready for 20 s.
    p = palisade_factory({"supervisor": {"restart_limit_burst": 3, "restart_limit_interval_secs": 20}},
                         extra_env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    log_start = len(p.log_text())  # the log file is appended to across runs
    console_pid = p.child("console")["pid"]
    assert console_pid and p.child()["state"] == "running" and p.status()["degraded"] == []

    # A real fault: the engine's STARTTLS key is garbage, so every engine start fails.
    key = p.data / "tls" / "smtp.key"
    good_key = key.read_bytes()
    key.write_bytes(b"this is not a PEM private key\n")
    os.kill(p.engine_pid(), signal.SIGKILL)
    wait_for(lambda: p.child()["state"] == "crash_loop", 60, what="the engine in crash_loop")

    # Loud, but nothing else stops: the supervisor runs, the console keeps serving.
    assert p.proc.poll() is None
    st = p.status()
    assert st["degraded"] == ["engine"], st
    eng = p.child()
    assert eng["crashes"] >= 3 and eng["crash_window_secs"] == 20, eng
    assert eng["crash_loop_since"], eng
    assert p.child("console")["pid"] == console_pid
    assert p.child("console")["state"] == "running"
    assert console_answers(p.console_port)
    assert any(re.fullmatch(r"STATUS=degraded: engine crash-looping \(\d+ crashes in 20s\), restarting in \d+s", s)
               for s in statuses), statuses
    # One crash-loop event however many crashes follow; its audit entry.
    restarts = eng["restarts"]
    wait_for(lambda: p.child()["restarts"] > restarts, 60, what="another failed engine start")
    eng = p.child()
    assert eng["state"] == "crash_loop" and eng["last_exit_code"] not in (None, 0), eng
    assert crash_loop_events(p.log_text()[log_start:]) == 1, p.log_tail()
    assert "smtp.key" in p.log_text()[log_start:], "the engine says why it cannot start"
    audit = p.cli("audit", "list", "--json", "--action", "service.", json_out=True)
    assert [(a["action"], a["actor"], a["target"]) for a in audit] == [("service.crash_loop", "system", "engine")], audit

    # Repaired: the engine comes back at its next start, serves mail, and the state clears.
    key.write_bytes(good_key)
    wait_for(lambda: p.child()["ready"], 60, what="the engine ready again")
    assert p.child()["state"] == "crash_loop", "still in the state until it has stayed up"
    c = SmtpClient(p.smtp_port)
    assert c.greeting.startswith("220")
    assert c.cmd("EHLO recovered.example").startswith("250")
    assert c.cmd("MAIL FROM:<a@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: after the crash loop\r\n\r\nhello\r\n.\r\n")
    assert c.reply().startswith("250 2.0.0 Ok: queued as")
    c.close()
    wait_for(lambda: any(b"after the crash loop" in m for m in p.mailbox()), 30, what="delivery")
    wait_for(lambda: p.child()["state"] == "running", 60, what="the crash loop to end")
    assert p.status()["degraded"] == []
    assert "supervisor.crash_loop_ended" in p.log_text()[log_start:]
    audit = p.cli("audit", "list", "--json", "--action", "service.", json_out=True)
    assert sorted(a["action"] for a in audit) == ["service.crash_loop", "service.recovered"], audit
    assert p.child("console")["pid"] == console_pid
    assert p.proc.poll() is None
    assert statuses[-1] == "STATUS=serving", statuses
    notify.close()


def test_sigterm_drains_in_flight_sessions_and_exits_zero(palisade_factory):
    p = palisade_factory()
    busy = SmtpClient(p.smtp_port)
    busy.cmd("EHLO busy")
    assert busy.cmd("MAIL FROM:<a@example.org>").startswith("250")
    assert busy.cmd("RCPT TO:<drain@example.test>").startswith("250")
    assert busy.cmd("DATA").startswith("354")
    busy.send(b"Subject: in flight during shutdown\r\n\r\npart one\r\n")
    idle = SmtpClient(p.smtp_port)
    idle.cmd("EHLO idle")

    p.proc.send_signal(signal.SIGTERM)
    # The idle session is told at once; the one in DATA finishes its message.
    assert idle.reply().startswith("421 4.3.2")
    time.sleep(0.5)
    busy.send(b"part two\r\n.\r\n")
    assert busy.reply().startswith("250 2.0.0 Ok: queued as")
    assert busy.cmd("MAIL FROM:<a@example.org>").startswith("421 4.3.2")
    assert p.proc.wait(60) == 0
    assert not port_open(p.smtp_port)

    # What was accepted during the drain is delivered after the restart.
    p.start()
    wait_for(lambda: any(b"in flight during shutdown" in m for m in p.mailbox()), 30, what="delivery after restart")


def test_sd_notify_ready_status_and_watchdog(tmp_path):
    sock_path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))
    s.settimeout(1)
    p = Palisade("sd-notify", extra_env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
    try:
        p.start(wait=False)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (any("READY=1" in m for m in seen) and sum("WATCHDOG=1" in m for m in seen) >= 2):
            try:
                seen.append(s.recv(4096).decode())
            except TimeoutError:
                pass
        assert any("READY=1" in m for m in seen), seen
        assert any("STATUS=" in m for m in seen), seen
        assert sum("WATCHDOG=1" in m for m in seen) >= 2, seen
        # READY only once the engine serves.
        assert port_open(p.smtp_port)
        p.stop()
        try:
            while True:
                seen.append(s.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in m for m in seen), seen
    finally:
        p.cleanup()
        s.close()


def test_invalid_configuration_reports_every_problem_and_binds_nothing(tmp_path):
    from harness import free_port, scratch_dir

    d = scratch_dir("badconfig")
    port = free_port()
    cfg = d / "bad.toml"
    cfg.write_text(
        f'[system]\nhostname = "not a hostname"\n'
        f'[smtp]\nlisten = ["127.0.0.1:{port}"]\nmax_recipients = 0\ntrusted_networks = ["0.0.0.0/0"]\nmax_message_size = "big"\n'
        f'[[domain]]\nname = "example.test"\nroute = "smarthosts"\n'
        f'[nonsense]\nx = 1\n'
    )
    r = subprocess.run([palisade_bin(), "--data", str(d / "data"), "run", "--initial-config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 64, r.stderr
    for path in ["system.hostname", "smtp.max_recipients", "smtp.trusted_networks[0]", "smtp.max_message_size",
                 "domain[0].smarthosts", "nonsense"]:
        assert path in r.stderr, (path, r.stderr)
    assert "open relay" in r.stderr
    assert not port_open(port)
