"""Exact and near-duplicate detection across sources (datasketch MinHash + LSH), streaming.

Texts are normalised (NFKC, casefold, whitespace collapsed). A record whose normalised text was seen before is
an exact duplicate of the first record with that text. Otherwise its MinHash (character `shingle_size`-grams,
`minhash_perm` permutations, fixed seed) is looked up in an LSH index of the survivors so far; candidates are
verified with the exact Jaccard similarity of the shingle sets, and the one with the highest similarity
>= `near_dup_threshold` (ties: the earliest survivor) is its `dup_of`. Survivors are therefore the first record of each cluster in read order (sources in config order,
rows in file order): deterministic. Only sources with `dedup: true` take part (across sources); a source with
`dedup: {fields: [...]}` is deduplicated within itself on those fields instead (structured records whose
rendered texts are alike by construction, e.g. transactions); `dedup: false` opts out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def shingles(norm: str, k: int) -> list[bytes]:
    """Distinct character k-grams (the whole text when shorter than k)."""
    if len(norm) <= k:
        return [norm.encode("utf-8", errors="surrogatepass")]
    grams = {norm[i : i + k] for i in range(len(norm) - k + 1)}
    return [g.encode("utf-8", errors="surrogatepass") for g in grams]


@dataclass(frozen=True, slots=True)
class DupMatch:
    dup_of: str  # record_id of the survivor
    kind: str  # exact | near
    similarity: float


class Deduper:
    SEED = 1  # MinHash permutation seed: fixed, so results do not depend on the run

    def __init__(self, threshold: float, num_perm: int, shingle_size: int) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.k = shingle_size
        # the LSH index only proposes candidates (tuned a little below the threshold, for recall); each candidate
        # is then verified with the exact Jaccard similarity of the shingle sets, so the MinHash estimate's noise
        # (about +-0.03 at 128 permutations) never decides alone
        from datasketch import MinHashLSH  # imported here: it pulls in scipy (slow start for the CLI's errors)

        self.lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm)
        self.norms: dict[str, str] = {}  # survivor -> normalised text (for the exact check)
        self.exact: dict[bytes, str] = {}
        self.blocks: dict[bytes, tuple[str, str]] = {}  # keyed mode: digest of (source, field values) -> survivor
        self.order: dict[str, int] = {}
        self.labels: dict[str, int] = {}  # survivor -> bit set of the labels in its cluster (1: 0 seen, 2: 1 seen)
        self.conflicts: set[str] = set()
        self.n_exact = 0
        self.n_near = 0

    def process_keyed(
        self, source: str, record_ids: list[str], texts: list[str], labels: list[Optional[int]], keys: list[tuple]
    ) -> list[Optional[DupMatch]]:
        """Records with equal values in the source's `dedup.fields` are one event (e.g. the same transaction
        loaded twice): the first survives. kind is exact when the normalised texts agree, else near (similarity:
        Jaccard of the character shingles)."""
        out: list[Optional[DupMatch]] = []
        for rid, text, label, key in zip(record_ids, texts, labels, keys):
            digest = hashlib.blake2b(repr((source, key)).encode("utf-8", errors="surrogatepass"), digest_size=16).digest()
            norm = normalize_text(text)
            hit = self.blocks.get(digest)
            if hit is None:
                self.blocks[digest] = (rid, norm[:2048])
                self.labels[rid] = 0 if label is None else 1 << int(label)
                out.append(None)
                continue
            first, first_norm = hit
            if first_norm == norm[:2048]:
                match = DupMatch(first, "exact", 1.0)
                self.n_exact += 1
            else:
                a, b = set(shingles(first_norm, self.k)), set(shingles(norm[:2048], self.k))
                match = DupMatch(first, "near", round(len(a & b) / max(1, len(a | b)), 4))
                self.n_near += 1
            self._label(match.dup_of, label)
            out.append(match)
        return out

    def _label(self, survivor: str, label: Optional[int]) -> None:
        if label is not None:
            bits = self.labels[survivor] | (1 << int(label))
            self.labels[survivor] = bits
            if bits == 3:
                self.conflicts.add(survivor)

    def process(self, record_ids: list[str], texts: list[str], labels: list[Optional[int]]) -> list[Optional[DupMatch]]:
        """Classify a chunk in order; survivors join the index at once (a later row of the same chunk can match)."""
        norms = [normalize_text(t) for t in texts]
        digests = [hashlib.blake2b(n.encode("utf-8", errors="surrogatepass"), digest_size=16).digest() for n in norms]
        need = [i for i, d in enumerate(digests) if d not in self.exact]
        sigs: dict[int, np.ndarray] = {}
        if need:
            from datasketch import MinHash

            # crc32 (C) instead of the default sha1 per shingle: ~10x cheaper; the affine scheme mixes it (fmix)
            # and candidates are verified exactly, so the hash only has to spread shingles, not resist attacks
            mhs = MinHash.bulk(
                [shingles(norms[i], self.k) for i in need], num_perm=self.num_perm, seed=self.SEED, hashfunc=zlib.crc32
            )
            sigs = {i: m for i, m in zip(need, mhs)}  # type: ignore[misc]
        out: list[Optional[DupMatch]] = []
        for i, rid in enumerate(record_ids):
            match: Optional[DupMatch] = None
            first = self.exact.get(digests[i])
            if first is not None:
                match = DupMatch(first, "exact", 1.0)
            else:
                mh = sigs[i]
                best: Optional[tuple[float, int, str]] = None
                mine: Optional[set[bytes]] = None
                for cand in self.lsh.query(mh):
                    if mine is None:
                        mine = set(shingles(norms[i], self.k))
                    other = set(shingles(self.norms[cand], self.k))
                    sim = len(mine & other) / max(1, len(mine | other))
                    if sim >= self.threshold:
                        score = (sim, -self.order[cand], cand)
                        if best is None or score > best:
                            best = score
                if best is not None:
                    match = DupMatch(best[2], "near", round(best[0], 4))
            if match is None:
                self.exact[digests[i]] = rid
                self.norms[rid] = norms[i]
                self.order[rid] = len(self.order)
                self.labels[rid] = 0 if labels[i] is None else 1 << int(labels[i])
                self.lsh.insert(rid, sigs[i], check_duplication=False)
            else:
                if match.kind == "exact":
                    self.n_exact += 1
                else:
                    self.n_near += 1
                self._label(match.dup_of, labels[i])
            out.append(match)
        return out
