"""Issue 8, finding 2: a stranger who knows an account name can lock its owner out. Wrong
passwords from one address (or a few from each of many) must throttle the guesser, not the
owner signing in from an address the owner used before."""

import collections
import re
import time

import pytest

from abuse import Console, first_login, logged_in, record, smtp_auth_once

ATTACKER = "127.0.0.2"
OWNER = "127.0.0.3"
ADMIN_PASSWORD = "correct horse battery staple 8"
GUESSES = 30
# A throttled attacker may be slowed down; the attack itself is bounded in time.
ATTACK_BUDGET_SECS = 60


def _smtp_guesses(port: int, source: str, user: str, n: int, deadline: float) -> collections.Counter:
    """n wrong AUTH PLAIN attempts, each on its own connection (the server closes a session
    after a few errors anyway)."""
    seen = collections.Counter()
    for i in range(n):
        if time.monotonic() >= deadline:
            break
        r = smtp_auth_once(port, source, user, f"guess {i}", timeout=30)
        seen[r[:9] if r else "(closed)"] += 1
    return seen


def _console_guesses(port: int, source: str, user: str, n: int, deadline: float) -> collections.Counter:
    seen = collections.Counter()
    c = Console(port, source, timeout=30)
    for i in range(n):
        if time.monotonic() >= deadline:
            break
        try:
            r = c.login(user, f"guess {i}")
            seen["success" if logged_in(r) else r.status] += 1
        except (OSError, AssertionError) as e:
            seen[f"error: {type(e).__name__}"] += 1
    return seen


def _retry_right_after(attempt, was_checked):
    """One more guess straight after the attack. Waits are counted in whole seconds from the
    last real failure, so on a slow run the last wait may have just run out and this guess gets
    a real (refused) check; the guess straight after that fresh failure must be held back."""
    r = attempt()
    return attempt() if was_checked(r) else r


def _throttle_entries(p) -> collections.Counter:
    seen = collections.Counter()
    for prefix in ("login.", "smtp_auth."):
        audit = p.cli("audit", "list", "--json", "--limit", "100000", "--action", prefix, json_out=True)
        seen.update(a["action"] for a in audit if "throttl" in a["action"])
    return seen


@pytest.mark.timeout(240)
def test_strangers_cannot_lock_out_the_owner(palisade_factory):
    p = palisade_factory()
    out = p.cli("admin", "add-user", "scanner", "--role", "submission").stdout
    scanner_pw = re.search(r"password (\S+)", out).group(1)
    # The owner's history: first login with the one-time password and the forced change, and
    # one message-submission login, both from the owner's address.
    first_login(p, OWNER, ADMIN_PASSWORD)
    assert smtp_auth_once(p.submission_port, OWNER, "scanner", scanner_pw).startswith("235")

    # Each attack is followed at once by one more guess: the delays grow (1 s, 2 s, 4 s, …
    # after five free failures), so an immediate retry is still held back; a later one may
    # get a real (refused) try — that is the design: slowed down, never locked out.
    t0 = time.monotonic()
    console_attack = _console_guesses(p.console_port, ATTACKER, "admin", GUESSES, t0 + ATTACK_BUDGET_SECS / 2)
    later = _retry_right_after(lambda: Console(p.console_port, ATTACKER).login("admin", "one more guess"),
                               lambda r: r.status == 401)
    t1 = time.monotonic()
    smtp_attack = _smtp_guesses(p.submission_port, ATTACKER, "scanner", GUESSES, t1 + ATTACK_BUDGET_SECS / 2)
    attacker_smtp_after = _retry_right_after(
        lambda: smtp_auth_once(p.submission_port, ATTACKER, "scanner", "one more guess"),
        lambda r: r.startswith("535"))
    attack_secs = time.monotonic() - t0

    # The owner, from the known address, with the right passwords.
    owner = Console(p.console_port, OWNER)
    r = owner.login("admin", ADMIN_PASSWORD)
    owner_console = "success" if logged_in(r) else r.status
    owner_smtp = smtp_auth_once(p.submission_port, OWNER, "scanner", scanner_pw)

    attacker_console_after = "success" if logged_in(later) else later.status
    attacker_retry_after = later.headers.get("Retry-After")
    throttles = _throttle_entries(p)

    fig = record(
        "lockout_single_source",
        attack_secs=round(attack_secs, 1),
        console_attack=dict(console_attack), smtp_attack=dict(smtp_attack),
        owner_console=owner_console, owner_smtp=owner_smtp[:40],
        attacker_console_after=attacker_console_after, attacker_retry_after=attacker_retry_after,
        attacker_smtp_after=attacker_smtp_after[:40],
        audit_throttle_entries=dict(throttles),
    )
    assert sum(console_attack.values()) > 5 and sum(smtp_attack.values()) > 5, f"the attack hardly ran: {fig}"
    assert "success" not in console_attack and not any(k.startswith("235") for k in smtp_attack), fig
    # Growing delays: within the attack's second or two, only a handful of guesses were
    # really checked (5 free, then one per doubling wait).
    assert console_attack.get(401, 0) <= 7, f"too many console guesses were checked: {fig}"
    assert sum(v for k, v in smtp_attack.items() if k.startswith("535")) <= 7, fig
    assert owner_console == "success", f"the owner is locked out of the console: {owner_console} ({fig})"
    assert owner_smtp.startswith("235"), f"the owner's SMTP AUTH was refused: {owner_smtp!r}"
    assert attacker_console_after in (429, 503), f"attacker's console retry: {attacker_console_after}"
    assert attacker_retry_after, "a temporary refusal on the console says when to come back (Retry-After)"
    assert attacker_smtp_after.startswith("454"), f"attacker's SMTP retry: {attacker_smtp_after!r}"
    assert throttles.get("login.throttled") and throttles.get("smtp_auth.throttled"), throttles


DISTRIBUTED_SOURCES = 20
PER_SOURCE = 3


@pytest.mark.timeout(240)
def test_distributed_guessing_cannot_lock_out_the_owner(palisade_factory):
    p = palisade_factory()
    first_login(p, OWNER, ADMIN_PASSWORD)

    t0 = time.monotonic()
    deadline = t0 + ATTACK_BUDGET_SECS
    attack = collections.Counter()
    for i in range(DISTRIBUTED_SOURCES):
        attack += _console_guesses(p.console_port, f"127.0.6.{i + 1}", "admin", PER_SOURCE, deadline)
    attack_secs = time.monotonic() - t0

    r = Console(p.console_port, OWNER).login("admin", ADMIN_PASSWORD)
    owner_console = "success" if logged_in(r) else r.status
    fig = record(
        "lockout_distributed",
        sources=DISTRIBUTED_SOURCES, per_source=PER_SOURCE, attack_secs=round(attack_secs, 1),
        attack=dict(attack), owner_console=owner_console,
        audit_throttle_entries=dict(_throttle_entries(p)),
    )
    assert "success" not in attack, fig
    assert owner_console == "success", f"the owner is locked out of the console: {owner_console} ({fig})"
