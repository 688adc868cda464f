"""Training data: queries, citation-linked positives, hard negatives, splits, analysis; :mod:`.build`: the
``training_pairs`` workflow."""
