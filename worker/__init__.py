"""The worker service: consume image jobs, make thumbnails, record the outcome, then ack.

One message flows download → transform → atomic write → record → ack (`pipeline.py`), and one
place (`consumer.py`) maps what happened to ack, retry through a delay queue, or dead-letter.
"""
