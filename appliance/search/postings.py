"""The search index's postings as arrays: which books match, facet counts and ranking.

``appliance.search.index`` owns the index and is the only module that imports Whoosh; it hands
this module a reader and a function reading one segment's postings (whose posting lists of
Whoosh's segment format it gives ``posting_list`` to decode). A Whoosh
searcher visits matching documents one at a time in Python, which at 10,000
books (where a short Vietnamese syllable is in half of them) costs hundreds of
milliseconds per query. Here a term's postings are read once, block by block,
into NumPy arrays (kept in a small cache, since readers ask for the same common
words again and again), and matching, counting and ranking are array
operations over all the reader's documents at once.

Scores are BM25 per field (k1 = 1.2 and b = 0.75, Whoosh's defaults; the idf is
log(1 + (N - df + 0.5) / (df + 0.5))); a document's score is the sum over the
query's words in the combined field, plus each required clause's score in the
title, authors and subjects times that field's boost.
"""
from __future__ import annotations

import io
import math
import pickle
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from appliance.lru import SizedLRU

K1 = 1.2
B = 0.75
CACHE_BYTES = 24 * 1024 * 1024  # postings kept in memory between searches, at most

EMPTY_IDS = np.zeros(0, dtype=np.int32)
EMPTY_WEIGHTS = np.zeros(0, dtype=np.float32)


