"""Learned models (neural FIM, LAND)."""
