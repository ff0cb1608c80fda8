"""Feature extraction: the one featurizer and each stage's features (log-mel/MFCC, eGeMAPS, SSL,
face CNN)."""
