"""Message catalogue, one module per sending role (``controller.py``, later ``cache.py``,
``farmer.py``, ``plotter.py``...). Each message is a :class:`services.bus.message.Message`
subclass with ``subject`` (spec 06 §3 names, ``*`` for an instance / group id), ``response``
(reply type, item type for ``stream = True``, ``None`` for notifications and broadcasts) and
optionally ``queue_group``. Modules here only declare types; behaviour lives in the roles."""
