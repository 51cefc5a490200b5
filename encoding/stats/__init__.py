"""Statistics for papers: permutation tests with FWER (step-down, TFCE, clusters) and FDR, variance
partitioning, group level, reports.

Statistics only: the pipeline's statistics step (:func:`encoding.pipeline.run_statistics`) calls
these. Noise ceilings live in :mod:`encoding.noise_ceiling`.
"""

from encoding.stats.group import one_sample_t, roi_mixed_model, sign_flip_test
from encoding.stats.partition import clip_negative, fdr_within, partition_variance, subsets, unique_bootstrap
from encoding.stats.permutation import PermutationResult, permutation_indices, permutation_test
from encoding.stats.report import methods_paragraph, write_table
from encoding.stats.spatial import SurfaceGraph, fsaverage5_graph, tfce

__all__ = ["PermutationResult", "SurfaceGraph", "clip_negative", "fdr_within", "fsaverage5_graph", "methods_paragraph",
           "one_sample_t", "partition_variance", "permutation_indices", "permutation_test", "roi_mixed_model",
           "sign_flip_test", "subsets", "tfce", "unique_bootstrap", "write_table"]
