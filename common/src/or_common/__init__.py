"""Shared library of calm-storm."""
