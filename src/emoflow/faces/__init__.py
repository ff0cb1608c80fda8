"""Face backends: find, landmark and align faces in sampled frames.

Two backends fill the same shard schema (112x112 crops aligned like OpenFace's ``-simalign``):
``embedded`` (dlib HOG + 68-point predictor; the default, needs nothing outside PyPI) and
``openface`` (OpenFace 2.x ``FeatureExtraction``, adds AU intensities and head pose).
"""
