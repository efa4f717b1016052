"""The shared kernel: what every capability uses and nothing capability-specific.

Errors, time, ids, document paths, the store and its unit of work, the ports to the outside world, changes and
the command base, the model aggregate, label rules, Pub/Sub message decoding, event schemas and HTTP helpers.
Nothing in here imports a capability package (registry, registration, deployments, schedules, reconcile, api).
"""
