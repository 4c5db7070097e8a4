"""Source readers and the source config: every reader on tiny real files, every bad input, config errors.

Files are written into tmp_path; configs point at them with `${raw}` (params paths.raw = tmp_path).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import REPO_ROOT, load_params
from pipeline.errors import ConfigError
from pipeline.ingest import run_ingest
from pipeline.sources import READERS, RawRow, Reader, register
from pipeline.sources.base import NoOptions
from pipeline.sources.spec import load_sources, norm_label

# ----------------------------------------------------------------------------------------------- helpers


def write_cfg(tmp_path: Path, *sources: dict[str, Any], **top: Any) -> Path:
    p = tmp_path / "sources.yaml"
    p.write_text(yaml.safe_dump({"version": 1, **top, "sources": list(sources)}, sort_keys=False), encoding="utf-8")
    return p


def params_for(tmp_path: Path, **sets: Any):
    return load_params(None, {"paths.raw": str(tmp_path), **sets})


def src(name: str, kind: str, location: str, text: str = "{text}", **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "location": location, "text": text, **kw}


def read_rows(tmp_path: Path, source: dict[str, Any], **sets: Any) -> list[RawRow]:
    res = load_sources(write_cfg(tmp_path, source), params_for(tmp_path, **sets), REPO_ROOT)
    return list(res.sources[0].reader().rows())


def ingest(tmp_path: Path, *sources: dict[str, Any], **sets: Any) -> dict[str, Any]:
    out = tmp_path / "out"
    m = run_ingest(write_cfg(tmp_path, *sources), out, params_for(tmp_path, **sets), ground_truth=tmp_path / "none")
    return {
        "metrics": m,
        "records": pd.read_parquet(out / "records.parquet"),
        "quarantine": pd.read_parquet(out / "quarantine.parquet"),
        "duplicates": pd.read_parquet(out / "duplicates.parquet"),
        "ledger": json.loads((out / "ledger.json").read_text()),
    }


def reasons(rows: list[RawRow]) -> dict[str, str]:
    return {r.locator: r.reason for r in rows if r.reason}


CSV_SRC = dict(key="id", label={"field": "label", "mapping": {"1": 1, "0": 0}})


# ----------------------------------------------------------------------------------------------- csv


def test_csv_options_multiline_and_locators(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "id;text;label\n1;'hello; world';0\n2;'two\nlines';1\n3;plain;0\n", encoding="utf-8"
    )
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/t.csv", options={"delimiter": ";", "quotechar": "'"}, **CSV_SRC))
    assert [r.locator for r in rows] == ["line 2", "line 3", "line 5"]
    assert rows[0].fields["text"] == "hello; world"
    assert rows[1].fields["text"] == "two\nlines"


def test_csv_malformed_rows_are_caught_per_row(tmp_path: Path) -> None:
    lines = [
        "id,text,label",
        "1,good one,0",
        "2,too,many,fields,0",  # line 3
        "3,short",  # line 4
        '4,"unterminated quote,0',  # line 5: swallows the next lines until a parse error
        "5,after the bad quote,1",
        '6,"x"y,0',  # line 7: text after a closing quote
        "7,last good,0",
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/t.csv", **CSV_SRC))
    bad = reasons(rows)
    assert bad["line 3"] == "field_count_mismatch"
    assert bad["line 4"] == "field_count_mismatch"
    assert bad["line 5"] == "malformed_row"
    assert bad["line 7"] == "malformed_row"
    good = {r.locator: r.fields["text"] for r in rows if r.ok}
    assert good == {"line 2": "good one", "line 6": "after the bad quote", "line 8": "last good"}


def test_csv_bad_encoding_bom_nul_and_mixed_line_endings(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfid,text,label\r\n"  # BOM + CRLF
        b"1,caf\xc3\xa9,0\n"  # LF
        b"2,bad \xff\xfe bytes,1\r"  # lone CR
        b"3,nul \x00 byte,0\r\n"
        b"4,fine,1\n"
    )
    (tmp_path / "t.csv").write_bytes(data)
    res = load_sources(write_cfg(tmp_path, src("t", "csv", "${raw}/t.csv", **CSV_SRC)), params_for(tmp_path), REPO_ROOT)
    reader = res.sources[0].reader()
    rows = list(reader.rows())
    assert reader.notes == ["UTF-8 byte order mark stripped"]
    assert reasons(rows) == {"line 3": "bad_encoding", "line 4": "nul_byte"}
    good = {r.locator: r.fields["text"] for r in rows if r.ok}
    assert good == {"line 2": "café", "line 5": "fine"}


def test_csv_latin1_encoding_option(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes("id,text,label\n1,Müller café,0\n".encode("latin-1"))
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/t.csv", options={"encoding": "latin-1"}, **CSV_SRC))
    assert rows[0].fields["text"] == "Müller café"


def test_csv_empty_header_only_and_binary(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "head.csv").write_text("id,text,label\n")
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    assert reasons(read_rows(tmp_path, src("t", "csv", "${raw}/empty.csv", **CSV_SRC))) == {"file": "empty_file"}
    assert reasons(read_rows(tmp_path, src("t", "csv", "${raw}/head.csv", **CSV_SRC))) == {"file": "no_rows"}
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/bin.csv", **CSV_SRC))
    assert len(rows) == 1 and rows[0].reason == "binary_content"


def test_csv_huge_field_is_quarantined_rest_goes_through(tmp_path: Path) -> None:
    with open(tmp_path / "t.csv", "w", encoding="utf-8") as fh:
        fh.write("id,text,label\n1,ok,0\n2,")
        fh.write("x" * (10 * 1024 * 1024))
        fh.write(",1\n3,also ok,0\n")
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/t.csv", **CSV_SRC))
    assert reasons(rows) == {"line 3": "field_too_large"}
    assert [r.fields["text"] for r in rows if r.ok] == ["ok", "also ok"]
    assert len(rows[1].raw or "") < 20 * 1024 * 1024


def test_csv_very_wide_header_is_refused_in_bounded_time(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(100_000))
    (tmp_path / "wide.csv").write_text(header + "\n" + ",".join("1" for _ in range(100_000)) + "\n1,2\n")
    rows = read_rows(tmp_path, src("t", "csv", "${raw}/wide.csv", text="{c1}", key="c0"))
    assert [r.reason for r in rows] == ["too_many_columns", "header_rejected", "header_rejected"]
    assert all(len(r.raw or "") <= 1_100_000 for r in rows)


def test_csv_and_jsonl_gzip(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write("id,text,label\n1,zipped,0\n")
    with gzip.open(tmp_path / "t.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "a", "text": "zipped json", "label": "1"}) + "\n")
    assert read_rows(tmp_path, src("t", "csv", "${raw}/t.csv.gz", **CSV_SRC))[0].fields["text"] == "zipped"
    assert read_rows(tmp_path, src("j", "jsonl", "${raw}/t.jsonl.gz", **CSV_SRC))[0].fields["text"] == "zipped json"


def test_csv_header_missing_field_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,body,label\n1,x,0\n")
    with pytest.raises(ConfigError, match=r"header lacks 1 of the 3 field\(s\) named in the source config \['text'\]$"):
        read_rows(tmp_path, src("t", "csv", "${raw}/t.csv", **CSV_SRC))


# ----------------------------------------------------------------------------------------------- jsonl


def test_jsonl_bad_lines(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "text": "fine", "label": "0", "extra": {"nested": [1, 2]}})
    lines = [
        good,
        '{"id": "b", "text": "cut in the mid',  # truncated
        '{"id": "c", "text": x}',  # invalid
        "[1, 2, 3]",  # not an object
        "[" * 100_000 + "]" * 100_000,  # deeply nested
        json.dumps({"id": "d", "text": "nul \u0000 here", "label": "1"}),
        '{"id": "s", "text": "lone \\ud800 surrogate", "label": "1"}',
        "",
        json.dumps({"id": "e", "text": "also fine", "label": "1"}),
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_rows(tmp_path, src("j", "jsonl", "${raw}/t.jsonl", **CSV_SRC))
    assert reasons(rows) == {
        "line 2": "truncated_json",
        "line 3": "invalid_json",
        "line 4": "not_an_object",
        "line 5": "json_too_deep",
        "line 6": "nul_byte",
        "line 7": "bad_encoding",
    }
    assert [r.locator for r in rows if r.ok] == ["line 1", "line 9"]


# ----------------------------------------------------------------------------------------------- parquet


def test_parquet_rows_and_bool_labels(tmp_path: Path) -> None:
    t = pa.table({"alert_id": ["A1", "A2", "A3"], "reason": ["r one", None, "r three"],
                  "confirmed": [True, False, None], "score": [0.5, 0.25, 1.0]})
    pq.write_table(t, tmp_path / "a.parquet")
    source = src("alerts", "parquet", "${raw}/a.parquet", text="{reason}", key="alert_id",
                 label={"field": "confirmed", "mapping": {True: 1, False: 0}, "missing": "null"},
                 fields={"score": "score"})
    rows = read_rows(tmp_path, source)
    assert [r.locator for r in rows] == ["row 0", "row 1", "row 2"]
    res = ingest(tmp_path, source)
    rec = res["records"]
    assert rec["source_key"].tolist() == ["A1", "A3"]
    assert rec["label"].tolist()[0] == 1 and pd.isna(rec["label"].tolist()[1])
    assert rec["score"].tolist() == [0.5, 1.0]
    assert res["quarantine"][["locator", "reason"]].values.tolist() == [["row 1", "empty_text"]]


def test_unreadable_parquet_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"PAR1 not really parquet")
    rows = read_rows(tmp_path, src("alerts", "parquet", "${raw}/a.parquet", text="{reason}"))
    assert [r.reason for r in rows] == ["unreadable_file"]


# ----------------------------------------------------------------------------------------------- eml


def _mail(subject: str, body: str | None = None, html: str | None = None, charset: str = "utf-8",
          cte: str | None = None, outcome: str = "benign", sender: str = "Jürgen Müller <jm@example.com>") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Fraud Reports <fraud@bank.test>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 01 Jan 2024 16:45:36 +0100"
    msg["X-Customer-ID"] = "C000001"
    msg["X-Case-Outcome"] = outcome
    if body is not None:
        msg.set_content(body, charset=charset, cte=cte)
    if html is not None:
        if body is None:
            msg.set_content(html, subtype="html", charset=charset)
        else:
            msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


EML_SRC = dict(
    key=None,
    group="x_customer_id",
    timestamp={"field": "date", "format": "rfc2822"},
    label={"field": "x_case_outcome", "mapping": {"confirmed_fraud": 1, "benign": 0}},
    fields={"subject": "subject", "from_name": "customer_name", "from_address": "email"},
)


def test_eml_folder(tmp_path: Path) -> None:
    box = tmp_path / "mail"
    box.mkdir()
    (box / "a.eml").write_bytes(_mail("Plain ümlaut", "Hello plain body.", cte="quoted-printable"))
    (box / "b.eml").write_bytes(_mail("Alt", "Plain part wins.", html="<p>HTML part</p>"))
    (box / "c.eml").write_bytes(_mail("Html only", html="<html><body><p>Only <b>html</b></p><script>x()</script></body></html>"))
    (box / "d.eml").write_bytes(_mail("Latin", "Caf\u00e9 cr\u00e8me in latin-1.", charset="latin-1", cte="8bit", outcome="confirmed_fraud"))
    (box / "e.eml").write_bytes(_mail("B64", "Base64 body text.", cte="base64"))
    (box / "f.eml").write_bytes(_mail("No body"))
    raw = _mail("Broken", "x", cte="8bit").replace(b"\nx\n", b"\nbad \xff\xfe\xc0 bytes\n")
    (box / "g.eml").write_bytes(raw)
    outside = tmp_path / "outside.eml"
    outside.write_bytes(_mail("Outside", "should not be read"))
    os.symlink(outside, box / "h.eml")
    (box / "notes.txt").write_text("not matched by the pattern")
    res = ingest(tmp_path, src("emails", "eml", "${raw}/mail", text="{body}", **EML_SRC))
    rec = res["records"].set_index("source_key")
    assert rec.loc["a.eml", "text"] == "Hello plain body."
    assert rec.loc["a.eml", "subject"] == "Plain ümlaut"
    assert rec.loc["a.eml", "customer_name"] == "Jürgen Müller"
    assert rec.loc["a.eml", "email"] == "jm@example.com"
    assert rec.loc["b.eml", "text"] == "Plain part wins."
    assert rec.loc["c.eml", "text"] == "Only html"
    assert rec.loc["d.eml", "text"] == "Café crème in latin-1."
    assert rec.loc["d.eml", "label"] == 1
    assert rec.loc["e.eml", "text"] == "Base64 body text."
    assert str(rec.loc["a.eml", "event_time"]) == "2024-01-01 15:45:36+00:00"
    assert rec.loc["a.eml", "group_id"] == "C000001"
    q = dict(zip(res["quarantine"]["locator"], res["quarantine"]["reason"]))
    assert q == {"f.eml": "empty_body", "g.eml": "bad_encoding", "h.eml": "symlink_outside"}
    assert res["ledger"]["balanced"] and res["ledger"]["sources"]["emails"]["read"] == 8


def test_mbox(tmp_path: Path) -> None:
    parts = []
    for i, body in enumerate(["first message", "second message"]):
        parts.append(b"From sender@example.com Mon Jan  1 00:00:00 2024\n" + _mail(f"m{i}", body) + b"\n")
    (tmp_path / "box.mbox").write_bytes(b"".join(parts))
    res = ingest(tmp_path, src("emails", "eml", "${raw}/box.mbox", text="{body}", **EML_SRC))
    assert res["records"]["source_key"].tolist() == ["message 0", "message 1"]
    assert res["records"]["text"].tolist() == ["first message", "second message"]


# ----------------------------------------------------------------------------------------------- sql


def _notes_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE case_notes (note_id TEXT PRIMARY KEY, customer_id TEXT, note TEXT, outcome TEXT)")
    con.executemany(
        "INSERT INTO case_notes VALUES (?, ?, ?, ?)",
        [("N2", "C1", "second note", "fraud"), ("N1", "C1", "first note", "not_fraud"),
         ("N3", "C2", None, "fraud"), ("N4", "C2", "odd outcome", "FRAUD?")],
    )
    con.execute("INSERT INTO case_notes VALUES ('N5', 'C3', CAST(X'62616420FF' AS TEXT), 'fraud')")
    con.commit()
    con.close()


SQL_SRC = dict(key="note_id", group="customer_id", label={"field": "outcome", "mapping": {"fraud": 1, "not_fraud": 0}})


def test_sql_table_and_query(tmp_path: Path) -> None:
    _notes_db(tmp_path / "notes.sqlite")
    res = ingest(tmp_path, src("notes", "sql", "${raw}/notes.sqlite", text="{note}", options={"table": "case_notes"}, **SQL_SRC))
    assert res["records"]["source_key"].tolist() == ["N1", "N2"]  # ordered by key
    q = dict(zip(res["quarantine"]["locator"], res["quarantine"]["reason"]))
    assert q == {"N3": "empty_text", "N4": "label_not_in_domain", "N5": "bad_encoding"}
    rows = read_rows(tmp_path, src("notes", "sql", "${raw}/notes.sqlite", text="{note}",
                                   options={"query": "SELECT * FROM case_notes WHERE customer_id = 'C2'"}, **SQL_SRC))
    assert [r.locator for r in rows] == ["N3", "N4"]


def test_sql_relative_path_resolves_against_repo_root(tmp_path: Path) -> None:
    _notes_db(tmp_path / "notes.sqlite")
    cfg = write_cfg(tmp_path, src("notes", "sql", "notes.sqlite", text="{note}", options={"table": "case_notes"}, **SQL_SRC))
    res = load_sources(cfg, params_for(tmp_path), repo_root=tmp_path)
    assert res.sources[0].ctx.location == tmp_path / "notes.sqlite"


def test_sql_errors(tmp_path: Path) -> None:
    _notes_db(tmp_path / "notes.sqlite")
    with pytest.raises(ConfigError, match="query failed: no such table"):
        read_rows(tmp_path, src("notes", "sql", "${raw}/notes.sqlite", text="{note}", options={"table": "nope"}, **SQL_SRC))
    with pytest.raises(ConfigError, match="exactly one of `table` or `query`"):
        read_rows(tmp_path, src("notes", "sql", "${raw}/notes.sqlite", text="{note}", options={}, **SQL_SRC))
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    rows = read_rows(tmp_path, src("notes", "sql", "${raw}/junk.sqlite", text="{note}", options={"table": "x"}, **SQL_SRC))
    assert [r.reason for r in rows] == ["unreadable_file"]


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "source, message",
    [
        (src("x", "csvx", "${raw}/t.csv"), r"unknown kind 'csvx' \(known: csv, eml, jsonl, parquet, sql"),
        (src("x", "csv", "${raw}/missing.csv"), "location '\\$\\{raw\\}/missing.csv' not found"),
        (src("x", "csv", "${raw}/../../../etc/passwd"), "path traversal"),
        (src("x", "csv", "/etc/passwd"), "absolute location outside allowed_roots"),
        (src("x", "csv", "${nope}/t.csv"), r"unknown variable \$\{nope\}"),
        ({"name": "x", "kind": "csv", "location": "${raw}/t.csv"}, r"sources\[0\] 'x'.text: Field required"),
        (src("x", "csv", "${raw}/t.csv", options={"delimiter": ",,"}), "options.delimiter"),
        (src("x", "csv", "${raw}/t.csv", options={"colour": "red"}), "options.colour: Extra inputs"),
        (src("x", "csv", "${raw}/t.csv", text="{text.upper}"), "must be a plain"),
        (src("x", "csv", "${raw}/t.csv", text="{card} {text}", fields={"card": "card_number"}), "renders PII column"),
        (src("x", "csv", "${raw}/t.csv", fields={"a": "record_id"}), "overwrite a core record column"),
        (src("x", "csv", "${raw}/t.csv", label={"field": "l", "mapping": {"a": 2}}), "label.mapping"),
        (src("x", "csv", "${raw}/t.csv", timestamp={"field": "t", "timezone": "Mars/Base"}), "unknown time zone"),
    ],
)
def test_config_errors(tmp_path: Path, source: dict, message: str) -> None:
    (tmp_path / "t.csv").write_text("id,text\n1,x\n")
    with pytest.raises(ConfigError, match=message) as exc:
        load_sources(write_cfg(tmp_path, source), params_for(tmp_path), REPO_ROOT)
    assert "\n" not in str(exc.value)


def test_config_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="source config not found"):
        load_sources(tmp_path / "nope.yaml", params_for(tmp_path), REPO_ROOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_sources(bad, params_for(tmp_path), REPO_ROOT)
    (tmp_path / "t.csv").write_text("id,text\n1,x\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_sources(write_cfg(tmp_path, src("a", "csv", "${raw}/t.csv"), src("a", "csv", "${raw}/t.csv")),
                     params_for(tmp_path), REPO_ROOT)


def test_symlinked_location_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "t.csv").write_text("id,text\n1,x\n")
    raw = tmp_path / "raw"
    raw.mkdir()
    os.symlink(outside / "t.csv", raw / "t.csv")
    with pytest.raises(ConfigError, match="symlink to a path outside"):
        load_sources(write_cfg(tmp_path, src("x", "csv", "${raw}/t.csv")), params_for(raw), REPO_ROOT)


def test_allowed_roots_permit_outside_locations(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,text\n1,x\n")
    cfg = write_cfg(tmp_path, src("x", "csv", str(tmp_path / "t.csv")), allowed_roots=[str(tmp_path)])
    assert load_sources(cfg, params_for(tmp_path / "sub"), REPO_ROOT).sources[0].ctx.location == tmp_path / "t.csv"


def test_label_normalisation() -> None:
    assert norm_label(True) == "true" and norm_label("True") == "true" and norm_label(1.0) == "1"
    assert norm_label(" Smishing ") == "smishing" and norm_label("Smishing", case_sensitive=True) == "Smishing"
    assert norm_label("") is None and norm_label(float("nan")) is None and norm_label("1.0") == "1"


# ----------------------------------------------------------------------------------------------- registry


def test_new_kind_is_one_class_and_one_config_entry(tmp_path: Path) -> None:
    @register
    class CountingReader(Reader):
        kind = "counting_test"
        Options = NoOptions
        location = "optional"

        def rows(self) -> Iterator[RawRow]:
            for i in range(3):
                yield RawRow(f"n {i}", {"n": str(i), "text": f"number {i}"})

    try:
        res = ingest(tmp_path, {"name": "numbers", "kind": "counting_test", "key": "n", "text": "{text}"})
        assert res["records"]["text"].tolist() == ["number 0", "number 1", "number 2"]
        assert res["records"]["label"].isna().all()  # no label: unlabeled source
    finally:
        READERS.pop("counting_test", None)
