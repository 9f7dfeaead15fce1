"""Foundations every other part uses: errors, atomic file output, device choice,
progress bars, torchrun process groups.
"""
