"""Renderings of the batch report."""
