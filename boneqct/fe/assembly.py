"""Vectorised assembly of the global stiffness matrix of a voxel mesh, as 3x3-block sparse rows (BSR).

On a regular grid a node couples only with its 27 neighbours, and the 3x3 block between a
node and its neighbour at offset d is the sum, over the (up to 8) elements they share, of the
element modulus times one block of the reference matrix. So the matrix is built offset by
offset from shifted copies of the element-modulus grid: no per-element 24x24 matrices, no
COO sorting, memory linear in the number of nodes. The sparsity pattern depends only on which
elements exist, so an :class:`Assembler` is made once per mesh and re-fills values for new
moduli (the nonlinear analysis).
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from boneqct.fe.hexahedron import NODE_OFFSETS_XYZ, reference_stiffness

#: Neighbour offsets (dk, dj, di) in increasing order of the neighbour's node number.
NEIGHBOUR_OFFSETS_KJI = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
#: Local node offsets (k, j, i) of the hexahedron, VTK order.
NODE_OFFSETS_KJI = NODE_OFFSETS_XYZ[:, ::-1]


class Assembler:
    """Node numbering and block-sparse pattern of a voxel mesh; fills the matrix for given moduli.

    Args:
        elements_kji: bool array (nk, nj, ni), the elements present.
        element_mm: edge of the cubic elements (mm).
        poisson_ratio: Poisson's ratio of every element.

    Attributes:
        node_id_kji: int array (nk+1, nj+1, ni+1): node number, -1 where no element touches.
        n_nodes: number of nodes; the matrix has 3 n_nodes rows (x, y, z per node).
        element_nodes: int array (n_elements, 8) of node numbers (VTK_HEXAHEDRON order),
            elements in C order of ``elements_kji``.
    """

    def __init__(self, elements_kji: np.ndarray, element_mm: float, poisson_ratio: float):
        self.elements_kji = np.asarray(elements_kji, bool)
        self.element_mm = float(element_mm)
        k_ref = reference_stiffness(poisson_ratio) * self.element_mm
        nk, nj, ni = self.elements_kji.shape
        padded = np.pad(self.elements_kji, 1)
        # present[a] at node p: the element having p as its local node a exists.
        shifted = np.stack([_element_at_node(padded, off) for off in NODE_OFFSETS_KJI])
        node_present = shifted.any(axis=0)
        self.node_id_kji = np.full(node_present.shape, -1, dtype=np.int64)
        self.n_nodes = int(node_present.sum())
        self.node_id_kji[node_present] = np.arange(self.n_nodes)
        self._node_flat = np.flatnonzero(node_present)
        ek, ej, ei = np.nonzero(self.elements_kji)
        self.element_nodes = np.stack(
            [self.node_id_kji[ek + o[0], ej + o[1], ei + o[2]] for o in NODE_OFFSETS_KJI], axis=1)
        self._element_index_kji = np.full(self.elements_kji.shape, -1, dtype=np.int64)
        self._element_index_kji[self.elements_kji] = np.arange(len(ek))
        self._k_ref = k_ref
        self._pattern_built = False

    @property
    def node_flat(self) -> np.ndarray:
        """Flat index into the node lattice ``node_id_kji`` of each node, in node order."""
        return self._node_flat

    def _build_pattern(self) -> None:
        """The block-sparse pattern (built on the first :meth:`matrix` call only: the
        matrix-free solvers never need it)."""
        if self._pattern_built:
            return
        self._pattern_built = True
        k_ref = self._k_ref
        # For each neighbour offset d: pairs (a, b) of local nodes with offset_b - offset_a = d.
        self._pairs = []
        for d in NEIGHBOUR_OFFSETS_KJI:
            pairs = [(a, b) for a in range(8) for b in range(8)
                     if np.array_equal(NODE_OFFSETS_KJI[b] - NODE_OFFSETS_KJI[a], d)]
            blocks = np.stack([k_ref[3 * a:3 * a + 3, 3 * b:3 * b + 3] for a, b in pairs])
            self._pairs.append(([a for a, _ in pairs], blocks))
        # Element number (or -1) holding each node as local node a: (8, n_nodes).
        padded_index = np.pad(self._element_index_kji, 1, constant_values=-1)
        self._element_of_node = np.stack(
            [_element_at_node(padded_index, off).ravel()[self._node_flat]
             for off in NODE_OFFSETS_KJI])
        # Neighbours sharing an element: (n_nodes, 27) node numbers or -1.
        id_padded = np.pad(self.node_id_kji, 1, constant_values=-1)
        shape = self.node_id_kji.shape
        neighbours = np.empty((self.n_nodes, 27), dtype=np.int64)
        for n, d in enumerate(NEIGHBOUR_OFFSETS_KJI):
            window = id_padded[1 + d[0]:1 + d[0] + shape[0], 1 + d[1]:1 + d[1] + shape[1],
                               1 + d[2]:1 + d[2] + shape[2]]
            shares = np.zeros(self.n_nodes, bool)
            for a in self._pairs[n][0]:
                shares |= self._element_of_node[a] >= 0
            neighbours[:, n] = np.where(shares, window.ravel()[self._node_flat], -1)
        # CSR order: row (node n, component i), then neighbours in increasing number, then
        # their components j: the layout (n, i, d, j) of a dense array, compressed by ``_keep``.
        # Block-sparse rows (one 3x3 block per node pair): block row n holds its neighbours in
        # increasing node number, i.e. in the order of NEIGHBOUR_OFFSETS_KJI.
        self._valid_offsets = neighbours >= 0
        self.indptr = np.concatenate([[0], np.cumsum(self._valid_offsets.sum(axis=1))])
        self.indices = neighbours[self._valid_offsets].astype(np.int32)
        self.n_blocks = len(self.indices)
        # Per neighbour offset: the nodes having that neighbour and their block's slot.
        slot = np.full(self._valid_offsets.shape, -1, dtype=np.int64)
        slot[self._valid_offsets] = np.arange(self.n_blocks)
        self._slots = [(np.flatnonzero(self._valid_offsets[:, n]),
                        slot[self._valid_offsets[:, n], n]) for n in range(27)]

    @property
    def n_dof(self) -> int:
        """Degrees of freedom (3 per node)."""
        return 3 * self.n_nodes

    def node_kji(self) -> np.ndarray:
        """(n_nodes, 3) grid indices (k, j, i) of the nodes."""
        return np.stack(np.unravel_index(self._node_flat, self.node_id_kji.shape), axis=1)

    def matrix(self, modulus_mpa: np.ndarray) -> sp.bsr_matrix:
        """The global stiffness matrix (N/mm), 3x3 blocks per node pair, for element moduli
        (MPa, one per element)."""
        self._build_pattern()
        modulus = np.concatenate([np.asarray(modulus_mpa, float), [0.0]])
        blocks = np.empty((self.n_blocks, 9))
        for (locals_a, pair_blocks), (nodes, slots) in zip(self._pairs, self._slots, strict=True):
            moduli = modulus[self._element_of_node[locals_a][:, nodes]]  # element -1 -> 0
            blocks[slots] = moduli.T @ pair_blocks.reshape(len(locals_a), 9)
        blocks = blocks.reshape(-1, 3, 3)
        return sp.bsr_matrix((blocks, self.indices, self.indptr),
                             shape=(self.n_dof, self.n_dof))


def _element_at_node(padded: np.ndarray, offset_kji) -> np.ndarray:
    """Values of a once-padded element grid at the element having each node as the local node
    at ``offset_kji``: element index = node index - offset (the node grid is one larger)."""
    k, j, i = (1 - np.asarray(offset_kji))
    nk, nj, ni = (s - 1 for s in padded.shape)
    return padded[k:k + nk, j:j + nj, i:i + ni]
