"""Student supernets: one per block, trained independently against the teacher."""

from dna.supernet.mbconv import BlockSupernet, CellSupernet, ChoiceLayer

__all__ = ["BlockSupernet", "CellSupernet", "ChoiceLayer"]
