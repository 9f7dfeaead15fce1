"""Experiments: comparing runs (lineage) and the tables of `cvae report`."""
