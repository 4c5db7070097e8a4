"""The report's integrity: a SHA-256 manifest of the report and of every artifact it describes, optionally signed.

* `manifest.json` lists each file (or folder, hashed with `pipeline.io.sha256_tree`) by its path *relative to the
  report folder*, so `fraudslm verify-report DIR` works from any working folder and after the data tree is moved
  as a whole.
* Signing (Ed25519, `cryptography`) happens when `FRAUDSLM_REPORT_SIGNING_KEY` is set, to either a PEM private key
  (PKCS#8, `-----BEGIN PRIVATE KEY-----`) or the base64 of the raw 32-byte private key. The signature covers the
  exact bytes of manifest.json and is written as base64 to `manifest.sig`; the manifest carries the public key.
* A manifest that carries its own public key proves integrity against accidents and against anyone without the
  private key *only if the verifier pins the expected public key* (`--public-key` or `FRAUDSLM_REPORT_PUBLIC_KEY`):
  otherwise an attacker could re-sign a rewritten manifest with a key of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pipeline.errors import ConfigError, GateError
from pipeline.io import sha256_file, sha256_tree

SIGNING_KEY_ENV = "FRAUDSLM_REPORT_SIGNING_KEY"
PUBLIC_KEY_ENV = "FRAUDSLM_REPORT_PUBLIC_KEY"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_VERSION = 1
REQUIRED = ("report.html", "report.json")


# ------------------------------------------------------------------------------------------------------ keys


def _b64decode(text: str) -> Optional[bytes]:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def load_signing_key(value: Optional[str] = None):
    """The Ed25519 private key from `value` or FRAUDSLM_REPORT_SIGNING_KEY; None when unset. Never echoes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = os.environ.get(SIGNING_KEY_ENV, "") if value is None else value
    if not raw.strip():
        return None
    if "-----BEGIN" in raw:
        try:
            key = serialization.load_pem_private_key(raw.strip().encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{SIGNING_KEY_ENV}: not a readable unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{SIGNING_KEY_ENV}: the PEM key is not an Ed25519 key")
        return key
    data = _b64decode(raw)
    if data is None or len(data) != 32:
        raise ConfigError(f"{SIGNING_KEY_ENV}: expected a PEM Ed25519 private key or base64 of 32 raw bytes")
    return Ed25519PrivateKey.from_private_bytes(data)


def load_public_key(value: str):
    """An Ed25519 public key from PEM text, base64 of the 32 raw bytes, or a path to a file holding either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = value.strip()
    if text and "-----BEGIN" not in text and len(text) < 4096 and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8", errors="replace").strip()
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError):
            raise ConfigError("public key: not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError("public key: the PEM key is not an Ed25519 key")
        return key
    data = _b64decode(text)
    if data is None or len(data) != 32:
        raise ConfigError("public key: expected a PEM Ed25519 public key, base64 of 32 raw bytes, or a file of either")
    return Ed25519PublicKey.from_public_bytes(data)


def public_raw(pub) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(pub) -> str:
    """SHA-256 of the raw public key, first 16 hex digits (how reviewers name a signer)."""
    return hashlib.sha256(public_raw(pub)).hexdigest()[:16]


def signing_info(key) -> dict[str, Any]:
    if key is None:
        return {"signed": False, "public_key_fingerprint": None}
    return {"signed": True, "public_key_fingerprint": fingerprint(key.public_key())}


# -------------------------------------------------------------------------------------------------- manifest


def _rel(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix()


def hash_entry(path: Path, report_dir: Path, role: str, stage: Optional[str] = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": _rel(path, report_dir), "role": role}
    if stage:
        entry["stage"] = stage
    if path.is_dir():
        files = sorted(x for x in path.rglob("*") if x.is_file() and not x.name.startswith("."))
        entry.update(kind="dir", sha256=sha256_tree(path), files=len(files),
                     bytes=sum(x.stat().st_size for x in files),
                     # per-file hashes, so a mismatch names the file inside the folder
                     members={x.relative_to(path).as_posix(): sha256_file(x) for x in files})
    else:
        entry.update(kind="file", sha256=sha256_file(path), bytes=path.stat().st_size)
    return entry


def build_manifest(report_dir: Path, final_dir: Path, own_files: list[str], artifacts: list[dict[str, Any]],
                   run: dict[str, Any], key) -> dict[str, Any]:
    """Manifest of the report files in `report_dir` (a temp folder published as `final_dir`) and the artifacts.

    Paths are relative to `final_dir` (where verify-report will look); the report's own files are hashed where
    they are now."""
    files = []
    for name in sorted(own_files):
        e = hash_entry(report_dir / name, report_dir, "report")
        files.append(e)
    for a in artifacts:
        p = a.get("_abs")
        if p is None:
            continue
        e = hash_entry(Path(p), final_dir, "artifact", a.get("stage"))
        if e["sha256"] != a.get("sha256"):
            raise GateError(f"{a['path']}: changed while the report was being written; run the report again")
        files.append(e)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "algorithm": "sha256",
        "paths_relative_to": "the folder holding this manifest",
        "git_sha": (run.get("code_version") or {}).get("git_sha"),
        "params_hash": run.get("params_hash"),
        "files": files,
        "signature": None,
    }
    if key is not None:
        pub = key.public_key()
        manifest["signature"] = {
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(public_raw(pub)).decode(),
            "public_key_fingerprint": fingerprint(pub),
            "signed_bytes": MANIFEST,
            "signature_file": SIGNATURE,
        }
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def sign(data: bytes, key) -> bytes:
    return base64.b64encode(key.sign(data)) + b"\n"


# ---------------------------------------------------------------------------------------------------- verify


@dataclass
class VerifyResult:
    report_dir: Path
    files: int = 0
    report_files: int = 0
    artifacts: int = 0
    signed: bool = False
    signer: Optional[str] = None
    pinned: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        sig = (f"signature valid (Ed25519, key {self.signer}{', pinned' if self.pinned else ', NOT pinned: pass '}"
               f"{'' if self.pinned else '--public-key to check who signed'})" if self.signed else "unsigned")
        return (f"{self.report_dir}: OK: {self.files} file(s) match the manifest ({self.report_files} report, "
                f"{self.artifacts} artifact(s)); {sig}")


def verify_report(report_dir: str | Path = "data/reports", public_key: Optional[str] = None) -> VerifyResult:
    """Check every hash of `report_dir/manifest.json` and its signature; GateError (exit 1) names what failed."""
    rdir = Path(report_dir)
    mpath = rdir / MANIFEST
    if not mpath.is_file():
        raise GateError(f"{mpath}: missing; no report to verify")
    data = mpath.read_bytes()
    try:
        manifest = json.loads(data.decode("utf-8"))
        files = manifest["files"]
        if not isinstance(files, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise GateError(f"{mpath}: not a valid report manifest") from None
    res = VerifyResult(rdir)
    pinned_value = public_key if public_key is not None else os.environ.get(PUBLIC_KEY_ENV) or None
    pinned = load_public_key(pinned_value) if pinned_value else None
    res.pinned = pinned is not None
    sig_meta = manifest.get("signature")
    sig_path = rdir / SIGNATURE
    if sig_meta or sig_path.exists():
        if not sig_meta:
            raise GateError(f"{sig_path}: present but {mpath} names no signing key")
        if not sig_path.is_file():
            raise GateError(f"{sig_path}: missing; {mpath} says the report was signed")
        _check_signature(data, sig_meta, sig_path, mpath, pinned, res)
    elif pinned is not None:
        raise GateError(f"{mpath}: not signed, but a public key was given to check the signer")
    seen = set()
    for e in files:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not isinstance(e.get("sha256"), str):
            raise GateError(f"{mpath}: malformed file entry")
        target = rdir / e["path"]
        shown = os.path.normpath(str(target))
        seen.add(e["path"])
        if not target.exists():
            res.problems.append(f"{shown}: missing")
            continue
        if e.get("kind") == "dir":
            got = sha256_tree(target) if target.is_dir() else None
        else:
            got = sha256_file(target) if target.is_file() else None
        if got != e["sha256"]:
            res.problems.append(f"{_changed_member(target, e) or shown}: sha256 mismatch (changed since the report "
                                "was made)")
            continue
        res.files += 1
        if e.get("role") == "report":
            res.report_files += 1
        else:
            res.artifacts += 1
    for name in REQUIRED:
        if name not in seen:
            res.problems.append(f"{os.path.normpath(str(rdir / name))}: not listed in the manifest")
    if res.problems:
        more = f" (+{len(res.problems) - 1} more: {'; '.join(res.problems[1:4])})" if len(res.problems) > 1 else ""
        raise GateError(f"verify-report failed: {res.problems[0]}{more}")
    return res


def _changed_member(folder: Path, entry: dict[str, Any]) -> Optional[str]:
    """The first file of a hashed folder that differs from the manifest's per-file hashes (None when unknown)."""
    members = entry.get("members")
    if not isinstance(members, dict) or not folder.is_dir():
        return None
    now = {x.relative_to(folder).as_posix(): x for x in folder.rglob("*")
           if x.is_file() and not x.name.startswith(".")}
    for rel in sorted(set(members) | set(now)):
        shown = os.path.normpath(str(folder / rel))
        if rel not in now:
            return f"{shown} (missing)"
        if rel not in members:
            return f"{shown} (added)"
        if sha256_file(now[rel]) != members[rel]:
            return shown
    return None


def _check_signature(data: bytes, meta: Any, sig_path: Path, mpath: Path, pinned, res: VerifyResult) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(meta, dict) or meta.get("algorithm") != "Ed25519" or not isinstance(meta.get("public_key"), str):
        raise GateError(f"{mpath}: unsupported or malformed signature block")
    raw = _b64decode(meta["public_key"])
    if raw is None or len(raw) != 32:
        raise GateError(f"{mpath}: malformed public key in the signature block")
    pub = Ed25519PublicKey.from_public_bytes(raw)
    sig = _b64decode(sig_path.read_text(encoding="ascii", errors="replace"))
    if sig is None or len(sig) != 64:
        raise GateError(f"{sig_path}: not a base64 Ed25519 signature")
    try:
        pub.verify(sig, data)
    except InvalidSignature:
        raise GateError(f"{sig_path}: signature does not match {mpath} (manifest or signature changed)") from None
    if pinned is not None and public_raw(pinned) != raw:
        raise GateError(f"{sig_path}: signed by key {fingerprint(pub)}, expected key {fingerprint(pinned)}")
    res.signed = True
    res.signer = fingerprint(pub)
