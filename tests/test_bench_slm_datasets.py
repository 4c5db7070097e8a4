"""The pure helpers of benchmarks/bench_slm_datasets.py (the benchmark itself runs the whole CLI path: not a test)."""

from benchmarks.bench_slm_datasets import norm_text, not_below, output_problems, unseen


def test_unseen_matches_after_whitespace_normalisation_only():
    seen = ["Free  entry\nnow!", "ok lar"]
    texts = ["Free entry now!", " ok lar ", "OK lar", "new text"]
    assert norm_text("  a \t b\n") == "a b"
    assert unseen(texts, seen) == [2, 3]  # case is not normalised: "OK lar" is a different text


def test_not_below_reads_the_upper_end_of_the_interval():
    assert not_below({"diff": -0.01, "ci_low": -0.03, "ci_high": 0.0}) is True
    assert not_below({"diff": -0.02, "ci_low": -0.04, "ci_high": -0.001}) is False
    assert not_below({"diff": None, "ci_low": None, "ci_high": None}) is None
    assert not_below(None) is None


def test_output_problems_flags_text_keys_and_leaked_values():
    texts = ["call me on 07700900123 tonight", "hello there my friend"]
    ok = [{"id": 1, "score": 0.9, "label": "fraud", "route": "auto"},
          {"id": 2, "score": None, "label": None, "route": "error", "error": "leak_gate"}]
    assert output_problems(ok, [1, 2], texts) == []
    leaky = [{"id": 1, "score": 0.9, "label": "fraud", "route": "auto", "text": texts[0]}, ok[1]]
    probs = output_problems(leaky, [1, 2], texts)
    assert any("unexpected keys" in p for p in probs)
    assert any("digit run" in p for p in probs) and any("input text" in p for p in probs)
    assert output_problems(ok, [2, 1], texts) == ["ids differ from the input's"]
