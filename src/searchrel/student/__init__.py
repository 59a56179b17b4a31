"""The bi-encoder student: query and item towers embedded apart, a small scorer over their embeddings and
pair features (BM25/text match, zero-shot cosine), trained on the teacher's soft labels."""
