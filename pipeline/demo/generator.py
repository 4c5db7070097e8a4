"""`generate()`: the seeded demo sources (docs/data_contracts.md) and their ground truth.

Five fragmented sources share one customer population; every planted PII value, label flip, duplicate and
malformed row is recorded in the ground truth so each later stage can be scored against it.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from faker import Faker

from pipeline.config import DemoParams
from pipeline.demo import texts as T
from pipeline.demo.texts import Ctx, Pools, Segment, render
from pipeline.demo.values import LOCALES, PHONE_REGIONS, Customer, canaries, make_customers, phone
from pipeline.demo.writers import (
    TX_PII_COLUMNS,
    CsvSource,
    EmlSource,
    JsonlSource,
    LinesOut,
    ParquetSource,
    SqliteSource,
)
from pipeline.errors import ConfigError
from pipeline.io import atomic_dir, atomic_path, sha256_file, sha256_tree, write_json
from pipeline.ledger import Ledger

GENERATOR_VERSION = "1"
SOURCES = ("transactions", "chats", "emails", "case_notes", "alerts")
SHARES = {"transactions": 0.60, "chats": 0.20, "emails": 0.07, "case_notes": 0.08, "alerts": 0.05}
PREVALENCE = {"transactions": 0.02, "chats": 0.04, "emails": 0.035, "case_notes": 0.025, "alerts": 0.035}
CANARY_PLACEMENTS = {"transactions": 3, "chats": 2, "emails": 1, "case_notes": 1, "alerts": 1}
TEXT_SOURCES = ("chats", "emails", "case_notes")  # cross-source duplicates travel between these
FILES = {"transactions": "transactions.csv", "chats": "chats.jsonl", "emails": "emails",
         "case_notes": "case_notes.sqlite", "alerts": "alerts.parquet"}
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
SPAN_S = 366 * 24 * 3600
POOL_CAP = 2000


def source_counts(n: int) -> dict[str, int]:
    counts = {s: int(n * SHARES[s]) for s in SOURCES if s != "transactions"}
    counts["transactions"] = n - sum(counts.values())
    return {s: counts[s] for s in SOURCES}


class Quota:
    """Sequential sampling without replacement: exactly `need` hits over `total` draws (weights allowed)."""

    def __init__(self, need: int, total: int, rng: random.Random) -> None:
        self.need, self.remaining, self.rng = need, total, rng

    def take(self, weight: int = 1) -> bool:
        hit = self.remaining > 0 and self.rng.random() * self.remaining < self.need
        self.remaining -= weight
        if hit:
            self.need = max(0, self.need - weight)
        return hit


class ClassFlips:
    """Class-conditional label noise (demo.flip_rate_fraud_to_legit: missed fraud; demo.flip_rate_legit_to_fraud:
    false alarms): each labelled record's given label is flipped with its true class's rate (seeded draws). A fraud
    team's labels miss fraud far more often than they raise false alarms; uniform flips on a 2-4% fraud rate would
    make most "fraud" labels noise."""

    def __init__(self, fraud_to_legit: float, legit_to_fraud: float, rng: random.Random) -> None:
        self.f2l, self.l2f, self.rng = fraud_to_legit, legit_to_fraud, rng

    def take(self, fraud: bool) -> bool:
        return self.rng.random() < (self.f2l if fraud else self.l2f)


@dataclass
class Entry:
    """A well-formed original that later records may duplicate."""

    source: str
    key: str
    segments: list[Segment]
    fraud: bool
    customer: Customer
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stats:
    records: int = 0
    fraud_true: int = 0
    fraud_given: int = 0
    labeled: int = 0
    flipped_to_fraud: int = 0
    flipped_to_legit: int = 0
    dup_exact: int = 0
    dup_near: int = 0
    dup_cross_source: int = 0
    dup_conflicting: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    canary_records: int = 0
    spans: int = 0


class Generator:
    def __init__(self, raw: Path, truth: Path, emails_dir: Path, n: int, seed: int, params: DemoParams) -> None:
        self.n, self.seed, self.params = n, seed, params
        self.rng = random.Random(f"records:{seed}")
        self.flip_rng = random.Random(f"flips:{seed}")
        self.dup_rng = random.Random(f"dups:{seed}")
        self.customers = make_customers(max(8, n // 8), seed)
        self.pools = _pools(seed)
        self.counts = source_counts(n)
        self.stats = {s: Stats() for s in SOURCES}
        self.span_types: dict[str, int] = {}
        self.text_pool: dict[str, list[Entry]] = {s: [] for s in TEXT_SOURCES}
        self.tx_pool: list[Entry] = []
        self.alert_pool: list[Entry] = []
        self.raw, self.truth, self.emails_dir = raw, truth, emails_dir
        self.spans_out = LinesOut(truth / "pii_spans.jsonl")
        self.labels_out = LinesOut(truth / "labels.csv", ["source", "key", "true_label", "given_label", "flipped"])
        self.dups_out = LinesOut(truth / "duplicates.csv", ["source", "key", "dup_of_source", "dup_of_key", "kind"])
        self.mal_out = LinesOut(truth / "malformed.csv", ["source", "locator", "key", "problem"])
        self.progress = _progress(n)

    # ------------------------------------------------------------------ shared helpers

    def close(self) -> None:
        for w in (self.spans_out, self.labels_out, self.dups_out, self.mal_out):
            w.close()
        self.progress.close()

    def customer(self) -> Customer:
        cs = self.customers
        return cs[1 + int((len(cs) - 1) * self.rng.random() ** 1.4)]

    def when(self, i: int, count: int) -> datetime:
        sec = (i + self.rng.random()) * SPAN_S / max(1, count)
        return START + timedelta(seconds=int(sec))

    def plan(self, source: str) -> tuple[int, set[int], dict[int, str], Quota, ClassFlips]:
        count = self.counts[source]
        k_canary = min(CANARY_PLACEMENTS[source], count)
        canary_idx = {count * (j + 1) // (k_canary + 1) for j in range(k_canary)}
        rate = self.params.malformed_rate
        k_mal = 0 if rate <= 0 else min(max(3, round(rate * count)), count // 4)
        free = [i for i in range(count) if i not in canary_idx] if count < 50_000 else None
        rng = random.Random(f"malformed:{self.seed}:{source}")
        if free is not None:
            mal = rng.sample(free, min(k_mal, len(free)))
        else:  # large n: sample positions without materialising the range
            mal = []
            seen = set(canary_idx)
            while len(mal) < k_mal:
                j = rng.randrange(count)
                if j not in seen:
                    seen.add(j)
                    mal.append(j)
        mal.sort()
        problems = _PROBLEMS[source]
        mal_kind = {j: problems[t % len(problems)] for t, j in enumerate(mal)}
        fraud_q = Quota(round(PREVALENCE[source] * count), count, random.Random(f"fraud:{self.seed}:{source}"))
        flip_q = ClassFlips(self.params.flip_rate_fraud_to_legit, self.params.flip_rate_legit_to_fraud, self.flip_rng)
        return count, canary_idx, mal_kind, fraud_q, flip_q

    def label(self, source: str, key: str, fraud: bool, flip_q: ClassFlips) -> bool:
        """Record the true/given label; return the given label (what the source file carries)."""
        st = self.stats[source]
        flipped = flip_q.take(fraud)
        given = fraud != flipped
        st.labeled += 1
        st.fraud_true += fraud
        st.fraud_given += given
        if flipped:
            if given:
                st.flipped_to_fraud += 1
            else:
                st.flipped_to_legit += 1
        self.labels_out.row([source, key, int(fraud), int(given), int(flipped)])
        return given

    def spans(self, source: str, key: str, fld: str, spans: list[tuple[str, str, int, int]], offsets: bool = True) -> None:
        for typ, value, s, e in spans:
            if not offsets:
                s = e = -1
            self.spans_out.line(f'{{"source": "{source}", "key": "{key}", "field": "{fld}", "type": "{typ}", '
                                f'"value": {_JSON(value)}, "start": {s}, "end": {e}}}')
            self.span_types[typ] = self.span_types.get(typ, 0) + 1
            self.stats[source].spans += 1

    def malformed(self, source: str, locator: str, key: str, problem: str) -> None:
        self.mal_out.row([source, locator, key, problem])
        m = self.stats[source].malformed
        m[problem] = m.get(problem, 0) + 1

    def duplicate(self, source: str, key: str, orig: Entry, kind: str, given: bool) -> None:
        st = self.stats[source]
        self.dups_out.row([source, key, orig.source, orig.key, kind])
        if kind == "exact":
            st.dup_exact += 1
        else:
            st.dup_near += 1
        st.dup_cross_source += orig.source != source
        # a conflicting duplicate: its given label differs from the original's given label
        st.dup_conflicting += given != orig.extra.get("given", orig.fraud)

    def pool_add(self, pool: list[Entry], entry: Entry) -> None:
        if len(pool) < POOL_CAP:
            pool.append(entry)
        else:
            pool[self.dup_rng.randrange(POOL_CAP)] = entry

    def want_dup(self, pool_has: bool) -> bool:
        return pool_has and self.dup_rng.random() < self.params.duplicate_rate

    def pick_text_original(self, source: str) -> Entry | None:
        own = self.text_pool.get(source, [])
        other_sources = [s for s in TEXT_SOURCES if s != source and self.text_pool[s]]
        if other_sources and (not own or self.dup_rng.random() < 0.3):
            pool = self.text_pool[self.dup_rng.choice(other_sources)]
        elif own:
            pool = own
        else:
            return None
        return pool[self.dup_rng.randrange(len(pool))]

    def dup_segments(self, orig: Entry) -> tuple[list[Segment], str]:
        if self.dup_rng.random() < 0.5:
            near = T.near_duplicate(orig.segments, self.dup_rng)
            if near is not None:
                return near, "near"
        return list(orig.segments), "exact"

    def canary_hit(self, source: str) -> None:
        self.stats[source].canary_records += 1

    # ------------------------------------------------------------------ transactions

    def transactions(self) -> None:
        src = "transactions"
        count, canary_idx, mal_kind, fraud_q, flip_q = self.plan(src)
        out = CsvSource(self.raw / FILES[src])
        rng = self.rng
        try:
            for i in range(count):
                key = f"T{i:08d}"
                is_fraud = fraud_q.take()
                self.progress.update(1)
                self.stats[src].records += 1
                if i in mal_kind:
                    row, _ = self._tx_row(key, i, count, self.customer(), is_fraud, None)
                    line = out.add_raw(_break_csv(row, mal_kind[i], rng))
                    self.malformed(src, f"line {line}", key, mal_kind[i])
                    continue
                orig = None
                if i not in canary_idx and self.want_dup(bool(self.tx_pool)):
                    orig = self.tx_pool[self.dup_rng.randrange(len(self.tx_pool))]
                if orig is not None:
                    segs, kind = self.dup_segments(orig)
                    fraud = orig.fraud
                    row = list(orig.extra["row"])
                    row[0] = key
                    text, dspans = render(segs)
                    row[18] = text
                    given = self.label(src, key, fraud, flip_q)
                    row[19] = str(int(given))
                    self.duplicate(src, key, orig, kind, given)
                    cust = orig.customer
                else:
                    cust = self.customers[0] if i in canary_idx else self.customer()
                    fraud = is_fraud
                    row, segs = self._tx_row(key, i, count, cust, fraud, canary=i in canary_idx)
                    text, dspans = render(segs)
                    given = self.label(src, key, fraud, flip_q)
                    row[19] = str(int(given))
                    if i in canary_idx:
                        self.canary_hit(src)
                    else:
                        self.pool_add(self.tx_pool, Entry(src, key, segs, fraud, cust, {"row": tuple(row), "given": given}))
                out.add(row)
                self.spans(src, key, "description", dspans)
                for col, typ in TX_PII_COLUMNS:
                    v = row[_TX_IDX[col]]
                    self.spans(src, key, col, [(typ, v, 0, len(v))])
        finally:
            out.close()

    def _tx_row(self, key: str, i: int, count: int, c: Customer, fraud: bool, canary: bool | None = False):
        rng = self.rng
        ctx = Ctx(c, rng, self.pools)
        if fraud:
            amount = round(rng.lognormvariate(5.3, 1.0), 2)
            tx_type = "transfer" if rng.random() < 0.4 else "card"
            foreign = rng.random() < 0.35
            other_ip = rng.random() < 0.7
        else:
            amount = round(rng.lognormvariate(3.7, 1.1), 2)
            tx_type = "transfer" if rng.random() < 0.2 else "card"
            foreign = rng.random() < 0.08
            other_ip = rng.random() < 0.08
        currency = rng.choice(("USD", "EUR", "GBP")) if foreign else T.CURRENCY[c.locale]
        if tx_type == "card":
            mcc = rng.choices(T.MCC_KEYS, weights=T.MCC_FRAUD_W if fraud else T.MCC_LEGIT_W)[0]
            merchant_id = f"MER{rng.randrange(10**6):06d}"
            channel = rng.choices(("pos", "online", "contactless", "atm"),
                                  weights=(2, 6, 1, 1) if fraud else (5, 3, 4, 1))[0]
        else:
            mcc, merchant_id = "money_transfer", ""
            channel = rng.choices(("mobile_app", "online_banking", "branch"), weights=(6, 4, 1) if fraud else (5, 4, 1))[0]
        if canary:
            segs: list[Segment] = ctx.fill("Transfer to own savings {IBAN}")
        elif rng.random() < 0.02:  # a few multi-line memos (quoted newlines in the CSV)
            segs = ctx.fill("Payment note:\n") + T.tx_memo(ctx, fraud)
        else:
            segs = T.tx_memo(ctx, fraud)
        segs = [s for s in segs if s != ""]
        ts = self.when(i, count)
        ip = T.ipv4(rng) if other_ip else c.ip_address
        row = [key, ts.strftime("%Y-%m-%dT%H:%M:%SZ"), c.customer_id, c.name, c.email, c.phone, c.card_number, c.iban,
               ip, c.street_address, c.postcode, c.date_of_birth, f"{amount:.2f}", currency, mcc, merchant_id, channel,
               tx_type, render(segs)[0], "0"]
        return row, segs

    # ------------------------------------------------------------------ chats

    def chats(self) -> None:
        src = "chats"
        count, canary_idx, mal_kind, fraud_q, flip_q = self.plan(src)
        out = JsonlSource(self.raw / FILES[src])
        rng = self.rng
        conv_left, conv_id, conv_n = 0, "", 0
        conv_c: Customer = self.customers[0]
        conv_fraud, conv_channel = False, "chat"
        try:
            for i in range(count):
                key = f"M{i:08d}"
                self.progress.update(1)
                self.stats[src].records += 1
                ts = self.when(i, count).strftime("%Y-%m-%dT%H:%M:%SZ")
                if conv_left <= 0:
                    size = rng.choice((1, 1, 2, 2, 3))
                    conv_n += 1
                    conv_id, conv_left = f"V{conv_n:07d}", size
                    conv_c = self.customer()
                    conv_fraud = fraud_q.take(size)
                    conv_channel = "dispute" if rng.random() < 0.3 else "chat"
                conv_left -= 1
                canary = i in canary_idx
                c = self.customers[0] if canary else conv_c
                rec = {"message_id": key, "conversation_id": conv_id, "customer_id": c.customer_id, "timestamp": ts,
                       "channel": conv_channel, "text": "", "label": "legit"}
                if i in mal_kind:
                    segs = T.chat_text(Ctx(c, rng, self.pools), conv_fraud, conv_channel)
                    rec["text"] = render(segs)[0]
                    rec["label"] = "fraud" if conv_fraud else "legit"
                    line = out.add_raw(_break_json(rec, mal_kind[i], rng))
                    self.malformed(src, f"line {line}", key, mal_kind[i])
                    continue
                orig = None if canary else (self.pick_text_original(src) if self.want_dup(True) else None)
                if orig is not None:
                    segs, kind = self.dup_segments(orig)
                    segs = _strip_trailing_newline(segs)
                    fraud = orig.fraud
                    rec["customer_id"] = orig.customer.customer_id
                    rec["conversation_id"] = f"V{conv_n:07d}d{i}"
                else:
                    fraud = conv_fraud
                    segs = T.chat_text(Ctx(c, rng, self.pools), fraud, conv_channel, canary=canary)
                text, spans = render(segs)
                rec["text"] = text
                given = self.label(src, key, fraud, flip_q)
                rec["label"] = "fraud" if given else "legit"
                out.add(rec)
                self.spans(src, key, "text", spans)
                if orig is not None:
                    self.duplicate(src, key, orig, kind, given)
                elif canary:
                    self.canary_hit(src)
                else:
                    self.pool_add(self.text_pool[src], Entry(src, key, segs, fraud, c, {"given": given}))
        finally:
            out.close()

    # ------------------------------------------------------------------ emails

    def emails(self) -> None:
        src = "emails"
        count, canary_idx, mal_kind, fraud_q, flip_q = self.plan(src)
        out = EmlSource(self.emails_dir)
        rng = self.rng
        for i in range(count):
            key = f"E{i:06d}.eml"
            is_fraud = fraud_q.take()
            self.progress.update(1)
            self.stats[src].records += 1
            when = self.when(i, count)
            canary = i in canary_idx
            if i in mal_kind:
                c = self.customer()
                body, _ = render(T.email_body(Ctx(c, rng, self.pools), is_fraud))
                out.write(key, _broken_eml(out, key, c, when, is_fraud, body, mal_kind[i], rng))
                self.malformed(src, key, key, mal_kind[i])
                continue
            orig = None if canary else (self.pick_text_original(src) if self.want_dup(True) else None)
            if orig is not None:
                segs, kind = self.dup_segments(orig)
                segs = _strip_trailing_newline(segs) + ["\n"]
                fraud, c = orig.fraud, orig.customer
            else:
                c = self.customers[0] if canary else self.customer()
                fraud = is_fraud
                segs = T.email_body(Ctx(c, rng, self.pools), fraud, canary=canary)
            body, spans = render(segs)
            given = self.label(src, key, fraud, flip_q)
            layout = rng.choices(("plain", "alternative", "html"), weights=(70, 20, 10))[0]
            charset, cte = rng.choices(_EMAIL_ENCODINGS, weights=_EMAIL_ENC_W)[0]
            try:
                body.encode(charset)
            except UnicodeEncodeError:
                charset = "utf-8"
            out.write(key, out.build(key=key, name=c.name, email=c.email, customer_id=c.customer_id,
                                     subject=T.email_subject(rng), when=when,
                                     outcome="confirmed_fraud" if given else "benign", body=body, layout=layout,
                                     charset=charset, cte=cte))
            from_value, ns, es = EmlSource.from_header(c.name, c.email)
            self.spans(src, key, "From", [("PERSON", c.name, ns, ns + len(c.name)),
                                          ("EMAIL_ADDRESS", c.email, es, es + len(c.email))])
            if layout == "html":
                self.spans(src, key, "body_html", spans, offsets=False)
            else:
                self.spans(src, key, "body", spans)
            if orig is not None:
                self.duplicate(src, key, orig, kind, given)
            elif canary:
                self.canary_hit(src)
            else:
                self.pool_add(self.text_pool[src], Entry(src, key, _strip_trailing_newline(segs), fraud, c, {"given": given}))

    # ------------------------------------------------------------------ case notes

    def case_notes(self, path: Path) -> None:
        src = "case_notes"
        count, canary_idx, mal_kind, fraud_q, flip_q = self.plan(src)
        out = SqliteSource(path)
        rng = self.rng
        try:
            for i in range(count):
                key = f"N{i:07d}"
                is_fraud = fraud_q.take()
                self.progress.update(1)
                self.stats[src].records += 1
                created = self.when(i, count).strftime("%Y-%m-%dT%H:%M:%SZ")
                case_id = f"K{i // 2:07d}"
                analyst = f"analyst_{rng.randrange(1, 25):02d}"
                canary = i in canary_idx
                if i in mal_kind:
                    c = self.customer()
                    note = render(T.case_note(Ctx(c, rng, self.pools), is_fraud))[0]
                    problem = mal_kind[i]
                    if problem == "null_note":
                        row = (key, case_id, c.customer_id, analyst, created, None, "fraud" if is_fraud else "not_fraud")
                    else:
                        row = (key, case_id, c.customer_id, analyst, created, note,
                               rng.choice(("pending_review", "unknown", "", "FRAUD?")))
                    out.add(row)
                    self.malformed(src, key, key, problem)
                    continue
                orig = None if canary else (self.pick_text_original(src) if self.want_dup(True) else None)
                if orig is not None:
                    segs, kind = self.dup_segments(orig)
                    segs = _strip_trailing_newline(segs)
                    fraud, c = orig.fraud, orig.customer
                else:
                    c = self.customers[0] if canary else self.customer()
                    fraud = is_fraud
                    segs = T.case_note(Ctx(c, rng, self.pools), fraud, canary=canary)
                note, spans = render(segs)
                given = self.label(src, key, fraud, flip_q)
                out.add((key, case_id, c.customer_id, analyst, created, note, "fraud" if given else "not_fraud"))
                self.spans(src, key, "note", spans)
                if orig is not None:
                    self.duplicate(src, key, orig, kind, given)
                elif canary:
                    self.canary_hit(src)
                else:
                    self.pool_add(self.text_pool[src], Entry(src, key, segs, fraud, c, {"given": given}))
        finally:
            out.close()

    # ------------------------------------------------------------------ alerts

    def alerts(self, path: Path) -> None:
        src = "alerts"
        count, canary_idx, mal_kind, fraud_q, flip_q = self.plan(src)
        out = ParquetSource(path)
        rng = self.rng
        try:
            for i in range(count):
                key = f"A{i:07d}"
                fraud = fraud_q.take()
                self.progress.update(1)
                self.stats[src].records += 1
                created = self.when(i, count)
                canary = i in canary_idx
                c = self.customers[0] if canary else self.customer()
                rule = rng.choices(T.RULES, weights=(_RULE_FRAUD_W if fraud else _RULE_LEGIT_W))[0]
                orig = None
                if i not in canary_idx and i not in mal_kind and self.want_dup(bool(self.alert_pool)):
                    orig = self.alert_pool[self.dup_rng.randrange(len(self.alert_pool))]
                if orig is not None:
                    segs, kind = self.dup_segments(orig)
                    fraud, c, rule = orig.fraud, orig.customer, orig.extra["rule"]
                else:
                    ctx = Ctx(c, rng, self.pools)
                    segs = T.alert_reason(ctx, rule, fraud)
                    if canary:
                        segs += ctx.fill(" Customer {NAME}, phone {PHONE}, card {CARD}, IBAN {IBAN}.")
                reason, spans = render(segs)
                score = round(rng.betavariate(5, 2) if fraud else rng.betavariate(2, 4), 4)
                rec = {"alert_id": key, "customer_id": c.customer_id, "created_at": created, "rule": rule,
                       "reason": reason, "score": score, "confirmed": False}
                if i in mal_kind:
                    rec["reason"] = None
                    rec["confirmed"] = fraud
                    row = out.add(rec)
                    self.malformed(src, f"row {row}", key, mal_kind[i])
                    continue
                given = self.label(src, key, fraud, flip_q)
                rec["confirmed"] = given
                out.add(rec)
                self.spans(src, key, "reason", spans)
                if orig is not None:
                    self.duplicate(src, key, orig, kind, given)
                elif canary:
                    self.canary_hit(src)
                else:
                    self.pool_add(self.alert_pool, Entry(src, key, segs, fraud, c, {"rule": rule, "given": given}))
        finally:
            out.close()

    # ------------------------------------------------------------------ summary

    def manifest(self) -> dict[str, Any]:
        per: dict[str, Any] = {}
        for s in SOURCES:
            st = self.stats[s]
            per[s] = {
                "file": FILES[s] + ("/*.eml" if s == "emails" else ""),
                "records": st.records,
                "labeled": st.labeled,
                "malformed": sum(st.malformed.values()),
                "malformed_by_problem": dict(sorted(st.malformed.items())),
                "fraud_true": st.fraud_true,
                "fraud_given": st.fraud_given,
                "prevalence_true": _ratio(st.fraud_true, st.labeled),
                "prevalence_given": _ratio(st.fraud_given, st.labeled),
                "flipped": st.flipped_to_fraud + st.flipped_to_legit,
                "flipped_legit_to_fraud": st.flipped_to_fraud,
                "flipped_fraud_to_legit": st.flipped_to_legit,
                "duplicates_exact": st.dup_exact,
                "duplicates_near": st.dup_near,
                "duplicates_cross_source": st.dup_cross_source,
                "duplicates_conflicting_label": st.dup_conflicting,
                "canary_records": st.canary_records,
                "pii_spans": st.spans,
            }

        def tot(k: str) -> int:
            return sum(per[s][k] for s in SOURCES)

        labeled = tot("labeled")
        return {
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "n": self.n,
            "n_records": tot("records"),
            "n_customers": len(self.customers),
            "params": self.params.model_dump(mode="json"),
            "counts": {s: per[s]["records"] for s in SOURCES},
            "prevalence": {s: per[s]["prevalence_true"] for s in SOURCES},
            "prevalence_given": {s: per[s]["prevalence_given"] for s in SOURCES},
            "flip": {
                "rate_param_fraud_to_legit": self.params.flip_rate_fraud_to_legit,
                "rate_param_legit_to_fraud": self.params.flip_rate_legit_to_fraud,
                "flipped": tot("flipped"),
                "realised_rate": _ratio(tot("flipped"), labeled),
                "legit_to_fraud": tot("flipped_legit_to_fraud"),
                "fraud_to_legit": tot("flipped_fraud_to_legit"),
                "realised_rate_legit": _ratio(tot("flipped_legit_to_fraud"), labeled - tot("fraud_true")),
                "realised_rate_fraud": _ratio(tot("flipped_fraud_to_legit"), tot("fraud_true")),
            },
            "duplicates": {
                "exact": tot("duplicates_exact"),
                "near": tot("duplicates_near"),
                "cross_source": tot("duplicates_cross_source"),
                "conflicting_label": tot("duplicates_conflicting_label"),
            },
            "malformed": {s: per[s]["malformed"] for s in SOURCES},
            "labeled": labeled,
            "pii_spans_by_type": dict(sorted(self.span_types.items())),
            "canaries": len(canaries()),
            "sources": per,
        }


# --------------------------------------------------------------------------------------------- helpers

_JSON = json.JSONEncoder(ensure_ascii=False).encode  # keys/sources/types are plain ASCII identifiers
_TX_IDX = {c: i for i, c in enumerate(
    ["tx_id", "timestamp", "customer_id", "customer_name", "email", "phone", "card_number", "iban", "ip_address",
     "street_address", "postcode", "date_of_birth"])}
_PROBLEMS = {
    "transactions": ("broken_quoting", "missing_fields", "extra_fields", "invalid_utf8"),
    "chats": ("truncated_line", "invalid_json", "missing_field"),
    "emails": ("no_body", "undecodable_body"),
    "case_notes": ("null_note", "unknown_outcome"),
    "alerts": ("null_reason",),
}
_EMAIL_ENCODINGS = (("utf-8", None), ("utf-8", "quoted-printable"), ("utf-8", "base64"), ("iso-8859-1", "quoted-printable"),
                    ("iso-8859-1", "8bit"), ("cp1252", "quoted-printable"), ("cp1252", "8bit"))
_EMAIL_ENC_W = (35, 15, 15, 15, 5, 10, 5)
_RULE_FRAUD_W = (10, 10, 18, 20, 10, 16, 16)
_RULE_LEGIT_W = (25, 22, 15, 12, 20, 3, 3)


def _ratio(a: int, b: int) -> float:
    return round(a / b, 6) if b else 0.0


def _strip_trailing_newline(segs: list[Segment]) -> list[Segment]:
    segs = list(segs)
    while segs and isinstance(segs[-1], str) and segs[-1].endswith("\n"):
        tail = segs[-1].rstrip("\n")
        if tail:
            segs[-1] = tail
            break
        segs.pop()
    return segs


def _break_csv(row: list[str], problem: str, rng: random.Random) -> bytes:
    row = [v.replace("\n", " ") for v in row]
    if problem == "missing_fields":
        return CsvSource.render_row(row[: rng.randint(8, 16)]).encode()
    if problem == "extra_fields":
        return CsvSource.render_row(row + ["EXTRA"] * rng.randint(1, 3)).encode()
    if problem == "invalid_utf8":
        row[18] = (row[18] or "Card payment") + " \x00MARK\x00"
        line = CsvSource.render_row(row).encode()
        return line.replace(b"\x00MARK\x00", b"\xff\xfe\xc3\x28")
    # broken quoting: text after a closing quote, then a stray comma -> a strict parser raises, a lenient one
    # sees one field too many
    line = CsvSource.render_row(row[:18]).rstrip("\n")
    memo = (row[18] or "Card payment").replace('"', "")
    return (line + f',"{memo}" see ticket, ref {rng.randrange(1000, 9999)},{row[19]}\n').encode()


def _break_json(rec: dict[str, Any], problem: str, rng: random.Random) -> str:
    line = json.dumps(rec, ensure_ascii=False)
    if problem == "truncated_line":
        return line[: max(10, int(len(line) * rng.uniform(0.3, 0.8)))]
    if problem == "invalid_json":
        return line[:-1] + ', "label": fraud,}' if rng.random() < 0.5 else line.replace('"message_id"', "'message_id'", 1)
    missing = rng.choice(("text", "label"))
    rec = {k: v for k, v in rec.items() if k != missing}
    return json.dumps(rec, ensure_ascii=False)


def _broken_eml(out: EmlSource, key: str, c: Customer, when: datetime, fraud: bool, body: str, problem: str,
                rng: random.Random) -> bytes:
    head = out.headers(key=key, name=c.name, email=c.email, customer_id=c.customer_id, subject=T.email_subject(rng),
                       when=when, outcome="confirmed_fraud" if fraud else "benign").encode("ascii")
    if problem == "no_body":
        return head + b"\n"  # headers only, no body at all
    raw = body.encode("utf-8")
    cut = len(raw) // 2
    return (head + b'MIME-Version: 1.0\nContent-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n'
            + raw[:cut] + b"\xff\xfe\xc0\xaf\x80" + raw[cut:])


def _pools(seed: int) -> Pools:
    rng = random.Random(f"pools:{seed}")
    names: list[str] = []
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 7919 + i)
        names += [f"{f.first_name()} {f.last_name()}" for _ in range(150)]
    agents = [n.split(" ")[0] for n in names[:40]]
    phones = [phone(rng, rng.choice(list(PHONE_REGIONS.values()))) for _ in range(200)]
    return Pools(names=names, agents=agents, phones=phones)


class _NoProgress:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(n: int):
    if not (sys.stderr.isatty() or n >= 200_000):
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=n, desc="demo-data", unit="rec", file=sys.stderr, mininterval=1.0)


# --------------------------------------------------------------------------------------------- entry point


def generate(out: Path, truth_out: Path, n: int, seed: int, params: DemoParams) -> dict[str, Any]:
    """Write the five demo sources into `out` and the ground truth into `truth_out`; return the manifest."""
    out, truth_out = Path(out), Path(truth_out)
    if n < 10:
        raise ConfigError(f"demo-data: --n {n}: must be at least 10")
    if out.resolve() == truth_out.resolve():
        raise ConfigError(f"demo-data: {truth_out}: ground truth must be kept apart from the sources (--truth)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"demo-data: {out}: --out is a file, expected a folder")
    _check_truth_dir(truth_out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # every output is a temp path renamed into place only when the whole generation succeeds
        emails_dir = stack.enter_context(atomic_dir(out / FILES["emails"]))
        tmp = {name: stack.enter_context(atomic_path(out / name)) for name in
               (FILES["transactions"], FILES["chats"], FILES["case_notes"], FILES["alerts"])}
        truth_tmp = stack.enter_context(atomic_dir(truth_out))
        g = Generator(_Redirect(tmp), truth_tmp, emails_dir, n, seed, params)
        try:
            g.transactions()
            g.chats()
            g.emails()
            g.case_notes(tmp[FILES["case_notes"]])
            g.alerts(tmp[FILES["alerts"]])
        finally:
            g.close()
        manifest = g.manifest()
        write_json(truth_tmp / "canaries.json", canaries())
        write_json(truth_tmp / "manifest.json", manifest)
        ledger = Ledger("demo-data")
        for s in SOURCES:
            ledger.read(s, manifest["counts"][s])
            ledger.accept(s, manifest["counts"][s])
            src = ledger.source(s)
            if s == "emails":
                src.sha256 = sha256_tree(emails_dir)
                src.bytes = sum(f.stat().st_size for f in emails_dir.iterdir())
            else:
                src.sha256 = sha256_file(tmp[FILES[s]])
                src.bytes = tmp[FILES[s]].stat().st_size
        ledger.extra["n_records"] = manifest["n_records"]
        ledger.extra["planted"] = {"malformed": manifest["malformed"], "duplicates": manifest["duplicates"],
                                   "flipped": manifest["flip"]["flipped"]}
    ledger.write(out)
    write_json(out / "metrics.json", _metrics(manifest))
    return manifest


TRUTH_FILES = ("pii_spans.jsonl", "labels.csv", "duplicates.csv", "malformed.csv", "canaries.json", "manifest.json")


def _check_truth_dir(truth_out: Path) -> None:
    """The ground-truth folder is replaced as a whole: refuse a non-empty folder that is not a previous one."""
    if truth_out.is_file():
        raise ConfigError(f"demo-data: {truth_out}: ground-truth path is a file")
    if truth_out.is_dir():
        unknown = sorted(p.name for p in truth_out.iterdir() if p.name not in TRUTH_FILES and not p.name.startswith("."))
        if unknown:
            raise ConfigError(f"demo-data: {truth_out}: not a ground-truth folder (holds {unknown[0]!r}); "
                              "choose an empty or new --truth folder")


class _Redirect:
    """`raw / name` -> the temp path for that output (the writers only ever join one file name)."""

    def __init__(self, tmp: dict[str, Path]) -> None:
        self.tmp = tmp

    def __truediv__(self, name: str) -> Path:
        return self.tmp[name]


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": "demo-data",
        "seed": m["seed"],
        "n_records": m["n_records"],
        "n_customers": m["n_customers"],
        "counts": m["counts"],
        "prevalence_true": m["prevalence"],
        "prevalence_given": m["prevalence_given"],
        "flip": m["flip"],
        "duplicates": m["duplicates"],
        "malformed": m["malformed"],
        "pii_spans_by_type": m["pii_spans_by_type"],
        "canaries": m["canaries"],
    }
