"""Evaluation: metrics as pure functions, predictions joined to judgments, tables for people."""

from searchrel.eval.evaluate import EvalConfig, EvalResult, evaluate, read_predictions

__all__ = ["EvalConfig", "EvalResult", "evaluate", "read_predictions"]
