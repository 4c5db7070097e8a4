"""Test fixture (not part of the package): seeded anonymized-like records (what the anonymize stage emits) for tests
and benchmarks: no real PII, pseudonym tokens shaped like the anonymizer's (`<PERSON_7f3a9c2e>`), structured
columns, customers, near-duplicate clusters."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

_FRAUD = [
    "I did not make this payment of {amt} to {merchant}, please block card {card}",
    "someone used my card {card} at {merchant} without permission, I never received the goods",
    "caller said he was from the bank and asked for my code, then {amt} was taken",
    "urgent: unknown transfer to {iban}, I was told to move money to a safe account",
    "phishing text asked me to verify {email}, after that my account was emptied",
    "there are charges I don't recognise from {merchant}, card {card} was stolen last week",
    "I got a message claiming a parcel fee, clicked the link and lost {amt}",
    "account takeover: password changed, {phone} no longer receives codes, transfer to {iban}",
]
_LEGIT = [
    "please update my address, the new statement should go to {person}",
    "I paid {amt} at {merchant}, can you send the receipt to {email}",
    "my card {card} expires soon, when will the replacement arrive",
    "thanks for resolving the duplicate charge from {merchant} last month",
    "how do I set a travel notice, I will use card {card} abroad",
    "please increase my daily limit, I am buying furniture for {amt}",
    "question about the fee on my statement, {person} from support said to write here",
    "can you confirm the standing order to {iban} is active",
]
_FILLER = ["thanks", "regards", "hello", "please", "asap", "today", "yesterday", "kind regards", "cheers", "ok"]
_MERCHANTS = ["grocery store", "online shop", "electronics outlet", "fuel station", "travel agency", "marketplace"]


def _tok(kind: str, rng: np.random.Generator) -> str:
    return f"<{kind}_{rng.integers(0, 16**8):08x}>"


def anonymized_like(
    n: int, seed: int = 0, prevalence: float = 0.2, flip_rate: float = 0.0, sources: tuple[str, ...] = ("chats", "emails"),
    n_customers: int | None = None, dup_rate: float = 0.0, unlabelled_rate: float = 0.0, ambiguity: float = 0.02,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(records, flipped): labels flipped at `flip_rate` (the returned mask marks them). `ambiguity` is the share of
    records phrased like the other class (inherently hard cases, not label errors)."""
    rng = np.random.default_rng(seed)
    true = (rng.random(n) < prevalence).astype(int)
    texts = []
    for i in range(n):
        pool = _FRAUD if true[i] else _LEGIT
        # a share of cross-class phrasing keeps the task realistic (not linearly separable)
        if rng.random() < ambiguity:
            pool = _LEGIT if true[i] else _FRAUD
        tpl = pool[rng.integers(len(pool))]
        t = tpl.format(
            amt=f"{rng.integers(5, 5000)}.{rng.integers(0, 100):02d} EUR", merchant=_MERCHANTS[rng.integers(6)],
            card=_tok("CREDIT_CARD", rng), iban=_tok("IBAN_CODE", rng), email=_tok("EMAIL_ADDRESS", rng),
            phone=_tok("PHONE_NUMBER", rng), person=_tok("PERSON", rng),
        )
        extra = " ".join(rng.choice(_FILLER, size=rng.integers(0, 3)))
        texts.append(f"{t} {extra}".strip())
    flipped = rng.random(n) < flip_rate
    label = np.where(flipped, 1 - true, true)
    n_customers = n_customers or max(n // 3, 1)
    cust = rng.integers(0, n_customers, size=n)
    src = np.asarray(sources)[rng.integers(0, len(sources), size=n)]
    keys = [f"k{i:07d}" for i in range(n)]
    rid = [hashlib.sha256(f"{s}\x1f{k}".encode()).hexdigest()[:16] for s, k in zip(src, keys)]
    df = pd.DataFrame(
        {
            "record_id": rid,
            "source": src,
            "source_key": keys,
            "text": texts,
            "label": pd.array(label, dtype="Int8"),
            "group_id": [f"<CUSTOMER_{hashlib.sha256(str(c).encode()).hexdigest()[:8]}>" for c in cust],
            "event_time": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(np.sort(rng.integers(0, 365 * 24 * 3600, size=n)), unit="s"),
            "dup_cluster": rid,
            "label_conflict": np.zeros(n, dtype=bool),
            "n_entities": [t.count("<") for t in texts],
            "amount": np.round(rng.lognormal(4 + true, 1.0), 2),
            "currency": rng.choice(["EUR", "USD", "GBP"], size=n),
            "channel": rng.choice(["app", "web", "branch", "phone"], size=n),
        }
    )
    if dup_rate > 0:
        # near-duplicate clusters: a record points at an earlier survivor
        dups = np.flatnonzero(rng.random(n) < dup_rate)
        for i in dups:
            if i > 0:
                df.loc[i, "dup_cluster"] = df.loc[int(rng.integers(0, i)), "record_id"]
    if unlabelled_rate > 0:
        df.loc[rng.random(n) < unlabelled_rate, "label"] = pd.NA
    return df, flipped


def write_anonymized(df: pd.DataFrame, folder, gate: dict | None = None) -> None:
    """Write records + a passing gate.json + ledger.json the way the anonymize stage does."""
    from pathlib import Path

    from pipeline.io import write_json, write_parquet
    from pipeline.ledger import Ledger

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet(folder / "records.parquet", df)
    write_json(folder / "gate.json", gate if gate is not None else {
        "passed": True, "residual": {}, "checked_records": len(df), "key_fingerprint": "test0123"})
    led = Ledger("anonymize")
    for s, c in df["source"].value_counts().sort_index().items():
        led.read(str(s), int(c))
        led.accept(str(s), int(c))
    led.write(folder)
