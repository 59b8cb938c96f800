"""Issue 8, finding 3, mechanism by mechanism: what holds a slow or idle SMTP client to account.
Each test shortens one limit in the configuration and shows it cuts a client that a per-read
timeout never would (the client keeps sending, just too slowly), with the reply it gets, and
that nothing of an unfinished message is queued. `test_slow_clients.py` is the same defence
under the full 500-connection attack."""

import socket
import threading
import time

import pytest

from harness import wait_for


class Client:
    """A raw SMTP client bound to a source address of its own."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    return "\n".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(lines[-1]) < 4 or lines[-1][3] != "-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def trickle(self, data: bytes, interval: float, stop_after: float = 60) -> tuple[str, float]:
        """Sends `data` one byte every `interval` s until the server answers or closes;
        returns the answer and the seconds it took."""
        t0 = time.monotonic()
        self.sock.setblocking(False)
        i = 0
        try:
            while time.monotonic() - t0 < stop_after:
                try:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break
                    self.buf += chunk
                    if b"\r\n" in self.buf:
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    break
                try:
                    self.sock.send(data[i % len(data):i % len(data) + 1])
                except OSError:
                    break
                i += 1
                time.sleep(interval)
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(5)
        return self.reply(), time.monotonic() - t0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture(scope="module")
def limited(request):
    from harness import Palisade

    p = Palisade(f"limits-{request.module.__name__}", {
        "smtp": {
            "command_timeout_secs": 3,
            "data_timeout_secs": 30,
            "min_data_rate": 1024,
            "data_rate_grace_secs": 2,
            "max_session_secs": 10,
            "junk_command_limit": 5,
        },
    })
    p.start()
    yield p
    p.cleanup()


def test_a_command_line_trickled_byte_by_byte_is_cut_at_the_command_deadline(limited):
    c = Client(limited.smtp_port)
    assert c.greeting.startswith("220")
    # 0.5 s between bytes: well inside any per-read timeout, far too slow for a whole line.
    reply, secs = c.trickle(b"EHLO a.very.slow.client.example\r\n", 0.5)
    c.close()
    print(f"\nABUSE deadline_command: cut after {secs:.1f} s with {reply!r}")
    assert reply.startswith("421 4.4.2"), reply
    assert 2.5 <= secs <= 6, secs


def test_a_message_trickled_below_the_minimum_rate_is_cut_and_nothing_is_queued(limited):
    before = len(limited.track(limit=10000))
    c = Client(limited.smtp_port)
    assert c.cmd("EHLO rate.example").startswith("250")
    assert c.cmd("MAIL FROM:<slow@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<bob@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    reply, secs = c.trickle(b"Subject: slow\r\n\r\n" + b"x" * 200 + b"\r\n", 0.05)  # 20 B/s
    c.close()
    print(f"\nABUSE deadline_data_rate: cut after {secs:.1f} s with {reply!r}")
    assert reply.startswith("421 4.4.2") and "rate" in reply, reply
    assert 1.5 <= secs <= 5, secs
    time.sleep(0.5)
    assert not [t for t in limited.track(limit=10000)[before:] if t["status"] != "rejected"]
    assert not any(b"Subject: slow" in m for m in limited.mailbox())


def test_a_fast_message_is_not_affected_by_the_rate_limit(limited):
    c = Client(limited.smtp_port)
    assert c.cmd("EHLO fast.example").startswith("250")
    assert c.cmd("MAIL FROM:<fast@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<bob@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    # 2 s of think time inside the grace period, then the rest at full speed.
    c.sock.sendall(b"Subject: fast after a pause\r\n\r\n")
    time.sleep(1.5)
    c.sock.sendall((b"y" * 70 + b"\r\n") * 700 + b".\r\n")
    assert c.reply().startswith("250"), "a message sent fast enough after a pause is accepted"
    c.close()


def test_sessions_end_at_the_session_cap_however_busy_they_look(palisade_factory):
    p = palisade_factory({"smtp": {"max_session_secs": 10}})
    c = Client(p.smtp_port)
    assert c.cmd("EHLO busy.example").startswith("250")
    t0 = time.monotonic()
    reply = ""
    # A command every second: never idle, well within the junk allowance.
    while time.monotonic() - t0 < 20:
        reply = c.cmd("NOOP")
        if not reply.startswith("250"):
            break
        time.sleep(1)
    secs = time.monotonic() - t0
    c.close()
    print(f"\nABUSE deadline_session: cut after {secs:.1f} s with {reply!r}")
    assert reply.startswith("421 4.4.2"), reply
    assert 8 <= secs <= 13, secs


def test_junk_commands_are_limited_between_messages(limited):
    c = Client(limited.smtp_port)
    # EHLO counts as one; four NOOPs make five; the sixth junk command ends the session.
    assert c.cmd("EHLO junk.example").startswith("250")
    for _ in range(4):
        assert c.cmd("NOOP").startswith("250")
    reply = c.cmd("NOOP")
    assert reply.startswith("421 4.7.0"), reply
    c.close()
    # An accepted message resets the allowance.
    c = Client(limited.smtp_port)
    assert c.cmd("EHLO junk2.example").startswith("250")
    for _ in range(3):
        assert c.cmd("NOOP").startswith("250")
    assert c.cmd("MAIL FROM:<a@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<bob@example.test>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.sock.sendall(b"Subject: junk reset\r\n\r\nhi\r\n.\r\n")
    assert c.reply().startswith("250")
    for _ in range(5):
        assert c.cmd("NOOP").startswith("250")
    c.close()


def test_near_the_connection_limit_idle_sessions_get_the_short_timeout(palisade_factory):
    p = palisade_factory({"smtp": {"max_connections": 10, "max_connections_per_ip": 10,
                                    "stress_threshold_percent": 50, "stress_timeout_secs": 2,
                                    "command_timeout_secs": 300}})
    # Below the threshold an idle client keeps its 300 s.
    calm = [Client(p.smtp_port, "127.0.7.1") for _ in range(3)]
    time.sleep(3)
    for c in calm:
        c.sock.settimeout(0.2)
        try:
            got = c.sock.recv(100)
        except (socket.timeout, TimeoutError):
            got = None
        assert got is None, f"an idle client below the threshold was cut: {got!r}"
        c.sock.settimeout(10)
    # At 70 % the short timeout applies to every session: the calm ones, idle for 3 s
    # already, are cut at once (their clock does not restart; the load stays >= 50 % until
    # the third is gone)...
    crowd = [Client(p.smtp_port, "127.0.7.2") for _ in range(4)]
    t0 = time.monotonic()
    for c in calm:
        c.sock.settimeout(5)
    replies = [c.reply() for c in calm]
    secs = time.monotonic() - t0
    print(f"\nABUSE stress_mode: 3 idle sessions cut {secs:.1f} s after the load reached 70 %: {set(replies)}")
    assert all(r.startswith("421 4.4.2") for r in replies), replies
    assert secs <= 3, secs
    # ...and with the load back under the threshold the newer ones keep the normal timeout.
    time.sleep(2.5)
    for c in crowd:
        assert c.cmd("NOOP").startswith("250")
    for c in calm + crowd:
        c.close()


def test_when_full_a_newcomer_takes_a_slot_from_the_address_holding_the_most(palisade_factory):
    p = palisade_factory({"smtp": {"max_connections": 4, "max_connections_per_ip": 4,
                                    "stress_timeout_secs": 60}})
    hog = [Client(p.smtp_port, "127.0.8.1") for _ in range(4)]
    assert all(c.greeting.startswith("220") for c in hog)
    newcomer = Client(p.smtp_port, "127.0.8.2")
    assert newcomer.greeting.startswith("220"), newcomer.greeting
    assert newcomer.cmd("EHLO newcomer.example").startswith("250")
    # Exactly one of the hog's sessions was told to leave, with a reason.
    cut = []

    def read(c):
        c.sock.settimeout(3)
        try:
            r = c.reply()
        except OSError:
            r = ""
        if r:
            cut.append(r)

    threads = [threading.Thread(target=read, args=(c,)) for c in hog]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cut == ["421 4.7.0 palisade.test Too many connections from your address, closing"], cut
    # The hog cannot take it back: reconnecting from its address is refused, not evicting.
    again = Client(p.smtp_port, "127.0.8.1")
    assert again.greeting.startswith("421 4.7.0"), again.greeting
    wait_for(lambda: newcomer.cmd("NOOP").startswith("250"), 5, what="the newcomer still served")
    for c in hog + [again, newcomer]:
        c.close()
