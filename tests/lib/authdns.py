"""A real authoritative DNS server for the tests: NSD (Debian's `nsd`) serving one zone file on
a loopback port, given to Palisade as `[dns] nameservers = ["127.0.0.1:PORT"]`.

    with Nsd(tmp_dir, {"test": zone_text}) as dns:
        dns.port

Each zone is `name` → the text of its zone file (`$ORIGIN name.` is added). NSD answers
REFUSED for names outside its zones, so everything the tests ask must be under them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from harness import free_port

SOA = "@ 300 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n@ 300 IN NS ns.{zone}.\nns 300 IN A 127.0.0.1\n"


def txt(value: str) -> str:
    """A TXT record's data: `value` split into quoted character strings of at most 250
    bytes (one record, as a DKIM key too long for one string is published)."""
    parts = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    return "( " + " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts) + " )"


class Nsd:
    def __init__(self, work: Path, zones: dict[str, str]):
        if shutil.which("nsd") is None:
            raise RuntimeError("nsd is not installed (scripts/test.sh installs it)")
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.zones = zones
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Nsd":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        w = self.work
        conf = [
            "server:",
            f"  ip-address: 127.0.0.1@{self.port}",
            f"  port: {self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{w}"',
            f'  pidfile: "{w}/nsd.pid"',
            '  database: ""',
            f'  zonelistfile: "{w}/zone.list"',
            f'  xfrdfile: "{w}/xfrd.state"',
            f'  xfrdir: "{w}"',
            f'  logfile: "{w}/nsd.log"',
            "  server-count: 1",
            "  hide-version: yes",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        for name, body in self.zones.items():
            zf = w / f"{name}.zone"
            zf.write_text(f"$ORIGIN {name}.\n$TTL 300\n" + SOA.format(zone=name) + body + "\n")
            conf += ["zone:", f'  name: "{name}"', f'  zonefile: "{zf.name}"']
        (w / "nsd.conf").write_text("\n".join(conf) + "\n")
        check = subprocess.run(["nsd-checkconf", str(w / "nsd.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        for name in self.zones:
            z = subprocess.run(["nsd-checkzone", name, str(w / f"{name}.zone")],
                               capture_output=True, text=True)
            assert z.returncode == 0, z.stdout + z.stderr
        self.proc = subprocess.Popen(["nsd", "-d", "-c", str(w / "nsd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = next(iter(self.zones))
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                log = (w / "nsd.log").read_text() if (w / "nsd.log").exists() else ""
                raise RuntimeError(f"nsd exited with {self.proc.returncode}: {log}")
            try:
                q = dns.message.make_query(f"{first}.", dns.rdatatype.SOA)
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
                if r.answer:
                    return
            except Exception:  # noqa: BLE001 - not answering yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nsd did not answer within 20 s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def resolver(self):
        """A dnspython resolver asking this server (for dkimpy's `dnsfunc`)."""
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        return r
