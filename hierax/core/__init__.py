"""Core services every room uses: the JAX runtime, devices and keys, files, the heap, Ctrl-C."""
