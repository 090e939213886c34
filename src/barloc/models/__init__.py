"""Encoders and the Lightning classifier."""

from barloc.models.classifier import VAL_METRIC_NAME, SequenceClassifier
from barloc.models.encoders import ConvEncoder, KmerEncoder, build_encoder, n_kmer_features

__all__ = ["ConvEncoder", "KmerEncoder", "SequenceClassifier", "VAL_METRIC_NAME", "build_encoder", "n_kmer_features"]
