"""Spatial inference on a cortical mesh: threshold-free cluster enhancement and cluster statistics.

Maps live on a :class:`SurfaceGraph`: vertices joined by the edges of the mesh's triangles (on
fsaverage5 each hemisphere is its own graph: no edge crosses the midline), with the vertices
outside the ``mask`` (the medial wall) in no cluster. A map ``t`` is a standardised statistic
(:meth:`encoding.stats.permutation.PermutationResult.standardised`), so heights compare across
vertices.

- **Clusters** at a cluster-forming threshold ``u`` are the connected components of
  ``{v : t(v) >= u}``; a cluster's *extent* is its number of vertices and its *mass* the sum of
  ``t - u`` over them (the part above the threshold: a cluster barely over ``u`` weighs little).
- **TFCE** (Smith & Nichols 2009) integrates cluster extent over every threshold,
  ``tfce(v) = sum_{h = dh, 2 dh, ... <= t(v)} e(v, h)^E h^H dh``, with ``e(v, h)`` the extent of
  the cluster holding ``v`` at threshold ``h``; ``E = 1, H = 2``, the parameters for surfaces
  (FSL's ``--T2``, PALM's ``-tfce2D``; ``E = 0.5`` is for volumes). No threshold to choose.

FWER for either comes from the maximum over the map of each permutation's enhanced or cluster
statistic, as for vertices (``(1 + #{k : max_k >= s}) / (1 + K)``): computed on the permutations
that were already run, so it costs no extra fit. Extents count vertices, not mm^2: permutation
inference is exact either way, and fsaverage5's vertices are about evenly spaced on the sphere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

TFCE_EXTENT = 1.0
TFCE_HEIGHT = 2.0
TFCE_STEP = 0.1  # standardised units
MAX_CHUNK_ELEMENTS = 2**22  # maps x vertices enhanced or labelled at once (bounds memory)


@dataclass(frozen=True)
class SurfaceGraph:
    """Vertex adjacency for spatial inference.

    Attributes
    ----------
    edges : ndarray of int, shape (n_edges, 2)
        Each undirected edge once, both ends inside ``mask``.
    mask : ndarray of bool, shape (n_vertices,)
        Vertices that can be in a cluster (False: the medial wall, or what the analysis leaves out).
    """

    edges: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_adjacency(cls, adjacency, mask: np.ndarray | None = None) -> SurfaceGraph:
        """From a (sparse) adjacency matrix of shape (n_vertices, n_vertices); nonzero = neighbours."""
        adjacency = sparse.coo_matrix(adjacency)
        n = adjacency.shape[0]
        if adjacency.shape != (n, n):
            raise ValueError(f"adjacency must be square, got shape {adjacency.shape}.")
        mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"mask must have shape ({n},), got {mask.shape}.")
        i, j = adjacency.row, adjacency.col
        keep = (i < j) & mask[i] & mask[j]
        edges = np.unique(np.stack([i[keep], j[keep]], axis=1), axis=0)
        return cls(edges.astype(np.int64), mask)

    @property
    def n_vertices(self) -> int:
        return self.mask.size

    def subgraph(self, vertices: np.ndarray) -> SurfaceGraph:
        """The graph restricted to ``vertices`` (indices), renumbered in their order."""
        vertices = np.asarray(vertices)
        position = np.full(self.n_vertices, -1)
        position[vertices] = np.arange(vertices.size)
        ends = position[self.edges]
        return SurfaceGraph(ends[(ends >= 0).all(axis=1)], self.mask[vertices])


def fsaverage5_graph() -> SurfaceGraph:
    """fsaverage5's mesh (white surface faces; hemispheres apart) without the medial wall
    (the vertices in no Desikan-Killiany parcel), 20,484 vertices."""
    from atlases.parcellations import desikan_killiany
    from atlases.surface import edge_graph

    return SurfaceGraph.from_adjacency(edge_graph(), desikan_killiany().labels > 0)


def cluster_labels(active: np.ndarray, graph: SurfaceGraph) -> np.ndarray:
    """Connected components of the active vertices of each map.

    Parameters
    ----------
    active : ndarray of bool, shape (n_maps, n_vertices)
    graph : SurfaceGraph

    Returns
    -------
    ndarray of int, shape (n_maps, n_vertices)
        A label per active vertex, numbered across all maps from 0 (no two maps share a label);
        -1 where inactive.
    """
    active = np.atleast_2d(active) & graph.mask
    n_maps, n_vertices = active.shape
    flat = np.flatnonzero(active)
    node = np.full(active.size, -1, dtype=np.int64)
    node[flat] = np.arange(flat.size)
    both = active[:, graph.edges[:, 0]] & active[:, graph.edges[:, 1]]
    maps, edge = np.nonzero(both)
    offset = maps * n_vertices
    a, b = node[offset + graph.edges[edge, 0]], node[offset + graph.edges[edge, 1]]
    links = sparse.coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(flat.size, flat.size))
    _, component = connected_components(links, directed=False)
    labels = np.full(active.size, -1, dtype=np.int64)
    labels[flat] = component
    return labels.reshape(n_maps, n_vertices)


def tfce(maps: np.ndarray, graph: SurfaceGraph, step: float = TFCE_STEP, extent: float = TFCE_EXTENT,
         height: float = TFCE_HEIGHT) -> np.ndarray:
    """Threshold-free cluster enhancement of the positive part of each map.

    Parameters
    ----------
    maps : ndarray, shape (n_maps, n_vertices) or (n_vertices,)
        Standardised statistics.
    graph : SurfaceGraph
    step : float
        Threshold increment ``dh`` (the same for every map, so that maps compare).
    extent, height : float
        ``E`` and ``H``.

    Returns
    -------
    ndarray, same shape as ``maps``
        0 outside the graph's mask and where the map is below ``step``.

    Notes
    -----
    Vertices (and edges, by their lower end) are sorted by height once, so the vertices and edges
    at or above each threshold are a prefix of the sorted lists, numbered by their rank: each
    threshold costs one connected-components pass over what is above it, nothing else.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}.")
    maps = np.asarray(maps, dtype=np.float64)
    single = maps.ndim == 1
    maps = np.ascontiguousarray(np.where(graph.mask, np.atleast_2d(maps), 0.0))
    n_vertices = maps.shape[1]
    out = np.zeros(maps.shape)  # C order: a chunk's rows are one block, written through ravel()
    rows = max(1, MAX_CHUNK_ELEMENTS // max(1, n_vertices))
    for first in range(0, len(maps), rows):
        flat = maps[first:first + rows].ravel()
        order = np.flatnonzero(flat >= step)
        if order.size == 0:
            continue
        order = order[np.argsort(-flat[order], kind="stable")]  # vertices, highest first
        rank = np.full(flat.size, -1, dtype=np.int64)
        rank[order] = np.arange(order.size)
        offsets = (np.arange(flat.size // n_vertices) * n_vertices)[:, None]
        ends = [(offsets + graph.edges[:, side][None, :]).ravel() for side in (0, 1)]
        lower = np.minimum(flat[ends[0]], flat[ends[1]])
        edges = np.flatnonzero(lower >= step)
        edges = edges[np.argsort(-lower[edges], kind="stable")]  # edges, highest lower end first
        a, b, lower = rank[ends[0][edges]], rank[ends[1][edges]], -lower[edges]
        descending = -flat[order]
        enhanced = np.zeros(order.size)
        for h in step * np.arange(1, int(np.floor(flat[order[0]] / step + 1e-9)) + 1):
            n_active = int(np.searchsorted(descending, -h, side="right"))  # vertices >= h
            n_links = int(np.searchsorted(lower, -h, side="right"))  # edges with both ends >= h
            links = sparse.coo_matrix((np.ones(n_links, dtype=np.int8), (a[:n_links], b[:n_links])),
                                      shape=(n_active, n_active))
            _, component = connected_components(links, directed=False)
            enhanced[:n_active] += np.bincount(component)[component] ** extent * h**height * step
        out[first:first + rows].ravel()[order] = enhanced
    return out[0] if single else out


def cluster_statistics(maps: np.ndarray, graph: SurfaceGraph, threshold: float):
    """Clusters of each map at a cluster-forming threshold.

    Parameters
    ----------
    maps : ndarray, shape (n_maps, n_vertices)
    graph : SurfaceGraph
    threshold : float

    Returns
    -------
    labels : ndarray of int, shape (n_maps, n_vertices)
        :func:`cluster_labels` of ``maps >= threshold``.
    extent, mass : ndarray, shape (n_clusters,)
        Vertices of each cluster, and its sum of ``t - threshold``.
    owner : ndarray of int, shape (n_clusters,)
        The map each cluster belongs to.
    """
    maps = np.atleast_2d(np.asarray(maps, dtype=np.float64))
    labels = cluster_labels(maps >= threshold, graph)
    inside = labels >= 0
    n_clusters = int(labels.max(initial=-1)) + 1
    extent = np.bincount(labels[inside], minlength=n_clusters).astype(np.float64)
    mass = np.bincount(labels[inside], weights=maps[inside] - threshold, minlength=n_clusters)
    owner = np.zeros(n_clusters, dtype=np.int64)
    owner[labels[inside]] = np.nonzero(inside)[0]
    return labels, extent, mass, owner


def map_maxima(values: np.ndarray, owner: np.ndarray, n_maps: int) -> np.ndarray:
    """Largest ``values`` (one per cluster) of each map, 0 for a map without clusters, shape (n_maps,)."""
    out = np.zeros(n_maps)
    np.maximum.at(out, owner, values)
    return out
