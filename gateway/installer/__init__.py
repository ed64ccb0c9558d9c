"""The installer's side of ``safehome``: an HTTP client of the gateway API (installer role).

It never needs database credentials: ``safehome login`` signs in once and caches the bearer
token (mode 0600) under ``$XDG_CONFIG_HOME/safehome``; every other command calls the API
described in ``docs/installer-api.md``. :func:`gateway.installer.commands.register` adds the
commands to the ``safehome`` parser.
"""
