"""What each report section guarantees, how that was checked, and the rules it serves (one plain sentence each).

These strings are rendered verbatim into report.json and report.html. References are plain text (no links: the
report makes no external request, and reviewers cite the articles, not a web page).
"""

from __future__ import annotations

GDPR_5_1_C = {"framework": "GDPR", "ref": "Art. 5(1)(c)", "topic": "data minimisation"}
GDPR_5_1_D = {"framework": "GDPR", "ref": "Art. 5(1)(d)", "topic": "accuracy"}
GDPR_5_1_F = {"framework": "GDPR", "ref": "Art. 5(1)(f)", "topic": "integrity and confidentiality"}
GDPR_5_2 = {"framework": "GDPR", "ref": "Art. 5(2)", "topic": "accountability"}
GDPR_4_5 = {"framework": "GDPR", "ref": "Art. 4(5)", "topic": "pseudonymisation (definition)"}
GDPR_25 = {"framework": "GDPR", "ref": "Art. 25", "topic": "data protection by design and by default"}
GDPR_32 = {"framework": "GDPR", "ref": "Art. 32", "topic": "security of processing (pseudonymisation, integrity)"}
PCI_3_3 = {"framework": "PCI DSS", "ref": "Req. 3.3 (v3.2.1) / 3.4.1 (v4.0)",
           "topic": "PAN masked when displayed; sensitive authentication data (CVV) not retained"}
PCI_3_4 = {"framework": "PCI DSS", "ref": "Req. 3.4 (v3.2.1) / 3.5.1 (v4.0)",
           "topic": "PAN rendered unreadable wherever stored (keyed cryptographic hash)"}

SECTIONS: dict[str, dict] = {
    "run": {
        "title": "Run summary",
        "guarantee": "This report describes exactly one pipeline run: the code (git commit), the parameters (hash) "
                     "and every file it describes (SHA-256) are pinned, so the run can be identified and repeated.",
        "how_checked": "The report hashes each described file itself and records the git commit, the dirty flag and "
                       "Params.digest(); manifest.json repeats every hash and `fraudslm verify-report` re-checks them.",
        "references": [GDPR_5_2, GDPR_5_1_F],
    },
    "sources": {
        "title": "Sources",
        "guarantee": "Every record read from every source is accounted for (read = accepted + quarantined + "
                     "duplicates + dropped) and each source file is identified by its SHA-256.",
        "how_checked": "Counts come from the ingest ledger only (the raw records are never opened by the report); "
                       "the report re-adds them and follows each source through the later stages' ledgers.",
        "references": [GDPR_5_1_D, GDPR_5_2, GDPR_5_1_F],
    },
    "pii": {
        "title": "Personal data (PII)",
        "guarantee": "Personal data found in free text and structured fields was pseudonymised with a keyed hash or "
                     "removed before the data left the restricted zone, and no card number, IBAN or planted canary "
                     "survives in the shared outputs.",
        "how_checked": "Presidio with finance recognizers detected the entities; the leakage gate re-scanned every "
                       "output record (Luhn, IBAN mod-97, SSN and phone checks, every original value, canaries); "
                       "entity counts are recomputed here from entities.parquet, which holds positions, never values.",
        "references": [GDPR_4_5, GDPR_25, GDPR_32, GDPR_5_1_C, PCI_3_3, PCI_3_4],
    },
    "quality": {
        "title": "Data quality",
        "guarantee": "Suspected label errors were found with out-of-fold predictions and handled by the declared "
                     "policy; every decision is recorded and uncertain cases are queued for a human reviewer.",
        "how_checked": "cleanlab on out-of-fold probabilities (never in-sample), a shortcut check that trains on "
                       "metadata only, and class balance recounted here from the anonymized and quality record tables.",
        "references": [GDPR_5_1_D, GDPR_5_2],
    },
    "splits": {
        "title": "Splits",
        "guarantee": "No customer appears in more than one of train, validation and test, so test results are not "
                     "inflated by leakage, and every split keeps both classes.",
        "how_checked": "Sizes, prevalence and the overlap of pseudonymous group ids are recounted here from the "
                       "split files and compared with the split stage's ledger.",
        "references": [GDPR_25, GDPR_5_1_C],
    },
    "model": {
        "title": "Model",
        "guarantee": "The model was trained only on the anonymized splits identified below, and the chosen "
                     "compressed artifact stays within the declared PR-AUC budget of the full model.",
        "how_checked": "The training stage records the hash of the data it read; the report compares it with the "
                       "current splits and reads the evaluation and compression metrics of the stages.",
        "references": [GDPR_25, GDPR_5_1_C, GDPR_32],
    },
    "changes": {
        "title": "Changes since the previous report",
        "guarantee": "Differences from the previous report (counts, prevalence, entity counts, file versions) are "
                     "listed, so unexpected shifts are visible to the reviewer.",
        "how_checked": "The previous report.json is kept as history/previous.json and compared number by number.",
        "references": [GDPR_5_2],
    },
    "integrity": {
        "title": "Integrity of this report",
        "guarantee": "Any change to this report or to a file it describes, even of one byte, is detected, and when "
                     "signed, the signer's key is identified.",
        "how_checked": "manifest.json lists the SHA-256 of every file; with FRAUDSLM_REPORT_SIGNING_KEY set it is "
                       "signed with Ed25519 (manifest.sig); `fraudslm verify-report` checks both. The report is "
                       "published only after a PII scan of its own files finds nothing.",
        "references": [GDPR_5_1_F, GDPR_32, GDPR_5_2],
    },
}

NOT_RUN = "not run: the stage output folder {path} has no {what}; this section states nothing about it."
