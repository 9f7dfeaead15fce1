"""The typed schema of params.yaml (one class per section) and its loading, validation
and one-line errors.
"""
