"""Throwaway servers started as local processes: PostgreSQL, RabbitMQ, etcd + kube-apiserver.

The test fixtures and `make demo` use these where no Docker engine exists. Each server listens on
free loopback ports, keeps its data in a folder it is given, is waited on until it answers, and is
stopped with its whole process group.
"""
