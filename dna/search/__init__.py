"""Search: exact constrained traversal (Eq. 4, Algorithm 2), Pareto front, top-k; latency tables.

``search``/``pareto_front`` (traversal.py) work on a scores table; ``LatencyTable`` (latency.py)
measures per-layer latency on a device and ``add_latency`` adds the ``latency_ms`` column that
``search(max_latency_ms=...)`` constrains.
"""

from dna.search.latency import LatencyTable, add_latency
from dna.search.traversal import COSTS, Problem, SearchResult, pareto_front, search

__all__ = ["COSTS", "LatencyTable", "Problem", "SearchResult", "add_latency", "pareto_front", "search"]
