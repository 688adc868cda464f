"""Training data: queries, citation-linked positives, hard negatives, splits, analysis."""
