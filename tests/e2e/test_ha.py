"""Issue 12: two real units in their own network namespaces, a client namespace holding the LAN
bridge and the witness, and a veth HA link between the units.

    [unit A: lan0 10.77.0.1] ──┐                       ┌── [unit B: lan0 10.77.0.2]
                               └── br0 in C: 10.77.0.100 (client, witness) ──┘
    [unit A: ha0 10.78.0.1] ───────── HA link ───────── [unit B: ha0 10.78.0.2]

The floating address is 10.77.0.10/24. The units are paired with `palisade ha create` and
`palisade ha join`. Each test kills, cuts and heals for real (SIGKILL of every process of a
unit, links set down, a blackhole route to the witness) and reads the address straight from
each namespace's interface, SMTP from the client namespace, and the client's ARP table.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import OUTPUT, Palisade, wait_for

VIP = "10.77.0.10"
WITNESS = "10.77.0.100"
LAN = {"a": "10.77.0.1", "b": "10.77.0.2"}
HA = {"a": "10.78.0.1", "b": "10.78.0.2"}
PORT = 7246
SINK_PORT = 2526
RUNS = int(os.environ.get("PALISADE_HA_RUNS", "3"))


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {r.returncode} {r.stderr}")
    return r.stdout


def record(name, **fig):
    print(f"\nHA {name}: " + " ".join(f"{k}={v}" for k, v in fig.items()))
    out = OUTPUT / "ha"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(fig, indent=2))
    return fig


class Net:
    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.ns = {"a": f"pha{tag}a", "b": f"pha{tag}b", "c": f"pha{tag}c"}

    def up(self):
        a, b, c = self.ns["a"], self.ns["b"], self.ns["c"]
        for n in (a, b, c):
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", c, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", c, "addr", "add", f"{WITNESS}/24", "dev", "br0")
        sh("ip", "-n", c, "link", "set", "br0", "up")
        for u in ("a", "b"):
            sh("ip", "link", "add", "lan0", "netns", self.ns[u], "type", "veth", "peer", "name", f"p{u}", "netns", c)
            sh("ip", "-n", c, "link", "set", f"p{u}", "master", "br0", "up")
            sh("ip", "-n", self.ns[u], "addr", "add", f"{LAN[u]}/24", "dev", "lan0")
            sh("ip", "-n", self.ns[u], "link", "set", "lan0", "up")
        sh("ip", "link", "add", "ha0", "netns", a, "type", "veth", "peer", "name", "ha0", "netns", b)
        for u in ("a", "b"):
            sh("ip", "-n", self.ns[u], "addr", "add", f"{HA[u]}/30", "dev", "ha0")
            sh("ip", "-n", self.ns[u], "link", "set", "ha0", "up")
        return self

    def down(self):
        for n in self.ns.values():
            for pid in sh("ip", "netns", "pids", n, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", n, check=False)

    def holds(self, u) -> bool:
        return f"{VIP}/" in sh("ip", "-n", self.ns[u], "-o", "addr", "show", "dev", "lan0")

    def holders(self) -> list[str]:
        """Who holds the address. The two namespaces are read one after the other, so a
        hand-over between the reads could look like two holders: A is read before and after
        B, and counted only if it held both times (and for B the same the other way)."""
        a1, b1, a2 = self.holds("a"), self.holds("b"), self.holds("a")
        if a1 and a2 and b1:
            b1 = self.holds("b")
        return [u for u, h in (("a", a1 and a2), ("b", b1)) if h]

    def mac(self, u) -> str:
        out = sh("ip", "-n", self.ns[u], "-o", "link", "show", "lan0")
        return re.search(r"link/ether (\S+)", out).group(1)

    def client_arp(self) -> str | None:
        out = sh("ip", "-n", self.ns["c"], "neigh", "show", VIP)
        m = re.search(r"lladdr (\S+)", out)
        return m.group(1) if m else None

    def banner(self, timeout=1.0) -> str:
        """The SMTP greeting at the floating address, seen from the client namespace."""
        code = ("import socket,sys\n"
                f"s=socket.create_connection(('{VIP}',2525),timeout={timeout})\n"
                "print(s.recv(200).decode(errors='replace').strip())")
        r = subprocess.run(["ip", "netns", "exec", self.ns["c"], "python3", "-c", code],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def link(self, u, dev, up: bool):
        sh("ip", "-n", self.ns[u], "link", "set", dev, "up" if up else "down")

    def block_witness(self, u, blocked: bool):
        sh("ip", "-n", self.ns[u], "route", "add" if blocked else "del", "blackhole", f"{WITNESS}/32")

    def kill_all(self, u):
        """The unit dies at once: every process in it SIGKILLed, its LAN link gone with it."""
        for pid in sh("ip", "netns", "pids", self.ns[u], check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.link(u, "lan0", False)


@pytest.fixture
def pair(request):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    net = Net().up()
    units = {}
    try:
        for u in ("a", "b"):
            units[u] = Palisade(f"{request.node.name}-{u}", {
                "system": {"hostname": f"unit-{u}.test"},
                "smtp": {"listen": ["0.0.0.0:2525"]},
                # sink.test: a relay in the client namespace that the kill test starts late.
                "domain": [{"name": "example.test", "route": "maildir"},
                           {"name": "sink.test", "route": "smarthosts", "smarthosts": [f"{WITNESS}:{SINK_PORT}"]}],
            }, netns=net.ns[u])
        # Two standalone units, running; paired while they run (the supervisor starts `ha`).
        for u in ("a", "b"):
            units[u].start(wait=False)
        for u in ("a", "b"):
            units[u].wait_ready()
        assert units["a"].child("ha")["state"] == "stopped", "standalone: no ha process"
        out = units["a"].cli("ha", "create", "--vip", f"{VIP}/24", "--interface", "lan0",
                             "--ha-address", HA["a"], "--witness", WITNESS).stdout
        code = re.search(r"^(PAL1-\S+)$", out, re.M).group(1)
        units["b"].cli("ha", "join", code, "--peer", HA["a"], "--ha-address", HA["b"], "--witness", WITNESS)
        wait_for(lambda: len(net.holders()) == 1 and all(state(units[u]) in ("active", "passive") for u in "ab"),
                 30, what="one unit active, the other passive")
        yield net, units
    finally:
        for p in units.values():
            p.cleanup()
        net.down()


def status(p: Palisade) -> dict:
    return p.cli("ha", "status", "--json", json_out=True)


def state(p: Palisade) -> str | None:
    try:
        return (status(p).get("status") or {}).get("state")
    except (AssertionError, json.JSONDecodeError):
        return None


def restart(net: Net, p: Palisade, u: str):
    net.link(u, "lan0", True)
    p.start()


def test_pair_status_and_failover_on_sigkill(pair):
    net, units = pair
    assert net.holders() == ["a"], "the unit that created the pair ranks higher at start"
    sa, sb = status(units["a"]), status(units["b"])
    assert sa["status"]["state"] == "active" and sb["status"]["state"] == "passive", (sa, sb)
    assert sb["status"]["peer"]["alive"] and sb["status"]["peer"]["state"] == "active"
    assert "unit-a.test" in net.banner()
    human = units["b"].cli("ha", "status").stdout
    assert "passive" in human and "last heartbeat" in human, human
    # The supervisor shows the ha child.
    assert units["a"].child("ha")["ready"]

    times = []
    dead, alive = "a", "b"
    for run in range(RUNS):
        wait_for(lambda: net.holders() == [dead], 20, what=f"{dead} holds the address before run {run}")
        t0 = time.monotonic()
        net.kill_all(dead)
        wait_for(lambda: net.holds(alive), 15, interval=0.05, what=f"{alive} takes the address")
        t_hold = time.monotonic() - t0
        wait_for(lambda: f"unit-{alive}.test" in net.banner(0.5), 15, interval=0.05,
                 what=f"SMTP on the floating address answered by {alive}")
        t_smtp = time.monotonic() - t0
        wait_for(lambda: net.client_arp() == net.mac(alive), 10, what="the client's ARP entry moves")
        times.append((round(t_hold, 2), round(t_smtp, 2)))
        # The dead unit comes back: it must follow, not take the address back.
        restart(net, units[dead], dead)
        wait_for(lambda: state(units[dead]) == "passive", 20, what=f"{dead} back as passive")
        assert net.holders() == [alive]
        dead, alive = alive, dead
    holds = sorted(t for t, _ in times)
    record("failover", runs=RUNS, interval_s=1, dead_time_s=3, takeover_s=[t for t, _ in times],
           smtp_s=[s for _, s in times], takeover_min=holds[0], takeover_median=holds[len(holds) // 2],
           takeover_max=holds[-1])
    audit = units["b"].cli("audit", "list", "--json", "--action", "ha.", json_out=True)
    assert any(a["action"] == "ha.state" for a in audit), audit


def test_witness_decides_who_holds_when_the_units_are_cut_apart(pair):
    net, units = pair
    assert net.holders() == ["a"]
    # The passive is cut off from both heartbeat paths (HA link down, its LAN link down, so
    # its witness does not answer either): it must not take the address.
    net.link("a", "ha0", False)
    net.link("b", "lan0", False)
    time.sleep(6)
    assert net.holders() == ["a"], "a passive without its witness took the address"
    assert state(units["b"]) == "passive", status(units["b"])["status"]
    net.link("b", "lan0", True)
    net.link("a", "ha0", True)
    time.sleep(3)
    assert net.holders() == ["a"]

    # The active is cut off from the LAN and the HA link (the witness is on B's side): it gives
    # the address up, the passive takes it; exactly one holds throughout.
    seen_both = 0
    net.link("a", "ha0", False)
    net.block_witness("a", True)
    net.link("a", "lan0", False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(net.holders()) > 1:
            seen_both += 1
        time.sleep(0.1)
    assert net.holders() == ["b"], (net.holders(), status(units["a"])["status"], status(units["b"])["status"])
    # Cut off (it saw the witness go while the peer still had it, or lost both): holds nothing.
    assert state(units["a"]) in ("fault", "passive")
    # Healed: still exactly one (the one with the newer epoch), the other follows.
    net.link("a", "lan0", True)
    net.link("a", "ha0", True)
    net.block_witness("a", False)
    wait_for(lambda: state(units["a"]) == "passive", 20, what="a follows after healing")
    assert net.holders() == ["b"]
    record("split_brain", overlap_samples=seen_both)
    assert seen_both == 0, f"both units held the address in {seen_both} samples"


def test_forged_replayed_and_truncated_heartbeats_change_nothing(pair):
    net, units = pair
    # Real heartbeats, captured in the client namespace (the LAN path broadcasts them).
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(('0.0.0.0',{PORT}))\n"
            "s.settimeout(5)\n"
            "out=[]\n"
            "while len(out)<4:\n"
            "    d,a=s.recvfrom(2048)\n"
            "    out.append(d.hex())\n"
            "print(' '.join(out))")
    captured = subprocess.run(["ip", "netns", "exec", net.ns["c"], "python3", "-c", code],
                              capture_output=True, text=True, timeout=20).stdout.split()
    assert len(captured) == 4 and all(len(bytes.fromhex(f)) == 96 for f in captured), captured
    before = {u: status(units[u])["status"] for u in "ab"}
    time.sleep(2)
    send = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for h in sys.argv[2:]:\n"
            f"    s.sendto(bytes.fromhex(h),(sys.argv[1],{PORT}))\n")
    for u in "ab":
        # A frame the peer really sent (not this unit's own): replayed, it is stale by now.
        mine = before[u]["node_id"].to_bytes(8, "big")
        frame = next(bytes.fromhex(f) for f in captured if bytes.fromhex(f)[8:16] != mine)
        forged = bytearray(frame)
        forged[16:24] = (10 ** 9).to_bytes(8, "big")  # a huge epoch, tag not recomputed
        junk = [bytes(forged), frame[:60], frame + b"x", b"PHA1" + os.urandom(92), frame]
        for _ in range(5):
            sh("ip", "netns", "exec", net.ns["c"], "python3", "-c", send, LAN[u], *[j.hex() for j in junk])
            time.sleep(0.3)
    time.sleep(4)
    after = {u: status(units[u])["status"] for u in "ab"}
    for u in "ab":
        assert after[u]["state"] == before[u]["state"], (u, before[u], after[u])
        assert after[u]["epoch"] == before[u]["epoch"], (u, before[u], after[u])
        r = after[u]["refused"]
        assert r["forged"] >= 5 and r["malformed"] >= 5 and r["stale"] >= 1, (u, r)
    assert net.holders() == ["a"]
    record("forged_frames", refused_a=after["a"]["refused"], refused_b=after["b"]["refused"])


SENDER = r"""
import smtplib, sys, time, json
vip, secs = sys.argv[1], float(sys.argv[2])
rcpt = sys.argv[3] if len(sys.argv) > 3 else "x@example.test"
acked, failed, i = [], 0, 0
end = time.monotonic() + secs
while time.monotonic() < end:
    i += 1
    mid = f"<flap-{i}@client.test>"
    msg = f"From: a@client.test\r\nTo: {rcpt}\r\nSubject: flap {i}\r\nMessage-ID: {mid}\r\n\r\nbody {i}\r\n"
    s = None
    try:
        s = smtplib.SMTP(vip, 2525, timeout=3)
        # sendmail returns (after the 250 to DATA) the refused recipients; it raises otherwise.
        if not s.sendmail("a@client.test", [rcpt], msg):
            acked.append(mid)
    except Exception:
        failed += 1
        time.sleep(0.05)
    finally:
        try:
            s and s.quit()
        except Exception:
            pass
