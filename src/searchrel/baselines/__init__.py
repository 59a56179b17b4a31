"""Baselines the teacher is compared against: BM25 lexical match and a zero-shot embedding model."""
