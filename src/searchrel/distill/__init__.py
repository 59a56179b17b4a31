"""Distillation: sample (query, candidate) pairs far beyond the human labels, have the teacher soft-label them."""
