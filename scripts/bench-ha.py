#!/usr/bin/env python3
"""The cost of the promise across machines (issue 12): messages/s accepted by one unit alone
versus the same unit as the active half of a replicated pair, where every 250 waits for the
peer's fsync'd acknowledgement. Same machine, same topology (tests/lib/hanet.py: network
namespaces, a veth HA link), the same smtp-source load from the client namespace, relayed
to an smtp-sink there. Prints both rates and the ratio; writes tests/output/ha/bench.json.

    scripts/bench-ha.sh [COUNT] [SIZE_BYTES] [SESSIONS]     (defaults 5000 5000 20)

Needs root and postfix (smtp-source, smtp-sink). Not part of the tests.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lib"))

from hanet import HA, LAN, SINK_PORT, VIP, WITNESS, Net  # noqa: E402
from harness import OUTPUT, Palisade, wait_for  # noqa: E402

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
SESSIONS = int(sys.argv[3]) if len(sys.argv) > 3 else 20


def sink_count(path: Path) -> int:
    text = path.read_text(errors="replace").replace("\r", "\n")
    counts = [int(x.split("=")[1]) for x in text.split() if x.startswith("mesg=")]
    return counts[-1] if counts else 0


def load(net: Net, target: str, sink_log: Path) -> tuple[float, float]:
    """Seconds until smtp-source is done (every message acknowledged) and until the sink has
    them all."""
    before = sink_count(sink_log)
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "exec", net.ns["c"], shutil.which("smtp-source") or "/usr/sbin/smtp-source",
                    "-s", str(SESSIONS), "-m", str(COUNT), "-l", str(SIZE), "-f", "bench@client.test",
                    "-t", "x@sink.test", f"{target}:2525"], check=True, stdout=subprocess.DEVNULL)
    t1 = time.monotonic()
    wait_for(lambda: sink_count(sink_log) - before >= COUNT, 600, interval=0.05, what="the sink has every message")
    return t1 - t0, time.monotonic() - t0


def main():
    net = Net().up()
    units = {}
    sink = None
    try:
        sink_log = OUTPUT / "ha" / "bench-sink.log"
        sink_log.parent.mkdir(parents=True, exist_ok=True)
        sink = subprocess.Popen(["ip", "netns", "exec", net.ns["c"], shutil.which("smtp-sink") or "/usr/sbin/smtp-sink",
                                 "-u", "root", "-c", f"{WITNESS}:{SINK_PORT}", "1000"],
                                stdout=open(sink_log, "w"), stderr=subprocess.DEVNULL)
        for u in ("a", "b"):
            units[u] = Palisade(f"{u}-bench-ha", {
                "system": {"hostname": f"unit-{u}.test"},
                "smtp": {"listen": ["0.0.0.0:2525"], "max_connections_per_ip": 500},
                "delivery": {"max_per_destination": SESSIONS},
                "domain": [{"name": "sink.test", "route": "smarthosts", "smarthosts": [f"{WITNESS}:{SINK_PORT}"]}],
            }, netns=net.ns[u])
        units["a"].start()
        single = load(net, LAN["a"], sink_log)
        units["b"].start()
        out = units["a"].cli("ha", "create", "--vip", f"{VIP}/24", "--interface", "lan0",
                             "--ha-address", HA["a"]).stdout
        code = next(line for line in out.splitlines() if line.startswith("PAL1-"))
        units["b"].cli("ha", "join", code, "--peer", HA["a"], "--ha-address", HA["b"])

        def connected():
            st = units["a"].cli("ha", "status", "--json", json_out=True).get("status") or {}
            return st.get("state") == "active" and (st.get("replication") or {}).get("connected")
        wait_for(connected, 60, what="a active with replication connected")
        pair = load(net, VIP, sink_log)
        replicas = (units["b"].cli("ha", "status", "--json", json_out=True)["status"]["replication"] or {})
        fig = {
            "count": COUNT, "size": SIZE, "sessions": SESSIONS,
            "single_accept_per_s": round(COUNT / single[0], 1),
            "pair_accept_per_s": round(COUNT / pair[0], 1),
            "single_end_to_end_per_s": round(COUNT / single[1], 1),
            "pair_end_to_end_per_s": round(COUNT / pair[1], 1),
            "accept_ratio_pair_over_single": round(single[0] / pair[0], 3),
            "replicas_on_b_after": replicas.get("replicas"),
        }
        print(f"single unit: {fig['single_accept_per_s']} msg/s accepted, {fig['single_end_to_end_per_s']} msg/s end to end")
        print(f"replicated pair: {fig['pair_accept_per_s']} msg/s accepted, {fig['pair_end_to_end_per_s']} msg/s end to end")
        print(f"pair / single (acceptance): {fig['accept_ratio_pair_over_single']}")
        (OUTPUT / "ha" / "bench.json").write_text(json.dumps(fig, indent=2))
    finally:
        for p in units.values():
            p.cleanup()
        if sink:
            sink.terminate()
        net.down()


if __name__ == "__main__":
    main()
