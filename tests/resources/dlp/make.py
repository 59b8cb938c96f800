#!/usr/bin/env python3
"""Writes the DLP golden corpus: messages written for this project, each with the detections
and unscannable parts `palisade check --direction out` must report (`expected.json`).

Run it again only to change the corpus (the files are committed; the test reads them):
    python3 tests/resources/dlp/make.py
All identifiers are test values: 943 476 5919 is the NHS's own example number; the others
were made to pass (or, for the traps, to fail) their check digits.
"""
import io
import json
import os
import struct
import zipfile
import zlib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate

HERE = os.path.dirname(os.path.abspath(__file__))


def nhs(prefix9):
    w = sum(int(d) * (10 - i) for i, d in enumerate(prefix9))
    c = 11 - w % 11
    c = 0 if c == 11 else c
    return None if c == 10 else prefix9 + str(c)


# Ten valid NHS numbers (and one with a wrong check digit for the traps).
NHS = []
n = 400000000
while len(NHS) < 10:
    v = nhs(str(n))
    if v:
        NHS.append(v)
    n += 7919
BAD_NHS = NHS[0][:9] + str((int(NHS[0][9]) + 1) % 10)


def spaced(v):
    return f"{v[:3]} {v[3:6]} {v[6:]}"


def message(subject, body, parts=(), charset="utf-8", html=None):
    if not parts and html is None:
        m = MIMEText(body, "plain", charset)
    else:
        m = MIMEMultipart("mixed")
        if html is not None:
            alt = MIMEMultipart("alternative")
            alt.attach(MIMEText(body, "plain", charset))
            alt.attach(MIMEText(html, "html", charset))
            m.attach(alt)
        else:
            m.attach(MIMEText(body, "plain", charset))
        for p in parts:
            m.attach(p)
    m["From"] = "Dr Ada Lovelace <ada@hospital.example>"
    m["To"] = "partner@clinic.example"
    m["Subject"] = subject
    m["Date"] = formatdate(1767225600)
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@hospital.example>"
    return m.as_bytes()


def attachment(name, data, mime="application/octet-stream"):
    main, sub = mime.split("/")
    p = MIMEApplication(data, sub)
    if main != "application":
        p.replace_header("Content-Type", mime)
    p.add_header("Content-Disposition", "attachment", filename=name)
    return p


