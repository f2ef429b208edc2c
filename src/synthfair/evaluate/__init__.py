"""Soundness evaluation of counterfactuals (issue 6 grows this package; phantom truth comes first)."""
