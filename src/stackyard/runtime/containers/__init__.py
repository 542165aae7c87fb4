"""The ``containers`` runtime: workloads as OCI containers run by podman (``runtime``), the
engine and this machine's quirks (``engine``), and the ``podman run`` plans (``plan``)."""
