"""`kubectl imagebatch`: watch, retry and inspect ImageBatch resources from the command line.

Installed with the package as the console script `kubectl-imagebatch`, which kubectl finds on
the PATH as the plugin `kubectl imagebatch`. It reaches the cluster as kubectl does (`KUBECONFIG`,
the context's namespace, `-n`), and the api only when given its address (`--api`). It depends on
the shared core and the kubernetes client alone, never on a service.
"""
