"""Experiments that train and evaluate several systems on one dataset: the backbone comparison, the ablation."""
