"""The HA test topology (issue 12), shared by tests/e2e/test_ha.py and scripts/bench-ha.py:
two units in their own network namespaces, a client namespace holding the LAN bridge and the
witness, and a veth HA link between the units.

    [unit A: lan0 10.77.0.1] ──┐                       ┌── [unit B: lan0 10.77.0.2]
                               └── br0 in C: 10.77.0.100 (client, witness) ──┘
    [unit A: ha0 10.78.0.1] ───────── HA link ───────── [unit B: ha0 10.78.0.2]
"""

import os
import re
import signal
import subprocess

VIP = "10.77.0.10"
WITNESS = "10.77.0.100"
LAN = {"a": "10.77.0.1", "b": "10.77.0.2"}
HA = {"a": "10.78.0.1", "b": "10.78.0.2"}
PORT = 7246
SINK_PORT = 2526


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {r.returncode} {r.stderr}")
    return r.stdout


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
