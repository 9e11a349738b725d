"""Rating (Algorithm 1) and the scores table."""
