"""Issue 8, finding 4: anyone who can make the engine crash repeatedly (here: SIGKILL, 20 times
in about a minute) makes the supervisor give up after `restart_limit_burst` (default 10 within
120 s) and take the whole appliance, console included, down with it. Wanted: the supervisor
keeps going (backing off), the console keeps answering, no acknowledged message is lost."""

import os
import re
import signal
import smtplib
import threading
import time

import pytest

from abuse import Console, child_pid, record
from harness import wait_for

KILLS = 20
KILL_EVERY_SECS = 3.0
RESTART_WAIT_SECS = 40
PLANNED_SECS = KILLS * (KILL_EVERY_SECS + 0.5)  # a supervisor that backs off may take a while to start the next one


@pytest.mark.timeout(300)
def test_crash_loop_does_not_take_the_appliance_down(palisade_factory):
    # The shipped defaults (the harness raises the limit for the other tiers).
    p = palisade_factory({"supervisor": {"restart_limit_burst": 10, "restart_limit_interval_secs": 120}})

    acked: dict[str, float] = {}  # Message-ID -> time of its 250
    send_errors = 0
    polls = {"ok": 0, "failed": 0}
    poll_failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    t_begin = time.monotonic()

    def sender():
        nonlocal send_errors
        seq = 0
        conn = None
        while not stop.is_set():
            mid = f"<crashloop-{seq}-{time.time_ns()}@abuse.test>"
            seq += 1
            msg = (f"From: crash@example.org\r\nTo: carol@example.test\r\nSubject: crash loop {seq}\r\n"
                   f"Message-ID: {mid}\r\n\r\nmessage {seq}\r\n")
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=10, local_hostname="sender.example")
                conn.sendmail("crash@example.org", ["carol@example.test"], msg)
                with lock:
                    acked[mid] = time.monotonic()
            except (smtplib.SMTPException, OSError):
                send_errors += 1
                if conn is not None:
                    try:
                        conn.close()
                    except OSError:
                        pass
                conn = None
                stop.wait(0.1)
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def poller():
        while not stop.is_set():
            t = time.monotonic() - t_begin
            try:
                r = Console(p.console_port, timeout=5).get("/login")
                ok = r.status == 200
                why = str(r.status)
            except OSError as e:
                ok, why = False, type(e).__name__
            with lock:
                if ok:
                    polls["ok"] += 1
                else:
                    polls["failed"] += 1
                    poll_failures.append(f"{t:.1f}s:{why}")
            stop.wait(0.5)

    threads = [threading.Thread(target=sender), threading.Thread(target=poller)]
    for t in threads:
        t.start()

    killed: list[int] = []
    kill_times: list[float] = []
    supervisor_exit = None
    exit_at = None
    stuck = None
    try:
        for k in range(KILLS):
            try:
                pid = wait_for(lambda: p.proc.poll() is not None or ((x := child_pid(p, "engine")) not in killed and x),
                               RESTART_WAIT_SECS, what=f"engine back after kill {k}")
            except AssertionError as e:
                stuck = str(e)
                break
            if p.proc.poll() is not None:
                break
            time.sleep(KILL_EVERY_SECS)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.append(pid)
            kill_times.append(time.monotonic() - t_begin)
        if p.proc.poll() is not None:
            exit_at = time.monotonic() - t_begin
        # Let it come back and serve a little after the last kill.
        if p.proc.poll() is None:
            try:
                wait_for(lambda: p.proc.poll() is not None or ((x := child_pid(p, "engine")) not in killed and x),
                         RESTART_WAIT_SECS, what="engine back after the last kill")
            except AssertionError as e:
                stuck = stuck or str(e)
            time.sleep(3)
        else:
            # It gave up early: keep sending and polling for as long as the attack was planned,
            # so the figures show what the users saw.
            time.sleep(max(0.0, t_begin + PLANNED_SECS - time.monotonic()))
    finally:
        stop.set()
        t_end = time.monotonic()
        for t in threads:
            t.join(30)
    supervisor_exit = p.proc.poll()
    alive = supervisor_exit is None

    # Every acknowledged message must be in the mailbox (the queue drains only if it runs).
    def missing():
        have = set()
        for m in p.mailbox():
            have.update(x.decode() for x in re.findall(rb"Message-I[dD]: (<[^>]+>)", m))
        return sorted(set(acked) - have)

    if alive:
        try:
            p.wait_queue_empty(timeout=60)
        except AssertionError:
            pass
    lost = missing()
    times = sorted(acked.values())
    edges = [t_begin] + times + [t_end]
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    longest_gap = max(gaps) if gaps else None
    fig = record(
        "crash_loop",
        kills=len(killed), kill_span_secs=round(kill_times[-1] - kill_times[0], 1) if kill_times else 0,
        supervisor_running=alive, supervisor_exit_code=supervisor_exit,
        supervisor_exited_at_secs=None if exit_at is None else round(exit_at, 1), stuck=stuck,
        acknowledged=len(acked), send_errors=send_errors, undelivered_acknowledged=len(lost),
        longest_gap_between_250s_secs=None if longest_gap is None else round(longest_gap, 1),
        console_polls_ok=polls["ok"], console_polls_failed=polls["failed"],
        console_first_failures=poll_failures[:5],
    )
    assert alive, f"the supervisor exited ({supervisor_exit}) after {len(killed)} engine crashes: {fig}"
    assert stuck is None, stuck
    assert len(killed) == KILLS, fig
    assert polls["failed"] <= 1, f"the console stopped answering: {poll_failures[:10]}"
    assert len(acked) > KILLS, f"too little traffic to mean anything: {fig}"
    assert not lost, f"acknowledged but not delivered: {lost[:10]}"
