"""CLIP (open_clip): the encoder, the trimmed text path, the last-block shortcut and
loading weights offline.
"""
