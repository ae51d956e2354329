"""The other side of the wire: HQ dispatch and the national monitoring desk.

Nothing here runs on a station's Pi, and nothing in the station package imports this one
(``tests/test_layout.py`` walks the imports). What lives here: the MQTT clients HQ and the desk
use (:mod:`.clients`), ``send-complaint`` (:mod:`.send`), ``send-command`` (:mod:`.command`),
``monitor`` (:mod:`.monitor`), the web desk (:mod:`.web`), and the demo with its embedded broker
and terminal panel (:mod:`.demo`, :mod:`.demo_panel`, :mod:`.demo_keys`,
:mod:`.embedded_broker`). They share only :mod:`station.protocol`, the wire contract, with the
station. Extra ``desk``, from the checkout: ``pip install -e '.[desk]'`` (the package is not on
the public index).
"""
