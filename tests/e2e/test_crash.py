"""The promise under fire: senders record every 250 while the engine is SIGKILLed at random
moments; after the queue drains, every acknowledged message is at the sink. Duplicates are
allowed (and counted); a single loss fails."""

import os
import random
import re
import signal
import smtplib
import threading
import time

from harness import OUTPUT, wait_for

KILLS = int(os.environ.get("PALISADE_CRASH_KILLS", "25"))
SENDERS = 4


def test_no_acknowledged_message_is_lost_when_the_engine_is_killed(palisade_factory, sink_factory):
    sink = sink_factory()
    p = palisade_factory({"domain": [
        {"name": "example.test", "route": "maildir"},
        {"name": "sink.test", "route": "smarthosts", "smarthosts": [f"127.0.0.1:{sink.port}"]},
    ]})

    acked: set[str] = set()
    attempts = 0
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int):
        nonlocal attempts
        seq = 0
        conn = None
        while not stop.is_set():
            uid = f"u{n}-{seq}"
            body = f"Subject: crash {uid}\r\nX-Test-Id: {uid}\r\n\r\n{uid}\r\n" + ("filler line\r\n" * random.randint(0, 200))
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", p.smtp_port, timeout=10)
                with lock:
                    attempts += 1
                # sendmail raises unless the final reply is 250: only then is the id acknowledged.
                conn.sendmail("crash@example.org", [f"{uid}@sink.test"], body)
                with lock:
                    acked.add(uid)
                seq += 1
                if random.random() < 0.2:
                    conn.quit()
                    conn = None
            except (smtplib.SMTPException, OSError):
                conn = None
                seq += 1  # never reuse an id whose fate is unknown
                time.sleep(0.05)
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
    for t in threads:
        t.start()

    pids = set()
    try:
        for k in range(KILLS):
            # A fresh process each time: the status file may still show the one just killed.
            pid = wait_for(lambda: (x := p.engine_pid()) not in pids and x, 60, what=f"engine back after kill {k}")
            pids.add(pid)
            time.sleep(random.uniform(1.0, 2.5))
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (x := p.engine_pid()) not in pids and x, 60, what="engine back after the last kill")
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(60)

    assert len(pids) == KILLS, "each kill hit a fresh engine process started by the supervisor"
    p.wait_queue_empty(timeout=180)

    delivered: dict[str, int] = {}
    for m in sink.messages():
        for uid in re.findall(rb"X-Test-Id: (u\d+-\d+)", m):
            delivered[uid.decode()] = delivered.get(uid.decode(), 0) + 1
    lost = sorted(acked - delivered.keys())
    duplicates = sum(c - 1 for c in delivered.values() if c > 1)
    unacked_delivered = len(delivered.keys() - acked)
    summary = (f"kills={KILLS} attempts={attempts} acknowledged={len(acked)} delivered_unique={len(delivered)} "
               f"duplicates={duplicates} delivered_without_ack={unacked_delivered} lost={len(lost)}")
    print(summary)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "crash-summary.txt").write_text(summary + "\n")
    assert len(acked) > KILLS * 5, f"too little traffic to mean anything: {summary}"
    assert not lost, f"LOST acknowledged messages: {lost[:20]} ... {summary}"
