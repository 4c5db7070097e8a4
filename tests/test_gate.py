"""Leakage gate: pattern checks, original-value and canary lookups, and the stage failing closed (exit 1, nothing
published) when PII survives. Real detector, tiny inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.anonymize.gate import LeakageGate, ValueMatcher, pattern_findings, segments
from pipeline.anonymize.pseudonym import Encryptor, Pseudonymizer
from pipeline.config import load_params
from pipeline.errors import GateError

REPO = Path(__file__).resolve().parent.parent


def _types(text: str, min_score: float = 0.85) -> list[str]:
    return sorted(f.type for f in pattern_findings(text) if f.score >= min_score)


# ------------------------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    "text",
    [
        "card 4111111111111111 ok",
        "card 4111 1111 1111 1111 ok",
        "card 4111-1111-1111-1111 ok",
        "card 4111.1111.1111.1111 ok",
        "amex 3782.822463.10005 ok",
        "amex 3782 822463 10005 ok",
        "two numbers 4111111111111111 100 glued",
    ],
)
def test_card_any_grouping(text):
    assert "CREDIT_CARD" in _types(text)


def test_card_needs_luhn():
    assert "CREDIT_CARD" not in _types("order 4111111111111112 shipped")
    assert "CREDIT_CARD" not in _types("order 4111.1111.1111.1112 shipped")


def test_dots_only_in_the_card_shapes():
    """Dotted digits are read as a card only in the 4-4-4-4 and 4-6-5 shapes: amounts, versions, IPs stay out."""
    assert _types("paid 1.234.567,89 EUR, build 4.1111.1111.1111.1 on 192.168.1.10", min_score=0.0) == []


def test_iban_ssn_email_aba_phone():
    assert _types("IBAN GB82 WEST 1234 5698 7654 32.") == ["IBAN_CODE"]
    assert _types("IBAN GB82WEST12345698765431") == []  # bad check digits
    assert _types("ssn 512-84-3097") == ["US_SSN"]
    assert _types("mail Jane.Doe+x@Example.co.uk now") == ["EMAIL_ADDRESS"]
    assert _types("routing number 021000021") == ["ABA_ROUTING"]
    assert _types("ref 021000021") == []  # checksum-valid, no context: a suspect only
    assert _types("call +1 415-555-0123 or (415) 555-0124") == ["PHONE_NUMBER", "PHONE_NUMBER"]
    assert _types("network 156.59.152.0/24 at 2024-03-05 14:22:10, total 1234.56") == []

@pytest.mark.parametrize("text", ["IBAN DE89370400440532013000 Mark Twain", "IBAN DE89 3704 0044 0532 0130 00 Mark",
                                  "to DE89-3704-0044-0532-0130-00 MARK"])
def test_iban_finding_ends_at_the_iban(text):
    """The candidate may run on into the next word ("... 00 M"); the finding stops at the IBAN's last character, so
    the same IBAN always gives the same value (and pseudonym) whatever follows it."""
    (f,) = [f for f in pattern_findings(text) if f.type == "IBAN_CODE"]
    assert text[f.start:f.end].replace(" ", "").replace("-", "") == "DE89370400440532013000"



def test_tokens_never_trip_the_gate():
    p = Pseudonymizer(b"k" * 32)
    enc = Encryptor(b"e" * 32)
    toks = []
    for i in range(300):  # enough tokens that some hex parts are all digits
        toks.append(p.token("CREDIT_CARD", f"4111 1111 1111 {i:04d}"))
        toks.append(p.token("PHONE_NUMBER", f"+1415555{i:04d}"))
        toks.append(enc.encrypt("US_BANK_NUMBER", f"77300192845{i:03d}"))
    text = " ".join(toks) + " <US_SSN> <PERSON>"
    matcher = ValueMatcher()
    matcher.add("US_BANK_NUMBER", "123456789012")
    gate = LeakageGate(0.85, originals=matcher)
    assert gate.scan_text(text, originals=True) == []
    # ...but only exact token shapes are cut out: digits inside look-alikes are still scanned
    assert [f.type for f in gate.scan_text("<X_4111111111111111>", True)] == ["CREDIT_CARD"]


def test_segments_do_not_join_neighbours():
    m = ValueMatcher()
    m.add("PERSON", "John Smith")
    text = "John <CREDIT_CARD_0123456789ab> Smith"
    assert [piece for _, piece in segments(text)] == ["John ", " Smith"]
    gate = LeakageGate(0.85, originals=m)
    assert gate.scan_text(text, originals=True) == []
    assert [f.check for f in gate.scan_text("John  SMITH", originals=True)] == ["original_value"]


def test_value_matcher_formats_and_case():
    m = ValueMatcher()
    assert m.add("CREDIT_CARD", "4111-1111-1111-1111")
    assert m.add("PHONE_NUMBER", "+1 415 555 0123")
    assert m.add("IBAN_CODE", "GB82WEST12345698765432")
    assert m.add("EMAIL_ADDRESS", "Jane.Doe@example.com")
    assert m.add("DATE_OF_BIRTH", "1985-03-12")
    assert m.add("PERSON", "Kimberly")  # one word: exact case only
    assert not m.add("PERSON", "Al")  # too short to be distinctive
    assert not m.add("CVV", "123")
    text = ("4111 1111 1111 1111 | (415) 555-0123 | gb82 west 1234 5698 7654 32 | jane.doe@EXAMPLE.com | "
            "3/12/1985 | Kimberly | kimberly")
    found = sorted({t for _, _, t in m.find(text)})
    assert found == ["CREDIT_CARD", "DATE_OF_BIRTH", "EMAIL_ADDRESS", "IBAN_CODE", "PERSON", "PHONE_NUMBER"]
    assert sum(1 for *_, t in m.find(text) if t == "PERSON") == 1


def test_gate_report_counts_and_canaries():
    m = ValueMatcher()
    m.add("PERSON", "Maria Garcia")
    gate = LeakageGate(0.85, originals=m, canaries=[("PERSON", "Zebulon Quartermaine")])
    assert gate.scan_record("r1", [("text", "paid by maria garcia", True)]) == 1
    assert gate.scan_record("r2", [("note", "maria garcia", False)]) == 0  # originals only where scanned
    assert gate.scan_record("r3", [("merchant", "ZEBULON QUARTERMAINE shop", False)]) >= 1
    assert gate.scan_record("r4", [("text", "ref 021000021", True)]) == 0  # suspect, below min_score
    rep = gate.report.to_dict()
    assert rep["passed"] is False
    assert rep["by_check"]["original_value"] == 1 and rep["by_check"]["canary"] >= 1
    assert rep["suspects"] == {"ABA_ROUTING": 1}
    assert rep["records_with_residual"] == 2
    assert all("value" not in ex for ex in rep["examples"])


# ---------------------------------------------------------------------------------------- stage level


def _rid(source: str, key: str) -> str:
    return hashlib.sha256(f"{source}\x1f{key}".encode()).hexdigest()[:16]


def _records(folder: Path, rows: list[dict]) -> Path:
    base = []
    for i, r in enumerate(rows):
        src = r.pop("source", "chats")
        key = f"K{i:04d}"
        base.append({"record_id": _rid(src, key), "source": src, "source_key": key, "label": 0, "group_id": "C000001",
                     "event_time": pd.Timestamp("2024-01-01", tz="UTC"), "dup_cluster": _rid(src, key),
                     "label_conflict": False, **r})
    df = pd.DataFrame(base)
    df["label"] = df["label"].astype("Int8")
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / "records.parquet", index=False)
    return folder


def _params(**over):
    o = {"anonymize.workers": 1, "anonymize.registry": str(REPO / "schemas" / "recognizers.yaml")}
    o.update(over)
    return load_params(REPO / "params.yaml", o)


def _assert_nothing_published(out: Path) -> None:
    assert not (out / "records.parquet").exists()
    assert not (out / "entities.parquet").exists()
    gate = json.loads((out / "gate.json").read_text())
    assert gate["passed"] is False


def test_card_in_keep_column_fails_and_publishes_nothing(tmp_path):
    from pipeline.anonymize import run_anonymize

    inp = _records(tmp_path / "in", [
        {"text": "Hello, my card was declined at the shop.", "merchant_id": "MER 4111 1111 1111 1111"},
        {"text": "All fine, thanks.", "merchant_id": "MER001"},
    ])
    with pytest.raises(GateError, match="CREDIT_CARD"):
        run_anonymize(inp, tmp_path / "out", _params(**{"anonymize.columns.merchant_id": "keep"}))
    _assert_nothing_published(tmp_path / "out")


def test_iban_and_canary_survivors_fail(tmp_path):
    from pipeline.anonymize import run_anonymize

    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "canaries.json").write_text(json.dumps([{"type": "PERSON", "value": "Zebulon Quartermaine-Vasquez"}]))
    inp = _records(tmp_path / "in", [
        {"text": "Refund please.", "rule": "payee zebulon quartermaine-vasquez"},
        {"text": "Thanks.", "rule": "IBAN GB82 WEST 1234 5698 7654 32"},
    ])
    with pytest.raises(GateError) as err:
        run_anonymize(inp, tmp_path / "out", _params(), ground_truth=truth)
    assert "IBAN_CODE" in str(err.value) and "Zebulon" not in str(err.value)
    gate = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert gate["by_check"]["canary"] >= 1 and gate["residual"]["IBAN_CODE"] == 1
    assert gate["canaries_checked"] == 1
    _assert_nothing_published(tmp_path / "out")


def test_broken_detector_is_caught_by_the_gate(tmp_path):
    """The card recognizer broken in the registry, the gate on: exit 1 through the CLI, nothing downstream."""
    import yaml
    from typer.testing import CliRunner

    from pipeline.cli import app

    reg = yaml.safe_load((REPO / "schemas" / "recognizers.yaml").read_text())
    for r in reg["recognizers"]:
        if r.get("name") in ("CardNumberRecognizer", "GatePatternRecognizer"):  # every recognizer of cards
            r["enabled"] = False
    # a card recognizer with a broken pattern (the registry must still report CREDIT_CARD)
    reg["recognizers"].append({"name": "BrokenCardRecognizer", "type": "custom", "supported_entity": "CREDIT_CARD",
                               "supported_language": "en",
                               "patterns": [{"name": "never", "regex": "(?!x)x", "score": 0.9}]})
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(reg))
    inp = _records(tmp_path / "in", [
        {"text": "My card 4539 1488 0343 6467 was charged twice, please help."},
        {"text": "Nothing to report."},
    ])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["anonymize", "--in", str(inp), "--out", str(out),
                                   "--params", str(REPO / "params.yaml"),
                                   "--set", "anonymize.workers=1", "--set", f"anonymize.registry={broken}"])
    assert res.exit_code == 1, res.output
    assert "leakage gate failed" in res.output and "4539" not in res.output
    _assert_nothing_published(out)
    assert json.loads((out / "gate.json").read_text())["residual"] == {"CREDIT_CARD": 1}


def test_gate_passes_clean_output_and_reports_fingerprint(tmp_path):
    from pipeline.anonymize import run_anonymize

    inp = _records(tmp_path / "in",
                   [{"text": "Card 4111 1111 1111 1111, mail jane@corp-mail.com, IBAN GB82WEST12345698765432"}])
    m = run_anonymize(inp, tmp_path / "out", _params())
    gate = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert gate["passed"] is True and gate["residual"] == {}
    assert gate["key_fingerprint"] == m["key_fingerprint"] and len(gate["key_fingerprint"]) == 12
    assert gate["original_values_checked"] >= 3


def test_sweep_takes_only_values_the_detector_agrees_on():
    """The batch dictionary sweep: a free-text value tagged in most texts that hold it is replaced everywhere; one
    tagged in a handful of the many texts that hold it (a false positive such as 'via online') is not swept, and
    identifiers always are."""
    from pipeline.anonymize.gate import ValueMatcher
    from pipeline.anonymize.replace import SweepCandidates, collect_detected

    texts = [f"card payment {i} at grocery via online" for i in range(40)]
    texts += ["thanks Peter Little, call 0871 234 5678", "Peter Little again", "ask Peter Little", "Bjorn"]

    def spans(t):
        out = []
        if t.startswith("thanks") or t.startswith("ask"):
            i = t.index("Peter Little")
            out.append(("PERSON", i, i + 12, 0.85, "ner"))
        if t == "card payment 3 at grocery via online":
            out.append(("PERSON", t.index("via online"), len(t), 0.85, "ner"))
        if "0871" in t:
            out.append(("PHONE_NUMBER", t.index("0871"), t.index("0871") + 13, 0.9, "phone"))
        if t == "Bjorn":
            out.append(("PERSON", 0, 5, 0.85, "ner"))
        return out

    dictionary, cand = ValueMatcher(), SweepCandidates()
    collect_detected(dictionary, [(texts, [spans(t) for t in texts])], set(), cand)
    cand.count(texts)
    cand.commit(dictionary)
    assert [t for _, _, t in dictionary.find("Peter Little again")] == ["PERSON"]  # 2 of 3 texts: swept
    assert dictionary.find("card payment 7 at grocery via online") == []  # 1 of 40 texts: withheld
    assert cand.withheld == 1
    assert dictionary.find("my number is 0871 234 5678")  # identifiers always join
    assert dictionary.find("Bjorn") == []  # one-word free-text values are never swept
