"""The operator benchmark (`python bench/operator_bench.py`), one module per thing it measures:

- `publish_rate`: an ImageBatch's publish rate next to raw aio-pika on the same broker, and the
  operator's RSS and CPU meanwhile (parts `publish`, `untraced`; `profiling` adds py-spy);
- `status_lag`: from the last completion until the status counts it (part `lag`);
- `status_refresh`: one status refresh at 1,000,000 items, and the batch_counts triggers' cost on
  a bulk insert (part `refresh`);
- `servers` and `batches`: what they all run on; `cli`: the command line and the report.

Processes' CPU and memory are read from /proc by bench/cpu_accounting.py, the one home for that.
"""
