"""The supervisor: least privilege, restarts, giving up, draining on SIGTERM, sd-notify, and
refusing a broken configuration before binding anything."""

import os
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


def test_supervisor_gives_up_loudly_on_a_crash_loop(palisade_factory):
    p = palisade_factory({"supervisor": {"restart_limit_burst": 3, "restart_limit_interval_secs": 60}})
    for _ in range(2):
        pid = wait_for(p.engine_pid, 30, what="engine")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: p.engine_pid() not in (pid, None), 30, what="a restarted engine")
    os.kill(p.engine_pid(), signal.SIGKILL)
    code = p.proc.wait(30)
    assert code == 1
    assert "keeps crashing" in p.log_text() or "giving up" in p.log_text()
    assert not port_open(p.smtp_port)


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