print(json.dumps({"acked": acked, "failed": failed, "tried": i}))
"""


def test_flapping_links_never_make_two_holders_and_lose_no_acknowledged_message(pair):
    net, units = pair
    secs = float(os.environ.get("PALISADE_HA_FLAP_SECS", "60"))
    sender = subprocess.Popen(["ip", "netns", "exec", net.ns["c"], "python3", "-c", SENDER, VIP, str(secs)],
                              stdout=subprocess.PIPE, text=True)
    rng = __import__("random").Random(12)
    samples = both = flaps = 0
    end = time.monotonic() + secs
    try:
        while time.monotonic() < end:
            # Cut the LAN uplink of whichever unit holds the address (sometimes the HA link
            # too), for 0.5 to 5 s, then heal for 1 to 4 s; sample the holders all along.
            active = (net.holders() or ["a"])[0]
            cut_ha = rng.random() < 0.3
            net.link(active, "lan0", False)
            if cut_ha:
                net.link(active, "ha0", False)
            flaps += 1
            for phase_end in (time.monotonic() + rng.uniform(0.5, 5), None):
                if phase_end is None:
                    net.link(active, "lan0", True)
                    net.link(active, "ha0", True)
                    phase_end = time.monotonic() + rng.uniform(1, 4)
                while time.monotonic() < min(phase_end, end + 5):
                    samples += 1
                    if len(net.holders()) > 1:
                        both += 1
                    time.sleep(0.1)
    finally:
        for u in "ab":
            net.link(u, "lan0", True)
            net.link(u, "ha0", True)
    out, _ = sender.communicate(timeout=120)
    sent = json.loads(out)
    wait_for(lambda: len(net.holders()) == 1, 30, what="one holder after the flapping")
    for u in "ab":
        units[u].wait_queue_empty(120)
    delivered = {}
    for u in "ab":
        for m in units[u].mailbox():
            mid = re.search(rb"^Message-ID: (<flap-\d+@client.test>)", m, re.M | re.I)
            if mid:
                delivered[mid.group(1).decode()] = delivered.get(mid.group(1).decode(), 0) + 1
    lost = [m for m in sent["acked"] if m not in delivered]
    duplicates = sum(n - 1 for n in delivered.values() if n > 1)
    record("flapping", secs=secs, flaps=flaps, samples=samples, both_held_samples=both,
           tried=sent["tried"], acknowledged=len(sent["acked"]), refused_or_cut=sent["failed"],
           delivered=len(delivered), lost=len(lost), duplicates=duplicates)
    assert sent["acked"], "nothing was accepted at all"
    assert both == 0, f"both units held the address in {both} of {samples} samples"
    assert not lost, f"{len(lost)} acknowledged messages were not delivered: {lost[:5]}"


def replication(p: Palisade) -> dict:
    try:
        return (status(p).get("status") or {}).get("replication") or {}
    except (AssertionError, json.JSONDecodeError):
        return {}


def sink_message_ids(dump) -> dict:
    seen = {}
    for f in dump.iterdir():
        data = f.read_bytes()
        if not data.endswith(b"\n\n"):
            continue  # still being written
        m = re.search(rb"^Message-ID: (<flap-\d+@client.test>)", data, re.M | re.I)
        if m:
            seen[m.group(1).decode()] = seen.get(m.group(1).decode(), 0) + 1
    return seen


def test_the_active_dies_under_load_and_the_passive_delivers_every_acknowledged_message(pair, tmp_path):
    """Spool replication: mail to a relay that is down stays queued on the active; the active
    is SIGKILLed while clients keep sending; the passive takes over, queues the replicas and
    delivers every message either unit acknowledged once the relay is up. Then the dead unit
    comes back: it hears what the other took over and does not deliver it again."""
    net, units = pair
    wait_for(lambda: all(replication(units[u]).get("connected") for u in "ab"), 30,
             what="replication connected both ways")
    secs = float(os.environ.get("PALISADE_HA_KILL_SECS", "20"))
    sender = subprocess.Popen(["ip", "netns", "exec", net.ns["c"], "python3", "-c", SENDER, VIP, str(secs),
                               "x@sink.test"], stdout=subprocess.PIPE, text=True)
    time.sleep(secs / 2)
    before = replication(units["b"]).get("replicas", 0)
    t0 = time.monotonic()
    net.kill_all("a")
    wait_for(lambda: net.holds("b"), 15, interval=0.05, what="b takes the address")
    out, _ = sender.communicate(timeout=120)
    sent = json.loads(out)
    assert sent["acked"], "nothing was accepted"
    wait_for(lambda: replication(units["b"]).get("adopted", 0) > 0, 30, what="b queues a's replicated messages")
    adopted = replication(units["b"])["adopted"]
    # The relay comes up only now: nothing reached it before a died.
    dump = tmp_path / "dump"
    dump.mkdir()
    sink = subprocess.Popen(["ip", "netns", "exec", net.ns["c"], shutil.which("smtp-sink") or "/usr/sbin/smtp-sink",
                             "-u", "root", "-d", f"{dump}/%H%M%S.", f"{WITNESS}:{SINK_PORT}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: set(sent["acked"]) <= set(sink_message_ids(dump)), 180,
                 what="every acknowledged message delivered by b")
        t_all = time.monotonic() - t0
        delivered = sink_message_ids(dump)
        # a comes back: it must learn what b took over and not deliver it again.
        restart(net, units["a"], "a")
        wait_for(lambda: state(units["a"]) == "passive", 30, what="a back as passive")
        wait_for(lambda: replication(units["a"]).get("connected"), 30, what="a's replication reconnected")
        units["a"].wait_queue_empty(60)
        time.sleep(3)
        after = sink_message_ids(dump)
    finally:
        sink.terminate()
        sink.wait(10)
    lost = [m for m in sent["acked"] if m not in delivered]
    dup_takeover = sum(n - 1 for n in delivered.values() if n > 1)
    dup_return = sum(after.values()) - sum(delivered.values())
    record("kill_under_load", secs=secs, tried=sent["tried"], acknowledged=len(sent["acked"]),
           refused_or_cut=sent["failed"], replicas_on_b_before_kill=before, adopted=adopted,
           delivered=len(delivered), lost=len(lost), duplicates_at_takeover=dup_takeover,
           delivered_again_after_return=dup_return, all_delivered_s=round(t_all, 1))
    assert not lost, f"{len(lost)} acknowledged messages were never delivered: {lost[:5]}"
    assert dup_return == 0, f"a delivered {dup_return} messages b had already taken over"
