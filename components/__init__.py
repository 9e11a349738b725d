"""One KFP component per stage (thin wrappers over dna/); Ray fan-out in the fanout package."""
