"""Retrieval metrics (MRR, NDCG, MAP, Accuracy, Precision, Recall @k), implemented once and used everywhere."""
