"""The core layer: the contracts (adapter API, run results), conditions, errors, paths, cards, and the
process-level helpers (threads, devices, progress, atomic writes) every layer above uses. Imports no other layer."""
