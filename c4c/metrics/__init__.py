"""Scores for trained models: retrieval metrics (R@K, median and mean rank)."""
