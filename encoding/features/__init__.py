"""Feature spaces: extractors that turn clips into feature time series, and their registry.

Importing this package registers the built-in spaces: ``logmel``, ``modulation``, ``mfcc``,
``tonal``, ``rhythm``, ``loudness`` (acoustic), ``musicnn`` (a pretrained tagger), ``encodec`` and
``audio_ssl`` (transformers networks) and ``caption`` (text). Extractor modules import their heavy
libraries (librosa, torch, transformers) when they compute, so listing and checking spaces is light.
"""

from encoding.features import acoustic, musicnn, neural, text  # noqa: F401  (registration)
from encoding.features.base import (
    AudioExtractor,
    FeatureCache,
    FeatureExtractor,
    FeatureFrames,
    available_spaces,
    check_extractor_params,
    extractor_parameters,
    get_extractor,
    register,
)

__all__ = ["AudioExtractor", "FeatureCache", "FeatureExtractor", "FeatureFrames", "available_spaces",
           "check_extractor_params", "extractor_parameters", "get_extractor", "register"]
