"""``polres-station desk``: the national desk's web wall (a service for the desk's machine).

:mod:`.state` reads a station (pure), :mod:`.store` keeps it in SQLite, :mod:`.core` is the loop
(MQTT in, changed rows out), :mod:`.server` the HTTP side (page, API, server-sent events),
:mod:`.auth` logins and CSRF, :mod:`.metrics` the Prometheus text, :mod:`.cli` the subcommand.
Only the standard library and paho: no web framework on the desk either.
"""
