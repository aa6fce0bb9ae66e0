"""kplab against the real kernel: the standard node in network namespaces.

- `netns.Lab`: builds the node of DESIGN section 3 from a `kplab.Topology` in namespaces of its
  own, loads rules with iptables-restore, reads counters and conntrack.
- `harness`: injects exactly one packet (or many) and observes what the kernel did
  (`KernelObservation`); `Lab.send`, `Lab.send_reply`, `Lab.send_many` call it.
- `compare`: field-by-field comparison of a kplab trace with a kernel observation.
- `generate`: rulesets and packets for the differential suite.

Only this package runs subprocesses, and only inside a Lab's own namespaces. A Lab needs root;
`available()` says whether this machine can build one. Imports are lazy: importing the package
loads nothing until a name is used.
"""

_NAMES = {
    "Lab": "netns", "LabError": "netns", "Counters": "netns", "available": "netns",
    "lab_namespaces": "netns", "sweep_stale": "netns",
    "KernelObservation": "harness", "HarnessError": "harness",
    "run_case": "differential", "CaseResult": "differential",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'kplab.kernelcheck' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
