"""The ImageBatch operator (kopf), installed as `imagebatch.operator`.

Never importable as a top-level `operator`: that name belongs to the standard library.
"""
