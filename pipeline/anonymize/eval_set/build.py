"""Build the labelled PII evaluation set: `python -m pipeline.anonymize.eval_set.build` (deterministic).

Texts come from the demo generator's writing styles (chats, e-mails, case notes, alerts, transaction memos) with
customers drawn under a seed no other part of the project uses, plus evaluation-only templates in styles the demo
does not use (KYC notes, courier-scam reports, address blocks, names in parentheses or beside phones, lower-case
and ALL-CAPS names). Every type gets at least `MIN_PER_TYPE` spans so that a 95% Wilson lower bound can reach
0.99 (n >= 380 with no miss). Each line: {"id", "style", "text", "spans": [{"type", "start", "end"}]}.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

VERSION = "v2"  # v2: "card ending" digits are a card's last four, unlabelled as in the demo (v1 called them CVV)
SEED = 917_331  # used nowhere else in the project (demo seeds: params / tests)
MIN_PER_TYPE = 420
MAX_TEXTS = 8000
PATH = Path(__file__).with_name(f"pii_eval_{VERSION}.jsonl")

# evaluation-only templates ({SLOT} as in pipeline/demo/texts.py; NAME_LOWER / NAME_UPPER are added here)
EVAL_TEMPLATES = [
    "KYC note: customer {NAME}, DOB {DOB}, resides at {ADDR}. ID verified in branch.",
    "says the courier at {ADDR} asked for her card and PIN",
    "Customer {NAME} ({PHONE}) called about a payment they do not recognise.",
    "beneficiary {NAME} at {IBAN} added yesterday from a new device",
    "Spoke to {NAME_LOWER} on the phone, she confirmed the transfer was not hers.",
    "ACCOUNT HOLDER: {NAME_UPPER}\nADDRESS: {ADDR}\nTEL: {PHONE}",
    "Please send the replacement card to {ADDR} - thanks, {NAME}",
    "Caller gave name as {NAME}, callback {PHONE}, email {EMAIL}.",
    "Memo: refund to {NAME} / {IBAN}",
    "Chargeback raised for card {CARD} (holder {NAME}).",
    "{NAME} <{EMAIL}> wrote: my card {CARD} was used in a shop I have never been to.",
    "Login from {IP} for user {EMAIL} flagged; holder {NAME} denies it.",
    "Wire to {NAME}, {IBAN}, BIC {BIC}, reference invoice.",
    "Account {ACCOUNT}, routing {ROUTING}, owner {NAME}. SSN on file {SSN}.",
    "hi its {NAME_LOWER}, card ending {LAST4} got blocked?? call me {PHONE}",
    "Card {CARD} exp {EXPIRY} cvv {CVV}, used at 3am from IP {IP}.",
    "Mail returned from {ADDR}; customer {NAME} asked us to update it.",
    "Fraud team: {NAME_UPPER} reported the parcel scam, DOB {DOB}.",
]


def _styles():
    from pipeline.demo import texts as T

    return (
        ("chat", lambda ctx, rng: T.chat_text(ctx, rng.random() < 0.5, rng.choice(("chat", "sms", "dispute")))),
        ("email", lambda ctx, rng: T.email_body(ctx, rng.random() < 0.5)),
        ("case_note", lambda ctx, rng: T.case_note(ctx, rng.random() < 0.5)),
        ("alert", lambda ctx, rng: T.alert_reason(ctx, rng.choice(list(T.ALERT_TEMPLATES)), rng.random() < 0.5)),
        ("memo", lambda ctx, rng: T.tx_memo(ctx, rng.random() < 0.5)),
    )


def _eval_fill(ctx, template: str, rng: random.Random):
    from pipeline.demo.texts import Pii

    name = ctx.c.name
    t = template.replace("{NAME_LOWER}", "\x00L").replace("{NAME_UPPER}", "\x00U")
    segs = []
    for i, chunk in enumerate(t.split("\x00")):
        if i:
            segs.append(Pii("PERSON", name.lower() if chunk[0] == "L" else name.upper()))
            chunk = chunk[1:]
        segs += ctx.fill(chunk)
    return segs


def build(seed: int = SEED) -> list[dict]:
    from pipeline.demo.generator import _pools
    from pipeline.demo.texts import Ctx, IDENTITY, render
    from pipeline.demo.values import make_customers

    rng = random.Random(f"pii-eval:{seed}")
    customers = make_customers(400, seed)[1:]  # customer 0 is the canary customer
    pools = _pools(seed)
    styles = _styles()
    rows: list[dict] = []
    counts: Counter = Counter()

    def add(style: str, segs) -> None:
        text, spans = render(segs)
        if not text.strip():
            return
        sp = [{"type": t, "start": s, "end": e} for t, _, s, e in spans]
        rows.append({"id": f"{VERSION}-{len(rows):05d}", "style": style, "text": text, "spans": sp})
        counts.update(x["type"] for x in sp)

    # 1. the demo's writing styles and the evaluation-only templates, half and half
    for i in range(1600):
        ctx = Ctx(rng.choice(customers), rng, pools)
        if i % 2:
            style, fn = styles[rng.randrange(len(styles))]
            add(style, fn(ctx, rng))
        else:
            add("eval_template", _eval_fill(ctx, rng.choice(EVAL_TEMPLATES), rng))
    # 2. top up every type below MIN_PER_TYPE with templates that hold it
    bank = EVAL_TEMPLATES + IDENTITY
    while len(rows) < MAX_TEXTS:
        short = {t for t, n in counts.items() if n < MIN_PER_TYPE}
        if not short:
            break
        ctx = Ctx(rng.choice(customers), rng, pools)
        segs = _eval_fill(ctx, rng.choice(bank), rng)
        if any(getattr(s, "type", None) in short for s in segs):
            add("top_up", segs)
    return rows


def write(path: Path = PATH) -> dict:
    rows = build()
    blob = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    path.write_text(blob, encoding="utf-8")
    counts = Counter(s["type"] for r in rows for s in r["spans"])
    return {"path": str(path), "texts": len(rows), "sha256": hashlib.sha256(blob.encode()).hexdigest()[:16],
            "spans_by_type": dict(sorted(counts.items()))}


if __name__ == "__main__":
    print(json.dumps(write(), indent=1))