def zipped(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return buf.getvalue()


def xlsx(rows):
    """A minimal spreadsheet: numbers as numeric cells, text through shared strings."""
    strings, sheet_rows = [], []
    for r, row in enumerate(rows, 1):
        cells = []
        for c, v in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(v, int):
                cells.append(f'<c r="{ref}"><v>{v}</v></c>')
            else:
                strings.append(v)
                cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
        sheet_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    sst = "".join(f"<si><t>{s}</t></si>" for s in strings)
    return zipped([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'),
        ("_rels/.rels", '<?xml version="1.0"?><Relationships/>'),
        ("xl/workbook.xml", '<?xml version="1.0"?><workbook><sheets><sheet name="Patients" sheetId="1"/></sheets></workbook>'),
        ("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst count="{len(strings)}">{sst}</sst>'),
        ("xl/worksheets/sheet1.xml", f'<?xml version="1.0"?><worksheet><sheetData>{"".join(sheet_rows)}</sheetData></worksheet>'),
    ])


def docx(paragraphs):
    """Each paragraph a list of runs (Word splits text into runs at will)."""
    body = "".join(
        "<w:p>" + "".join(f'<w:r><w:t xml:space="preserve">{r}</w:t></w:r>' for r in runs) + "</w:p>"
        for runs in paragraphs
    )
    return zipped([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types/>'),
        ("word/document.xml", f'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>'),
        ("word/styles.xml", '<?xml version="1.0"?><w:styles><w:style>4111 1111 1111 1111</w:style></w:styles>'),
    ])


def odt(lines):
    ps = "".join(f"<text:p>{l}</text:p>" for l in lines)
    return zipped([
        ("mimetype", "application/vnd.oasis.opendocument.text"),
        ("content.xml", f'<?xml version="1.0"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>{ps}</office:text></office:body></office:document-content>'),
    ])


def pdf(lines):
    """A PDF with a compressed content stream in the standard Helvetica font."""
    ops = ["BT", "/F1 11 Tf", "72 760 Td"]
    for i, l in enumerate(lines):
        esc = l.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        if i:
            ops.append("0 -14 Td")
        ops.append(f"({esc}) Tj")
    ops.append("ET")
    content = zlib.compress("\n".join(ops).encode("latin-1"))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def rtf(text):
    body = text.replace("\n", "\\par ")
    return ("{\\rtf1\\ansi\\ansicpg1252{\\fonttbl{\\f0 Calibri;}}{\\*\\generator Test;}\\f0 " + body + "}").encode()


def tnef(body, files):
    def attr(level, aid, data):
        return bytes([level]) + struct.pack("<II", aid, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)
    t = struct.pack("<I", 0x223E9F78) + struct.pack("<H", 1)
    t += attr(1, 0x0002800C, body.encode() + b"\0")
    for name, data in files:
        t += attr(2, 0x00069002, b"\0" * 14)
        t += attr(2, 0x00018010, name.encode() + b"\0")
        t += attr(2, 0x0006800F, data)
    return t


CASES = {}


def case(name, raw, detections, unscannable=()):
    CASES[name] = {"detections": detections, "unscannable": sorted(unscannable)}
    # ("message": the view itself says what it could not see, e.g. an encrypted member.)
    with open(os.path.join(HERE, name + ".eml"), "wb") as f:
        f.write(raw)


case(
    "nhs_numbers_in_text",
    message("referral", f"Patient NHS number {spaced(NHS[0])}, sister {NHS[1][:3]}-{NHS[1][3:6]}-{NHS[1][6:]}, and {NHS[2]}.\n"),
    {"nhs_number": 3},
)
case(
    "xlsx_five_nhs_numbers",
    message("ward list", "The list is attached.\n", [attachment("ward list.xlsx", xlsx(
        [["Name", "NHS number"]] + [[f"Patient {i}", int(NHS[i])] for i in range(5)]),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]),
    {"nhs_number": 5},
)
case(
    "docx_runs_and_card",
    message("payment", "See the letter.\n", [attachment("letter.docx", docx([
        ["Card number: ", "4111 1111", " 1111 1111"],
        ["Patient ", spaced(NHS[3])[:7], spaced(NHS[3])[7:]],
    ]), "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]),
    {"payment_card": 1, "nhs_number": 1},
)
case(
    "pdf_discharge_summary",
    message("discharge", "Summary attached.\n", [attachment("summary.pdf", pdf([
        "Discharge summary",
        f"NHS number: {spaced(NHS[4])}",
        f"GP referral for {spaced(NHS[5])}",
        "Sort code 20-00-00, account 55779911",
    ]), "application/pdf")]),
    {"nhs_number": 2, "sort_code_account": 1},
)
inner = zipped([("clinic.csv", "name,ni\nA,AB 12 34 56 C\nB,JG103759A\n")])
case(
    "zip_in_zip_csv",
    message("archive", "Nested archive.\n", [attachment("export.zip", zipped([("inner.zip", inner), ("readme.txt", "nothing here")]), "application/zip")]),
    {"ni_number": 2},
)
import email.charset as _charset
_qp = _charset.Charset("utf-8")
_qp.body_encoding = _charset.QP
# Quoted-printable with a soft line break inside the long line; the attachment in base64.
qp = MIMEText(f"IBAN for the refund: GB82 WEST 1234 5698 7654 32\nPatient {spaced(NHS[6])} asked for it. " + "x" * 90 + "\n", "plain", _qp)
case(
    "quoted_printable_and_base64",
    message("refund", "Details below and attached.\n", [qp, attachment("notes.txt", f"nhs {spaced(NHS[7])}\n".encode(), "text/plain")]),
    {"iban": 1, "nhs_number": 2},
)
case(
    "windows_1252_and_utf16",
    message("café", f"Café notes: patient {spaced(NHS[8])} – résumé.\n", [attachment("list.txt", "\ufeffNHS {}\r\n".format(spaced(NHS[9])).encode("utf-16-le"), "text/plain")], charset="windows-1252"),
    {"nhs_number": 2},
)
case(
    "html_table",
    message("table", "see html", html="<table>" + "".join(f"<tr><td>{spaced(v)}</td></tr>" for v in NHS[:4]) + "</table>"),
    {"nhs_number": 4},
)
case(
    "odt_and_rtf",
    message("docs", "Two documents.\n", [
        attachment("letter.odt", odt([f"Patient NHS {spaced(NHS[0])}"]), "application/vnd.oasis.opendocument.text"),
        attachment("note.rtf", rtf(f"CHI 0101011237\nCard 5555 5555 5555 4444"), "application/rtf"),
    ]),
    {"nhs_number": 1, "chi_number": 1, "payment_card": 1},
)
case(
    "winmail_dat",
    message("outlook", "Outlook sent this.\n", [attachment("winmail.dat", tnef(f"Patient NHS {spaced(NHS[1])}", [("ids.csv", f"{NHS[2]}\n".encode())]), "application/ms-tnef")]),
    {"nhs_number": 2},
)
case(
    "false_positive_traps",
    message("traps", "\n".join([
        "Call us on 0207 946 0018 or 020 7946 0018.",
        f"Order {BAD_NHS} and reference ORD{NHS[0]}X.",
        "Tracking 1234567890123456, card-like 4111 1111 1111 1112.",
        "Invoice 2026-01-15, version 10.4.1, total 1,234,567.89.",
        "GB82 WEST 1234 5698 7654 33 is a mistyped IBAN.",
    ]) + "\n"),
    {},
)
enc_zip = bytearray(zipped([("secret.csv", f"{NHS[0]}\n")]))
# Mark the member encrypted (general purpose flag bit 0) in both headers.
for sig in (b"PK\x03\x04", b"PK\x01\x02"):
    at = enc_zip.find(sig)
    flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
    enc_zip[flag_at] |= 1
case(
    "unscannable_parts",
    message("locked", "Password to follow.\n", [
        attachment("locked.zip", bytes(enc_zip), "application/zip"),
        attachment("scan.pdf", b"%PDF-1.4\n1 0 obj << /Subtype /Image /Length 3 >> stream\nabc\nendstream endobj\n", "application/pdf"),
        attachment("old.doc", bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 504, "application/msword"),
    ]),
    {},
    ["locked.zip/secret.csv", "message", "old.doc", "scan.pdf"],
)

with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(CASES, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{len(CASES)} messages written")