class ReaderTables:
    """Arrays over one Whoosh reader's document numbers, and its postings on demand.

    Built when a searcher is opened; it must not outlive that searcher's reader.
    """

    def __init__(self, reader, *, read_leaf: Callable[[object, str, str], tuple[np.ndarray, np.ndarray]],
                 value_fields: tuple[str, str], scored_fields: Iterable[str], book_field: str):
        self.reader = reader
        self._read_leaf = read_leaf  # (segment reader, field, term) -> (document numbers, weights)
        self.size = reader.doc_count_all()
        self.leaves = list(reader.leaf_readers())
        self.live = np.ones(self.size, dtype=bool)
        for leaf, offset in self.leaves:
            if leaf.has_deletions():
                for d in range(leaf.doc_count_all()):
                    if leaf.is_deleted(d):
                        self.live[offset + d] = False
        self.count = int(np.count_nonzero(self.live))
        self.book_id = self._column(book_field)
        language_field, subject_field = value_fields
        self.languages, self.language_code = self._single_values(language_field)
        self.subjects, self.subject_doc, self.subject_code = self._multi_values(subject_field)
        self.language_index = {v: n for n, v in enumerate(self.languages)}
        self.subject_index = {v: n for n, v in enumerate(self.subjects)}
        self.lengths: dict[str, np.ndarray] = {}
        self.average_length: dict[str, float] = {}
        for name in scored_fields:
            lengths = np.zeros(self.size, dtype=np.float32)
            for leaf, offset in self.leaves:
                for d in range(leaf.doc_count_all()):
                    # Whoosh answers None, not the default, for a document with the field empty.
                    lengths[offset + d] = leaf.doc_field_length(d, name, 0) or 0
            self.lengths[name] = lengths
            live_lengths = lengths[self.live]
            self.average_length[name] = float(live_lengths.mean()) if live_lengths.size else 1.0
        self._cache: SizedLRU[tuple[np.ndarray, np.ndarray]] = SizedLRU(CACHE_BYTES)

    # -- building ---------------------------------------------------------------------------------

    def _column(self, name: str) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.int64)
        for leaf, offset in self.leaves:
            column = leaf.column_reader(name)
            for d in range(leaf.doc_count_all()):
                if self.live[offset + d]:
                    value = column[d]
                    out[offset + d] = int(value.decode("ascii") if isinstance(value, bytes) else value)
        return out

    def _values(self, name: str) -> Iterable[tuple[str, np.ndarray]]:
        """Each value of an exact-value field with the live documents that have it."""
        for raw in self.reader.lexicon(name):
            value = raw.decode("utf-8")
            ids, _ = self.postings(name, value, cache=False)
            if ids.size:
                yield value, ids

    def _single_values(self, name: str) -> tuple[list[str], np.ndarray]:
        names: list[str] = []
        code = np.full(self.size, -1, dtype=np.int32)
        for value, ids in self._values(name):
            code[ids] = len(names)
            names.append(value)
        return names, code

    def _multi_values(self, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        names: list[str] = []
        docs: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        for value, ids in self._values(name):
            docs.append(ids)
            codes.append(np.full(ids.size, len(names), dtype=np.int32))
            names.append(value)
        if not docs:
            return names, EMPTY_IDS, EMPTY_IDS
        return names, np.concatenate(docs), np.concatenate(codes)

    # -- postings ---------------------------------------------------------------------------------

    def postings(self, field: str, term: str, *, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, weights) of the live documents with ``term`` in ``field``."""
        key = (field, term)
        if cache:
            kept = self._cache.get(key)
            if kept is not None:
                return kept
        parts_ids, parts_weights = [], []
        for leaf, offset in self.leaves:
            ids, weights = self._read_leaf(leaf, field, term)
            if ids.size:
                parts_ids.append(ids + offset if offset else ids)
                parts_weights.append(weights)
        if not parts_ids:
            found = (EMPTY_IDS, EMPTY_WEIGHTS)
        else:
            ids = np.concatenate(parts_ids) if len(parts_ids) > 1 else parts_ids[0]
            weights = np.concatenate(parts_weights) if len(parts_weights) > 1 else parts_weights[0]
            keep = self.live[ids]
            found = (ids, weights) if keep.all() else (ids[keep], weights[keep])
        if cache:
            self._cache.put(key, found, found[0].nbytes + found[1].nbytes)
        return found

    def mask(self, field: str, term: str) -> np.ndarray:
        """True for the live documents having ``term`` in ``field``."""
        return self._as_mask(self.postings(field, term)[0])

    def _as_mask(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(self.size, dtype=bool)
        out[ids] = True
        return out

    def all_of(self, field: str, terms: Sequence[str]) -> np.ndarray:
        out = self.mask(field, terms[0])
        for term in terms[1:]:
            out &= self.mask(field, term)
        return out

    # -- counting and ranking ---------------------------------------------------------------------

    def language_counts(self, docs: np.ndarray) -> dict[str, int]:
        codes = self.language_code[docs & (self.language_code >= 0)]
        counts = np.bincount(codes, minlength=len(self.languages))
        return _by_count(self.languages, counts)

    def subject_counts(self, docs: np.ndarray) -> dict[str, int]:
        if not self.subjects:
            return {}
        codes = self.subject_code[docs[self.subject_doc]]
        counts = np.bincount(codes, minlength=len(self.subjects))
        return _by_count(self.subjects, counts)

    def with_language(self, language: str) -> np.ndarray:
        code = self.language_index.get(language)
        if code is None:
            return np.zeros(self.size, dtype=bool)
        return self.language_code == code

    def with_subject(self, subject: str) -> np.ndarray:
        out = np.zeros(self.size, dtype=bool)
        code = self.subject_index.get(subject)
        if code is not None:
            out[self.subject_doc[self.subject_code == code]] = True
        return out

    def bm25(self, field: str, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, BM25 score of ``term`` in ``field``) for the documents having it."""
        ids, tf = self.postings(field, term)
        if not ids.size:
            return ids, tf
        idf = math.log(1.0 + (self.count - ids.size + 0.5) / (ids.size + 0.5))
        norm = K1 * ((1.0 - B) + B * self.lengths[field][ids] / max(self.average_length[field], 1e-6))
        return ids, (idf * tf * (K1 + 1.0) / (tf + norm)).astype(np.float32)

    def field_score(self, field: str, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Dense scores of documents having every one of ``terms`` in ``field`` (0 elsewhere), and
        which documents those are."""
        total = np.zeros(self.size, dtype=np.float32)
        present = np.ones(self.size, dtype=bool)
        for term in terms:
            ids, scores = self.bm25(field, term)
            present &= self._as_mask(ids)
            total[ids] += scores
        total[~present] = 0.0
        return total, present

    def top(self, scores: np.ndarray, allowed: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(document number, score) of the best ``limit`` allowed documents, best first; ties in
        document order."""
        candidates = np.flatnonzero(allowed)
        if not candidates.size or limit <= 0:
            return []
        values = scores[candidates]
        if limit < candidates.size:
            part = np.argpartition(-values, limit - 1)[:limit]
            # Equal scores at the cut: keep the earliest documents, as a full sort would.
            cut = values[part].min()
            part = np.union1d(part, np.flatnonzero(values == cut))
            candidates, values = candidates[part], values[part]
        order = np.lexsort((candidates, -values))[:limit]
        return [(int(candidates[i]), float(values[i])) for i in order]


def _by_count(names: list[str], counts: np.ndarray) -> dict[str, int]:
    nonzero = np.flatnonzero(counts)
    ordered = sorted(nonzero, key=lambda i: (-int(counts[i]), i))
    return {names[i]: int(counts[i]) for i in ordered}


_BLOCK_SIZE = struct.Struct("!i")


def posting_list(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(document numbers, weights) of a posting list of Whoosh's segment format, given whole.

    The list (``whoosh.codec.whoosh3``): a 4-byte tag, then blocks of up to 128 postings, each a
    big-endian signed size (negative for the last block), a pickled (count, last id, highest
    weight, compression, shortest, longest) and a pickled (ids, weights, values), zlib-compressed
    when compression is set. A block's ids are gaps, its first one counted from 0; its weights are
    None (each 1), one number for all, or one each.
    """
    stream = io.BytesIO(data)
    stream.seek(4)  # the tag, checked by the matcher
    gaps: list[int] = []
    weights: list[float] = []
    last_id = 0
    while True:
        (block_size,) = _BLOCK_SIZE.unpack(stream.read(4))
        end = stream.tell() + abs(block_size)
        count, block_last_id, _, compression, _, _ = pickle.load(stream)
        block = data[stream.tell():end]
        stream.seek(end)
        ids, block_weights, _ = pickle.loads(zlib.decompress(block) if compression else block)
        first = len(gaps)
        gaps.extend(ids)
        gaps[first] -= last_id  # a gap from the previous block's last id, so one sum gives all ids
        last_id = block_last_id
        if block_weights is None or isinstance(block_weights, float):
            weights.extend([1.0 if block_weights is None else block_weights] * count)
        else:
            weights.extend(block_weights)
        if block_size < 0:
            break
    return np.cumsum(np.asarray(gaps, dtype=np.int64)).astype(np.int32), np.asarray(weights, dtype=np.float32)
