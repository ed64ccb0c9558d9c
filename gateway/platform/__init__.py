"""Reporting to the provincial/municipal elder-care platform (省/市养老服务平台, issue 13).

The monthly statistics of every site and its incident summaries (codes, never names) are
pushed as signed HTTP JSON through the outbox (:mod:`gateway.notify.messaging`): see
``docs/platform-push.md``. ``settings`` (the ``[platform]`` section), ``signing`` (HMAC),
``report`` (the document), ``push`` (queue, deliver, schedule), ``receiver`` (a local
receiving endpoint for the demo and the tests), ``cli`` (``safehome platform …``).
"""
