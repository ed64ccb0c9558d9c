"""Device catalogue of Safe-Home Guardian: wire protocol, simulator and their helpers.

* :mod:`devices.protocol`: protocol v1 (topics, payload schemas, ``decode``, encoders, acks).
* :mod:`devices.manifest`, :mod:`devices.scenario`: site manifests and scripted incidents.
* :mod:`devices.signals`, :mod:`devices.virtual`: signal models and virtual devices (pure).
* :mod:`devices.simulator`: ``run_simulation`` (``safehome simulate``).
* :mod:`devices.transport`, :mod:`devices.mqtt311`, :mod:`devices.paho_transport`: MQTT links.
"""
