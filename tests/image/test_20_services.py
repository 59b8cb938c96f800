"""The running appliance: mail in, the console, users, supervision."""

import json
import re
import socket
import ssl
import subprocess
import uuid

import pytest

from conftest import wait_for


def swaks(port: int, to: str, body: str, extra=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from", "sender@example.org",
         "--to", to, "--header", f"Subject: {body}", "--body", body, "--timeout", "60", *extra],
        capture_output=True, text=True, timeout=120,
    )


def test_swaks_message_is_delivered_to_the_maildir(guest):
    token = f"palisade-image-test-{uuid.uuid4()}"
    r = swaks(guest.ports["smtp"], "alice@example.test", token)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"<-\s+250 ", r.stdout), r.stdout
    found = wait_for(
        "the message in /data/mailbox",
        lambda: guest.run(f"grep -rl '{token}' /data/mailbox").out.split(),
        timeout=120,
    )
    assert all("/new/" in f for f in found), found
    guest.delivered_token = token


def test_submission_port_greets(guest):
    with socket.create_connection(("127.0.0.1", guest.ports["submission"]), timeout=60) as s:
        banner = s.recv(512).decode(errors="replace")
    assert banner.startswith("220"), banner


def test_console_answers_https(guest):
    if guest.run("palisade console --help").rc != 0:
        pytest.xfail("this build has no `palisade console` yet")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the appliance's first certificate is self-signed

    def get():
        with socket.create_connection(("127.0.0.1", guest.ports["console"]), timeout=30) as raw:
            with ctx.wrap_socket(raw) as s:
                # What a browser sends for https://127.0.0.1:PORT/: by default the console
                # answers to its host name and to any IP address (console.hostnames).
                host = f"127.0.0.1:{guest.ports['console']}".encode()
                s.sendall(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
                return s.recv(4096).decode(errors="replace")

    head = wait_for("an HTTPS answer from the console", get, timeout=120, interval=3)
    assert re.match(r"HTTP/1\.[01] [23]\d\d", head), head


def test_services_run_as_their_own_users(guest):
    ps = guest.sh("ps -eo user:20,pid,ppid,args --no-headers")
    main_pid = guest.sh("systemctl show -P MainPID palisade.service").strip()
    rows = [l.split(None, 3) for l in ps.splitlines()]
    supervisor = [r for r in rows if r[1] == main_pid]
    assert supervisor and supervisor[0][0] == "root", ps
    children = {r[3].split()[-1]: r[0] for r in rows if r[2] == main_pid}
    assert children.get("engine") == "palisade-mail", ps
    if "console" in children:
        assert children["console"] == "palisade-web", ps
    chrony = [r for r in rows if r[3].startswith("/usr/sbin/chronyd")]
    assert chrony and chrony[0][0] == "_chrony", ps
    # Only the supervisor holds the SMTP ports; nothing else listens but what we know.
    listening = guest.sh("ss -Htlnp")
    for port in (":25 ", ":587 "):
        line = next(l for l in listening.splitlines() if port in l)
        assert "palisade" in line, listening


def test_palisade_service_sandbox_exposure(guest):
    """The issue's bar: `systemd-analyze security palisade.service` exposure at most 3.0."""
    out = guest.sh("systemd-analyze security --no-pager palisade.service")
    m = re.search(r"Overall exposure level for palisade\.service: ([0-9.]+)", out)
    assert m, out[-2000:]
    exposure = float(m.group(1))
    print(f"\n  systemd-analyze security palisade.service: exposure {exposure}")
    assert exposure <= 3.0, out


EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def test_clamd_runs_unprivileged_once_signatures_are_uploaded(guest):
    # A local body signature for the EICAR test string stands in for uploaded signatures.
    # Installed with the CLI; palisade-clamd.path starts clamd (nobody runs systemctl).
    guest.write_file("/tmp/palisade-test.ndb", f"Palisade.Test.EICAR:0:*:{EICAR.hex()}\n".encode())
    out = guest.sh("palisade --data /data av update /tmp/palisade-test.ndb")
    assert "installed palisade-test.ndb: 1 signature(s)" in out, out
    # clamd opens its socket only after it has loaded the databases. It runs with
    # PrivateNetwork=, so its listening socket shows up in its own network namespace.
    def listening():
        pid = guest.run("systemctl show -P MainPID palisade-clamd.service").out.strip()
        if pid in ("", "0"):
            return None
        out = guest.run(f"nsenter -t {pid} -n ss -Hxlp").out
        hits = [l for l in out.splitlines() if "/run/clamav-palisade/clamd.sock" in l and f"pid={pid}," in l]
        return hits and pid

    pid = wait_for("clamd listening on /run/clamav-palisade/clamd.sock", listening, timeout=180, interval=3)
    assert guest.sh(f"ps -o user= -p {pid}").strip() == "clamav"
    assert guest.sh("stat -c '%U:%G %a' /run/clamav-palisade").strip() == "clamav:palisade 750"
    log = guest.sh("journalctl -u palisade-clamd.service -o cat --no-pager")
    assert re.search(r"Loaded [1-9]\d* signatures", log), log[-3000:]
    # Still the same process a while later: it did not load, fail and restart.
    wait_for("clamd to stay up", lambda: guest.sh("sleep 5; systemctl show -P MainPID,NRestarts palisade-clamd.service").split() == [pid, "0"], timeout=30)
    # Of /data, clamd sees its signatures and nothing else.
    seen = guest.sh(f"ls -A /proc/{pid}/root/data").split()
    assert seen == ["clamav"], seen


def test_antivirus_refuses_a_virus_through_the_appliances_clamd(guest):
    """The engine (palisade-mail, sandboxed) reaches clamd's socket: EICAR is refused at DATA
    with 554, a clean message is delivered; the configuration is restored afterwards."""
    wait_for("clamd answering", lambda: "clamd at unix:/run/clamav-palisade/clamd.sock: ClamAV" in
             guest.run("palisade --data /data av status").out, timeout=120, interval=3)
    toml = guest.sh("cat /usr/share/palisade/appliance.toml") + "\n[antivirus]\nenabled = true\n"
    guest.write_file("/data/av.toml", toml.encode())
    assert "revision" in guest.sh("palisade --data /data config import /data/av.toml --comment 'image test: antivirus'")
    try:
        def refused():
            r = swaks(guest.ports["smtp"], "alice@example.test", EICAR.decode())
            return "554 5.7.1" in r.stdout and r
        r = wait_for("EICAR refused with 554", refused, timeout=60, interval=2)
        assert "Palisade.Test.EICAR" in r.stdout, r.stdout[-2000:]
        token = f"clean-{uuid.uuid4().hex[:12]}"
        r = swaks(guest.ports["smtp"], "alice@example.test", token)
        assert r.returncode == 0, r.stdout[-2000:]
        wait_for("the clean message in the Maildir",
                 lambda: guest.run(f"grep -rl {token} /data/mailbox/new").rc == 0, timeout=60)
    finally:
        guest.sh("palisade --data /data config import /usr/share/palisade/appliance.toml --comment 'image test: antivirus off'")


def engine_pid(guest) -> str:
    return guest.run("pgrep -u palisade-mail -f 'palisade .*engine'").out.split()[0]


def test_engine_killed_with_sigkill_is_restarted_by_the_supervisor(guest):
    main_before = guest.sh("systemctl show -P MainPID palisade.service").strip()
    old = engine_pid(guest)
    guest.sh(f"kill -9 {old}")
    new = wait_for("a new engine", lambda: (p := guest.run("pgrep -u palisade-mail -f 'palisade .*engine'").out.split()) and p[0] != old and p[0], timeout=90)
    assert new != old
    assert guest.sh("systemctl show -P MainPID palisade.service").strip() == main_before
    r = wait_for("mail accepted again", lambda: (x := swaks(guest.ports["smtp"], "bob@example.test", "after engine kill")).returncode == 0 and x, timeout=120, interval=3)
    assert r


def unit(guest, name: str, *props: str) -> dict[str, str]:
    out = guest.sh(f"systemctl show {name} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_supervisor_killed_with_sigkill_is_restarted_by_systemd(guest):
    before = unit(guest, "palisade.service", "MainPID", "NRestarts")
    guest.sh(f"kill -9 {before['MainPID']}")

    def restarted():
        st = unit(guest, "palisade.service", "ActiveState", "MainPID", "NRestarts")
        return st["ActiveState"] == "active" and st["MainPID"] not in ("0", before["MainPID"]) and st
    st = wait_for("palisade.service active again with a new supervisor", restarted, timeout=180, interval=2)
    assert int(st["NRestarts"]) == int(before["NRestarts"]) + 1
    r = wait_for("mail accepted again", lambda: (x := swaks(guest.ports["smtp"], "carol@example.test", "after supervisor kill")).returncode == 0 and x, timeout=120, interval=3)
    assert r


def test_prepare_state_that_must_survive_reboots(guest):
    """A configuration change and a message that stays queued (its smarthost never answers);
    test_30 looks for both after rebooting into the other firmware slot."""
    toml = guest.sh("cat /usr/share/palisade/appliance.toml") + (
        '\n[[domain]]\nname = "held.test"\nroute = "smarthosts"\nsmarthosts = ["127.0.0.1:9"]\n')
    guest.write_file("/data/held.toml", toml.encode())
    out = guest.sh("palisade --data /data config import /data/held.toml --comment 'image test'")
    assert "revision" in out, out
    token = f"held-{uuid.uuid4().hex[:12]}"
    r = wait_for("held.test accepted", lambda: (x := swaks(guest.ports["smtp"], f"{token}@held.test", token)).returncode == 0 and x, timeout=120, interval=3)
    queued = wait_for("the message in the queue",
                      lambda: token in (q := guest.sh(f"palisade --data /data queue list {token} --json")) and q, timeout=60)
    guest.held_token = token
    guest.held_queue = json.loads(queued)
    guest.config_revision = guest.sh("palisade --data /data config history --json")
    assert "held.test" in guest.sh("palisade --data /data config export")
    assert r and queued
