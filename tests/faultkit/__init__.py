"""The fault-matrix kit: what the fault tests (``tests/integration/test_fault_matrix.py``) and
``bench/faults.py`` share. Not a test module.

* :mod:`tests.faultkit.proxy` — a TCP proxy that passes, blackholes or cuts connections;
* :mod:`tests.faultkit.fleet` — scripted protocol-v1 devices sending sequence-numbered
  alarms and telemetry, retrying alarms until acked, with per-device clock offsets;
* :mod:`tests.faultkit.stack` — the services, the gateway as a real process (generated
  config, ``kill -9``, libfaketime), the page/notification receiver, the site;
* :mod:`tests.faultkit.ledger` — sent vs stored vs raised vs paged, lost and duplicates;
* :mod:`tests.faultkit.matrix` — one function per fault, each returning a
  :class:`~tests.faultkit.ledger.FaultResult`.

See ``docs/fault-matrix.md``.
"""
