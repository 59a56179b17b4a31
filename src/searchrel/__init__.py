"""searchrel: graded search relevance with an LLM cross-encoder teacher distilled into a bi-encoder student."""

__version__ = "0.1.0"
