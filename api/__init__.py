"""The HTTP API of ImageBatch: single tasks, uploads, `/enqueue`, batches, status and thumbnails.

`create_app(settings)` in `app.py` builds the FastAPI application; `__main__` reads the settings
once and serves it with uvicorn. The api imports the shared core only, never another service.
"""
