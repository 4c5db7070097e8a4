"""The bound of benchmarks/ablation_label_issue_filter.py (the ablation itself runs on the benchmark's CLI outputs:
not a test): the best precision any pair of per-class flag counts reaches at a recall target, checked against brute
force over every (k0, k1) with cleanlab's normalized-margin ranking."""

import itertools

import numpy as np
from cleanlab.rank import get_label_quality_scores

from benchmarks.ablation_label_issue_filter import bound_precision_at_recall, summarize


def _brute(y, pp, truth, recall):
    score = get_label_quality_scores(y, pp, method="normalized_margin")
    ranked = [np.flatnonzero(y == c)[np.argsort(score[y == c], kind="stable")] for c in (0, 1)]
    best = 0.0
    for k0, k1 in itertools.product(range(len(ranked[0]) + 1), range(len(ranked[1]) + 1)):
        flagged = np.concatenate([ranked[0][:k0], ranked[1][:k1]]).astype(int)
        if not len(flagged):
            continue
        hits = truth[flagged].sum()
        if hits >= np.ceil(recall * truth.sum()):
            best = max(best, hits / len(flagged))
    return best


def test_bound_equals_brute_force_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 30
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        p1 = rng.uniform(0.01, 0.99, n)
        pp = np.column_stack([1 - p1, p1])
        truth = rng.random(n) < 0.3
        truth[0] = True
        for recall in (0.5, 0.85, 1.0):
            assert abs(bound_precision_at_recall(y, pp, truth, recall) - round(_brute(y, pp, truth, recall), 4)) < 1e-9


def test_perfectly_separated_flips_give_precision_one():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    truth = np.array([True, False, False, False, True, False, False, False])
    p1 = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9])  # the flipped ones look like the other class
    assert bound_precision_at_recall(y, np.column_stack([1 - p1, p1]), truth) == 1.0


def test_summary_names_cells_no_count_can_fix_and_where_flagging_every_minority_label_passes():
    def prf(p, r):
        return {"flagged": 1, "true": 1, "precision": p, "recall": r, "f1": 2 * p * r / (p + r)}

    runs = []
    for data, noise, bound, minority, stage in (("a", "uniform", 0.80, prf(0.86, 0.99), prf(0.9, 0.6)),
                                                ("b", "uniform", 0.95, prf(0.2, 0.6), prf(0.95, 0.9))):
        for seed in (1, 2):
            row = {"data": data, "noise": noise, "seed": seed, "flag_all_minority": minority,
                   "standard": prf(0.9, 0.5), "minority_noise_share": 0.5, "separability_auc": 0.7,
                   "bound_precision_at_recall_085": bound}
            row.update({f: stage for f in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                                           "predicted_neq_given", "low_normalized_margin", "low_self_confidence")})
            runs.append(row)
    s = summarize(runs)
    assert s["no_count_rule_reaches_085"] == ["a/uniform (0.800)"]
    assert s["flag_all_minority_meets_085"] == ["a/uniform"]
    assert s["qualifies"]["prune_by_noise_rate"] is True
    assert s["qualifies"]["flag_all_minority"] is False  # F1 0.925 vs standard 0.643 on a, but 0.3 on b
    assert "prune_by_class, both" in s["decision"]
