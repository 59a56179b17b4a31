"""Serving: the ONNX query tower, the query-embedding cache, the index and the HTTP service."""
