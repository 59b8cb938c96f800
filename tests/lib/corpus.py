"""A ham/spam corpus built for this project: deterministic (seeded), varied, and with the
overlap real mail has (invoices, accounts, appointments and links appear in both classes).

Ham is what a hospital's staff receive: referrals, clinic and rota changes, IT notices,
supplier invoices, meeting minutes, journal and society newsletters, replies between
colleagues. Spam is what reaches them: pharmacy and "health" offers, investment and crypto
schemes, account and parcel phishing, fake invoices, lottery and inheritance frauds, SEO and
marketing blasts. Every message draws its sentences, names, links and header style at random
from its class's templates plus a shared pool of ordinary English, so no two are alike and a
classifier has to learn words, not copies.

    from corpus import make_corpus
    for label, raw in make_corpus(200, 200, seed=1): ...   # label "spam" | "ham", raw bytes
"""

import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

FIRST = ["Amira", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Isla", "Jamal",
         "Kate", "Liam", "Maya", "Nikhil", "Olivia", "Pavel", "Rosa", "Sam", "Tariq", "Uma",
         "Victor", "Wen", "Yusuf", "Zoe"]
LAST = ["Ahmed", "Brown", "Clarke", "Davies", "Evans", "Fraser", "Green", "Hughes", "Iqbal",
        "Jones", "Khan", "Lewis", "Murphy", "Nowak", "Owen", "Patel", "Quinn", "Roberts",
        "Singh", "Taylor", "Walsh", "Young"]
HAM_DOMAINS = ["stmarys-hospital.example", "northtrust.nhs.example", "gp-surgery.example",
               "labs.example", "pharmacy-supplies.example", "bmj-journals.example",
               "royalcollege.example", "university.ac.example", "council.gov.example"]
SPAM_DOMAINS = ["best-deals-online.example", "pharma-discount.example", "crypto-growth.example",
                "secure-verify-account.example", "parcel-tracking-info.example",
                "mega-lotto.example", "seo-rank-pro.example", "invest-smart.example",
                "cheapmeds24.example", "prize-claims.example"]
SHARED = ("the of and to in for on with at by from this that it is be as we you your our "
          "please thank thanks regards today tomorrow week month time information details "
          "attached below above update new team office service number reference dear hello "
          "kind best wishes let know questions contact us any more about can will would").split()

HAM_SUBJECTS = [
    "Referral for {name}, {clinic} clinic", "Rota change for ward {ward} next week",
    "Minutes of the {clinic} governance meeting", "Invoice {num} for lab consumables",
    "Re: discharge summary for bed {ward}", "IT notice: planned maintenance on {day}",
    "{journal} table of contents, issue {num}", "Re: teaching session on {topic}",
    "Audit results for {clinic}", "Re: {topic} guideline draft for comments",
    "Annual leave request {day}", "Supplies order {num} dispatched",
]
HAM_SENTENCES = [
    "Please find attached the referral letter for the patient seen in {clinic} clinic on {day}.",
    "The rota for ward {ward} has been updated; {name} will cover the night shift on {day}.",
    "Could you review the discharge summary before the consultant signs it off?",
    "The {clinic} governance meeting agreed to repeat the audit of {topic} in three months.",
    "Our invoice {num} covers the reagents and consumables delivered to the pathology lab.",
    "Payment terms are thirty days from the invoice date; the purchase order number is {num}.",
    "The electronic patient record will be unavailable between 22:00 and 02:00 on {day}.",
    "Please save your work and log out before the maintenance window starts.",
    "This issue includes research on {topic}, a clinical review and the editor's choice.",
    "The teaching session on {topic} moves to seminar room {ward} on {day} afternoon.",
    "I have added comments to the draft guideline on {topic}; the main change is dosing.",
    "Can we meet after the ward round to discuss the handover process?",
    "The results of the {topic} audit are attached with the action plan for the next quarter.",
    "Your order {num} has been dispatched and should arrive at the loading bay on {day}.",
    "Thanks for covering clinic yesterday, the patients were very grateful.",
    "Bloods for the patient in bed {ward} came back normal, we can step down monitoring.",
    "Reminder: mandatory training on information governance is due by the end of the month.",
    "The pharmacy has confirmed the stock of {drug} for the {clinic} clinic.",
]
SPAM_SUBJECTS = [
    "Your account has been suspended", "You have won {money}!", "Cheap {drug} without prescription",
    "Invoice {num} overdue - immediate payment required", "Your parcel could not be delivered",
    "Double your bitcoin in 24 hours", "Exclusive offer: {pct}% off today only",
    "URGENT: verify your mailbox now", "Get to page one of Google", "Inheritance of {money} for you",
    "Re: your payment {num}", "Lose weight fast with this one trick",
]
SPAM_SENTENCES = [
    "Buy {drug} online at the lowest price, no prescription needed, discreet shipping worldwide.",
    "Limited time offer: order now and get {pct}% discount on all pills.",
    "Your mailbox storage is full; verify your account within 24 hours or it will be deleted.",
    "We detected unusual sign in activity, click the link below to confirm your identity.",
    "Congratulations! Your email address won {money} in our international lottery draw.",
    "To claim your prize send your full name, address and bank details to our agent.",
    "Our trading algorithm doubles your investment; thousands of members earn daily profits.",
    "Deposit bitcoin today and watch your crypto wallet grow, guaranteed returns.",
    "Your parcel is held at the depot; pay the customs fee of {small} to release it.",
    "The attached invoice {num} is overdue; pay immediately to avoid legal action.",
    "We can put your website on page one of Google with our SEO backlinks package.",
    "I am a lawyer representing a late client who left {money} with no heir, contact me.",
    "Act now, this offer expires tonight, unsubscribe anytime.",
    "Click here to update your payment information and keep your account active.",
    "Amazing weight loss formula, doctors hate it, order your free trial now.",
    "Dear winner, kindly respond urgently with your details for the transfer.",
]
CLINICS = ["cardiology", "respiratory", "diabetes", "fracture", "paediatric", "oncology",
           "renal", "dermatology", "neurology", "maternity"]
