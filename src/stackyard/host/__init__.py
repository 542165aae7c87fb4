"""The machine stackyard runs on: detached processes and the unprivileged accounts they run as.

Shared by the local providers (``providers.local``: PostgreSQL and Redis servers) and the local
runtime (``runtime``: workloads), neither of which may import the other. Standard library only.
"""
