"""Operating the service: metrics, health endpoints, structured logs, the status page.

The lowest layer: every app may import its metric objects (`observability.metrics`)
and record an event where it happens, in one line; it imports no app of the project.
"""