TOPICS = ["sepsis", "antibiotic stewardship", "falls prevention", "hand hygiene", "asthma",
          "heart failure", "delirium", "pressure ulcers", "anticoagulation", "pain relief"]
DRUGS = ["amoxicillin", "metformin", "atorvastatin", "salbutamol", "viagra", "tramadol",
         "xanax", "oxycodone", "insulin", "ramipril"]
JOURNALS = ["BMJ", "Lancet", "Clinical Medicine", "Nursing Times", "Anaesthesia"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next Monday", "the 14th"]


def _fill(rng, template):
    return template.format(
        name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", clinic=rng.choice(CLINICS),
        ward=rng.randint(1, 40), num=rng.randint(10000, 99999), day=rng.choice(DAYS),
        journal=rng.choice(JOURNALS), topic=rng.choice(TOPICS), drug=rng.choice(DRUGS),
        money=f"${rng.randint(1, 9)},{rng.randint(100, 999)},000", pct=rng.choice([50, 70, 80, 90]),
        small=f"£{rng.randint(1, 5)}.{rng.randint(10, 99)}")


def _filler(rng, n):
    return " ".join(rng.choice(SHARED) for _ in range(n))


def _message(rng, label, i, start):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    if label == "ham":
        domain = rng.choice(HAM_DOMAINS)
        subject = _fill(rng, rng.choice(HAM_SUBJECTS))
        sentences = [_fill(rng, rng.choice(HAM_SENTENCES)) for _ in range(rng.randint(2, 6))]
        link = rng.random() < 0.3 and f"https://intranet.{domain}/docs/{rng.randint(1, 999)}"
        sign = f"\r\n\r\n{first} {last}\r\n{rng.choice(CLINICS).title()} department\r\n"
    else:
        domain = rng.choice(SPAM_DOMAINS)
        subject = _fill(rng, rng.choice(SPAM_SUBJECTS))
        sentences = [_fill(rng, rng.choice(SPAM_SENTENCES)) for _ in range(rng.randint(2, 6))]
        link = rng.random() < 0.8 and f"http://{rng.choice(SPAM_DOMAINS)}/{rng.randint(1, 9999)}"
        sign = "\r\n\r\n" + rng.choice(["Customer Service", "The Team", "Support", "Best regards"]) + "\r\n"
    body = " ".join(sentences) + " " + _filler(rng, rng.randint(5, 30))
    if link:
        body += f"\r\n\r\n{link}\r\n"
    body += sign
    # Within the last two days: neither in the future nor days old.
    date = start - timedelta(minutes=rng.randint(5, 2880))
    sender = f"{first.lower()}.{last.lower()}@{domain}"
    html = label == "spam" and rng.random() < 0.5 or label == "ham" and rng.random() < 0.15
    headers = (f"From: {first} {last} <{sender}>\r\nTo: staff@hospital.example\r\n"
               f"Subject: {subject}\r\nDate: {format_datetime(date)}\r\n"
               f"Message-ID: <{label}.{i}.{rng.randint(0, 1 << 30)}@{domain}>\r\nMIME-Version: 1.0\r\n")
    if html:
        href = f'<a href="{link}">{link}</a>' if link else ""
        text = body.replace("\r\n\r\n", "</p><p>").replace(link or "\0", href)
        return (headers + "Content-Type: text/html; charset=utf-8\r\n\r\n"
                f"<html><body><p>{text}</p></body></html>\r\n").encode()
    return (headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def make_corpus(n_spam, n_ham, seed=1):
    """[(label, raw bytes)], shuffled."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc)
    out = [("spam", _message(rng, "spam", i, start)) for i in range(n_spam)]
    out += [("ham", _message(rng, "ham", i, start)) for i in range(n_ham)]
    rng.shuffle(out)
    return out


if __name__ == "__main__":
    import sys
    from pathlib import Path
    # python3 corpus.py DIR N_SPAM N_HAM [SEED]: writes DIR/spam/*.eml and DIR/ham/*.eml
    d = Path(sys.argv[1])
    for label in ("spam", "ham"):
        (d / label).mkdir(parents=True, exist_ok=True)
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    for i, (label, raw) in enumerate(make_corpus(int(sys.argv[2]), int(sys.argv[3]), seed)):
        (d / label / f"{i:05}.eml").write_bytes(raw)
