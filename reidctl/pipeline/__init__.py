"""Pipelines: the only layer that combines model, store, data, rerank and metrics."""
