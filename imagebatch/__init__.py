"""ImageBatch: Kubernetes-native batch thumbnailing.

The distribution holds three services that never import each other — `imagebatch.operator`,
`imagebatch.worker`, `imagebatch.api` — and the shared core they all build on,
`imagebatch.core`. `imagebatch.devservers` starts throwaway PostgreSQL, RabbitMQ and Kubernetes
API servers as local processes, for tests and `make demo`.
"""

__version__ = "0.1.0"
