"""Regenerates what in this corpus carries signatures, with dkimpy (tests/requirements.txt):

  dns/test.zone       the records the corpus's senders publish (SPF, DKIM keys, DMARC) and a
                      test URI blocklist, served by NSD in tests/e2e/test_corpus.py
  ham.eml             a newsletter DKIM-signed by signed.test (selector sel)
  arc-forwarded.eml   the same kind of newsletter after a mailing list (list.test) tagged its
                      subject and added a footer (the DKIM signature no longer verifies), ARC-
                      sealed by the list (selector arc) over what it saw: dmarc=pass

The keys in dns/ are test keys made for this corpus with `openssl genrsa -traditional 2048`;
they sign nothing else. Run (ARC signing needs the authres package besides dkimpy):
  tests/.venv/bin/pip install authres && tests/.venv/bin/python tests/resources/inbound/make-signed.py
"""

import base64
import subprocess
from pathlib import Path

import dkim

HERE = Path(__file__).resolve().parent
KEYS = HERE / "dns"


def public_key(key: Path) -> str:
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


def txt(value: str) -> str:
    parts = [value[i:i + 250] for i in range(0, len(value), 250)]
    return "( " + " ".join(f'"{p}"' for p in parts) + " )"


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


NEWSLETTER = """\
From: Signed Health News <news@signed.test>
To: Ward Staff <staff@raw.test>
Subject: {subject}
Date: Tue, 01 Dec 2026 07:30:00 +0000
Message-ID: <{msgid}@signed.test>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_news"

--=_news
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

This month: the new infection-control guidance, the winter vaccination
clinic rota and the library's extended opening hours.

Read online: https://www.signed.test/news/2026-12

--=_news
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<html><body>
<p>This month: the new infection-control guidance, the winter vaccination
clinic rota and the library's extended opening hours.</p>
<p><a href="https://www.signed.test/news/2026-12">Read online</a></p>
</body></html>
--=_news--
"""


def sign(msg: bytes) -> bytes:
    key = (KEYS / "sel.signed.test.key").read_bytes()
    sig = dkim.sign(msg, b"sel", b"signed.test", key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                     b"mime-version", b"content-type"])
    return sig + msg


def main() -> None:
    zone = [
        "; SPF, DKIM and DMARC of the corpus's senders (make-signed.py writes this file)",
        'signed IN TXT "v=spf1 ip4:127.0.0.2 -all"',
        "mail.signed IN A 127.0.0.2",
        "sel._domainkey.signed IN TXT " + txt("v=DKIM1; k=rsa; p=" + public_key(KEYS / "sel.signed.test.key")),
        '_dmarc.signed IN TXT "v=DMARC1; p=reject"',
        'list IN TXT "v=spf1 ip4:127.0.0.3 -all"',
        "mail.list IN A 127.0.0.3",
        "arc._domainkey.list IN TXT " + txt("v=DKIM1; k=rsa; p=" + public_key(KEYS / "arc.list.test.key")),
        '_dmarc.list IN TXT "v=DMARC1; p=none"',
        'broken IN TXT "v=spf1 -all"',
        '_dmarc.broken IN TXT "v=DMARC1; p=reject"',
        "; a URI blocklist (RFC 5782 answers): registered domains of links",
        "cheap-pills.test.uribl IN A 127.0.0.2",
    ]
    (KEYS / "test.zone").write_text("\n".join(zone) + "\n")

    ham = sign(crlf(NEWSLETTER.format(subject="December news from Signed Health", msgid="news-2026-12")))
    (HERE / "ham.eml").write_bytes(ham)

    # What the list received (signed by signed.test, checked by the list), then changed.
    original = sign(crlf(NEWSLETTER.format(subject="Winter clinic rota", msgid="news-rota-2026-12")))
    head, body = original.split(b"\r\n\r\n", 1)
    head = head.replace(b"Subject: Winter clinic rota", b"Subject: [ward-list] Winter clinic rota")
    body = body.replace(b"--=_news--\r\n",
                        b"--=_news--\r\n\r\n-- \r\nward-list@list.test: unsubscribe at https://list.test/ward\r\n")
    received = (b"Authentication-Results: list.test; dkim=pass header.d=signed.test header.s=sel;"
                b" spf=pass smtp.mailfrom=signed.test; dmarc=pass header.from=signed.test\r\n")
    forwarded = received + head + b"\r\n\r\n" + body
    key = (KEYS / "arc.list.test.key").read_bytes()
    seal = dkim.arc_sign(forwarded, b"arc", b"list.test", key, b"list.test",
                         include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                         timestamp=1764574200)
    # The list's own Authentication-Results stays behind: what it recorded travels in the AAR.
    (HERE / "arc-forwarded.eml").write_bytes(b"".join(seal) + head + b"\r\n\r\n" + body)


if __name__ == "__main__":
    main()
