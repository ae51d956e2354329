"""GPIO: siren and beacon relays, the acknowledge button, the siren feedback (docs/BEHAVIOUR.md).

Thin gpiozero wrappers, each with one job:

* :func:`make_pin_factory` turns ``gpio.pin_factory`` into a gpiozero pin factory, and refuses
  (:class:`~station.errors.HardwareError`) rather than silently falling back to another library.
* :class:`Relay` is one relay output with a siren cadence (:class:`~station.config.Pattern`).
* :class:`InputLine` reports every raw edge of an input to a callback, with a monotonic timestamp.
* :class:`Hardware` is the station's set of lines, built from :class:`~station.config.GpioConfig`.
* :func:`force_outputs_off` is ``polres-station outputs-off`` (systemd ``ExecStopPost=``).

No business logic lives here: debounce, hold detection and feedback timeouts belong to the pure
alarm core (``MockPin`` ignores ``bounce_time`` anyway, so gpiozero's is disabled). Library
callbacks only translate an edge and call the given callback (the service enqueues it). The pin
factory is always passed in, never taken from gpiozero's global ``Device.pin_factory``.

With :class:`gpiozero.pins.mock.MockFactory` the pin objects are reached as ``factory.pin(17)``
(the same object the device drives); compare histories with ``[s.state for s in pin.states]``.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from types import TracebackType
from typing import Callable, TypeVar

from gpiozero import DigitalInputDevice, DigitalOutputDevice, Factory

from .alarms import Outputs
from .config import GpioConfig, Pattern
from .errors import HardwareError

__all__ = [
    "STEADY",
    "Hardware",
    "InputLine",
    "Relay",
    "force_outputs_off",
    "make_pin_factory",
]

log = logging.getLogger("station.hardware")

STEADY = Pattern(1.0, 0.0)
"""A continuous pattern: what :meth:`Relay.on` records and what the beacon uses."""

EdgeCallback = Callable[[bool, float], None]

_INSTALL = ("install the [pi] extra from the station's checkout or wheelhouse (pip install "
            "-e '.[pi]'; the package is not on the public index)")
_LIBRARIES = {
    # name: (gpiozero module, factory class, Python library it needs, how to get it)
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory", "lgpio",
              f"{_INSTALL} (or apt install python3-lgpio)"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory", "RPi.GPIO",
                f"{_INSTALL} (or apt install python3-rpi.gpio; on a Pi 5 use lgpio)"),
}
_AUTO_ORDER = ("lgpio", "rpigpio")


def make_pin_factory(name: str) -> Factory:
    """Return a new gpiozero pin factory for ``gpio.pin_factory``.

    ``"mock"`` gives :class:`~gpiozero.pins.mock.MockFactory`; ``"lgpio"`` and ``"rpigpio"``
    that library or :class:`HardwareError` naming the missing library and how to install it;
    ``"auto"`` tries lgpio then RPi.GPIO. Unlike gpiozero's own default this never falls back
    to the mock or the experimental native factory: a station that cannot drive its siren must
    fail loudly, not pretend::

        >>> make_pin_factory("mock")
        <gpiozero.pins.mock.MockFactory object at ...>
    """
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name in _LIBRARIES:
        return _load_factory(name)
    if name == "auto":
        problems = []
        for candidate in _AUTO_ORDER:
            try:
                return _load_factory(candidate)
            except HardwareError as exc:
                problems.append(str(exc))
        raise HardwareError(
            "no GPIO library usable on this machine; set gpio.pin_factory: mock to run without "
            "a Pi (" + "; ".join(problems) + ")")
    raise HardwareError(
        f"gpio.pin_factory: unknown pin factory {name!r} (expected auto, lgpio, rpigpio or mock)")


def _load_factory(name: str) -> Factory:
    module_name, class_name, library, install = _LIBRARIES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HardwareError(
            f"pin factory {name!r} needs the {library} library, which is not installed "
            f"({exc}); {install}") from exc
    try:
        return getattr(module, class_name)()
    except Exception as exc:  # not a Pi, no /dev/gpiochip*, no permission, wrong SoC
        raise HardwareError(
            f"pin factory {name!r} ({library}) cannot start on this machine: {exc} "
            "(is this a Raspberry Pi, and is the service user in group gpio?)") from exc


class Relay:
    """One relay output: off, on, or on/off with a :class:`~station.config.Pattern` cadence.

    The pin is driven to the *off* level from the moment it is opened (``initial_value=False``;
    with ``active_high=False`` that is the pin HIGH). :meth:`set` is idempotent — setting the
    pattern already running does not restart its cadence — so it can be called on every
    decision. Patterns run on gpiozero's ``blink`` thread, starting with the on phase, and so
    never wait for the caller.

    ``pin_factory=None`` means gpiozero's default factory, as in gpiozero itself; the station
    always passes one (see :class:`Hardware`)::

        >>> siren = Relay(17, active_high=False, pin_factory=factory)
        >>> siren.set(Pattern(1.0, 0.5))   # urgent cadence
        >>> siren.set(Pattern(1.0, 0.5))   # no-op: the cadence keeps running
        >>> siren.set(None)                # off
        >>> siren.close()
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Factory | None = None):
        self._device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
        self._pin = pin
        self._active_high = active_high
        self._pattern: Pattern | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pin(self) -> int:
        """The BCM GPIO number."""
        return self._pin

    @property
    def active_high(self) -> bool:
        return self._active_high

    @property
    def pattern(self) -> Pattern | None:
        """The pattern being driven (None when off; :data:`STEADY` after :meth:`on`)."""
        return self._pattern

    @property
    def is_active(self) -> bool:
        """Whether the relay is energised right now (toggles while a pattern blinks)."""
        with self._lock:
            if self._closed:
                return False
            with _translated(self._what("read")):
                return bool(self._device.is_active)

    @property
    def closed(self) -> bool:
        return self._closed

    def set(self, pattern: Pattern | None) -> None:
        """Drive ``pattern``: None is off, a continuous one is on, anything else blinks.

        Does nothing when ``pattern`` is already being driven (the cadence is not restarted).
        """
        if pattern is not None and pattern.on_s <= 0:
            pattern = None  # never energised: the same as off
        with self._lock:
            if pattern == self._pattern:
                return
            self._check_open()
            with _translated(self._what("drive")):
                if pattern is None:
                    self._device.off()
                elif pattern.continuous:
                    self._device.on()
                else:
                    # On now, in this thread: the blink thread takes a thread start (and a
                    # GIL hand-over) to make its first write, which would delay the siren.
                    self._device.on()
                    self._device.blink(pattern.on_s, pattern.off_s, background=True)
            self._pattern = pattern

    def on(self) -> None:
        """Energise the relay continuously (:data:`STEADY`)."""
        if self._pattern is None or not self._pattern.continuous:
            self.set(STEADY)

    def off(self) -> None:
        """De-energise the relay (stops any pattern)."""
        self.set(None)

    def close(self) -> None:
        """Turn the relay off, then release the pin. Idempotent.

        gpiozero's ``close()`` leaves the pin an input with no pull (lgpio even disables the
        bias), so after this the relay input floats: ``polres-station outputs-off``
        (:func:`force_outputs_off`, run by ``ExecStopPost=``) drives it off again and keeps it
        driven.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with _translated(self._what("switch off")):
                    self._device.off()
                self._pattern = None
            finally:
                with _translated(self._what("close")):
                    self._device.close()

    def _check_open(self) -> None:
        if self._closed:
            raise HardwareError(f"relay on GPIO{self._pin} is closed")

    def _what(self, verb: str) -> str:
        return f"cannot {verb} the relay on GPIO{self._pin}"

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pattern={self._pattern!r}"
        polarity = "active-high" if self._active_high else "active-low"
        return f"<Relay GPIO{self._pin} {polarity} {state}>"


class InputLine:
    """A digital input that reports every raw edge as ``on_change(active, clock())``.

    With ``pull_up=True`` (a button or contact to ground) the line is active when LOW; with
    ``pull_up=False`` it is active when HIGH. gpiozero's ``bounce_time`` is disabled: the alarm
    core debounces, from the timestamps given here. ``on_change`` runs on gpiozero's thread and
    should only enqueue; any exception it raises is logged (logger ``station.hardware``) and
    never propagates into gpiozero::

        >>> events = queue.SimpleQueue()
        >>> button = InputLine(22, pin_factory=factory,
        ...                    on_change=lambda active, t: events.put(("button", active, t)))
        >>> factory.pin(22).drive_low()   # pressed
        >>> events.get_nowait()
        ('button', True, 1234.5)
    """

    def __init__(
        self,
        pin: int,
        *,
        pull_up: bool = True,
        pin_factory: Factory | None = None,
        on_change: EdgeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._pin = pin
        self._pull_up = pull_up
        self._on_change = on_change
        self._clock = clock
        self._closed = False
        self._device = DigitalInputDevice(
            pin, pull_up=pull_up, bounce_time=None, pin_factory=pin_factory)
        self._device.when_activated = self._activated
        self._device.when_deactivated = self._deactivated

    @property
    def pin(self) -> int:
        return self._pin

    @property
    def pull_up(self) -> bool:
        return self._pull_up

    @property
    def is_active(self) -> bool:
        """Whether the line is active now (False once closed)."""
        if self._closed:
            return False
        with _translated(f"cannot read GPIO{self._pin}"):
            return bool(self._device.is_active)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop reporting edges and release the pin. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._on_change = None
        with _translated(f"cannot close GPIO{self._pin}"):
            self._device.close()

    # gpiozero calls these on its own thread: translate, call back, never raise.
    def _activated(self) -> None:
        self._report(True)

    def _deactivated(self) -> None:
        self._report(False)

    def _report(self, active: bool) -> None:
        callback = self._on_change
        if callback is None:
            return
        try:
            callback(active, self._clock())
        except Exception:
            log.exception("GPIO%d edge callback failed (active=%s); edge dropped",
                          self._pin, active)

    def __enter__(self) -> InputLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pull = "pull-up" if self._pull_up else "pull-down"
        return f"<InputLine GPIO{self._pin} {pull}{' closed' if self._closed else ''}>"


class Hardware:
    """The station's lines: siren and beacon relays, ack button, optional siren feedback.

    Built from :class:`~station.config.GpioConfig`; the pin factory comes from
    ``gpio.pin_factory`` unless one is passed. A failure while opening any line raises
    :class:`HardwareError` naming the key and pin (``gpio.beacon.pin 27: ...``) after closing
    every line already opened (relays off). :meth:`apply` is idempotent and cheap, so the
    service calls it after every decision. Safe to call from any thread::

        >>> with Hardware(config.gpio, on_button=lambda active, t: loop_queue.put(...)) as hw:
        ...     hw.apply(Outputs(siren=Pattern(1.0, 0.5), beacon=True))
        ...     hw.off()
    """

    def __init__(
        self,
        gpio: GpioConfig,
        *,
        pin_factory: Factory | None = None,
        on_button: EdgeCallback | None = None,
        on_feedback: EdgeCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._lock = threading.RLock()
        self._closed = False
        self._owns_factory = pin_factory is None
        self._factory = pin_factory if pin_factory is not None else make_pin_factory(
            gpio.pin_factory)
        self._siren: Relay | None = None
        self._beacon: Relay | None = None
        self._button: InputLine | None = None
        self._feedback: InputLine | None = None
        factory = self._factory
        try:
            self._siren = _open("gpio.siren.pin", gpio.siren.pin, lambda: Relay(
                gpio.siren.pin, active_high=gpio.siren.active_high, pin_factory=factory))
            self._beacon = _open("gpio.beacon.pin", gpio.beacon.pin, lambda: Relay(
                gpio.beacon.pin, active_high=gpio.beacon.active_high, pin_factory=factory))
            self._button = _open("gpio.ack_button.pin", gpio.ack_button.pin, lambda: InputLine(
                gpio.ack_button.pin, pull_up=gpio.ack_button.pull_up, pin_factory=factory,
                on_change=on_button, clock=clock))
            feedback = gpio.siren_feedback
            if feedback is not None:
                self._feedback = _open("gpio.siren_feedback.pin", feedback.pin, lambda: InputLine(
                    feedback.pin, pull_up=feedback.pull_up, pin_factory=factory,
                    on_change=on_feedback, clock=clock))
        except BaseException:
            self.close()
            raise

    @property
    def siren(self) -> Relay:
        return self._siren  # type: ignore[return-value]

    @property
    def beacon(self) -> Relay:
        return self._beacon  # type: ignore[return-value]

    @property
    def button(self) -> InputLine:
        return self._button  # type: ignore[return-value]

    @property
    def feedback(self) -> InputLine | None:
        return self._feedback

    @property
    def pin_factory(self) -> Factory:
        return self._factory

    @property
    def closed(self) -> bool:
        return self._closed

    def apply(self, outputs: Outputs) -> None:
        """Drive the relays to ``outputs``; a no-op for what already matches.

        Both relays are attempted even if one fails; the first failure is then raised as
        :class:`HardwareError`.
        """
        with self._lock:
            if self._closed:
                raise HardwareError("hardware is closed")
            errors = []
            for relay, pattern in ((self._siren, outputs.siren),
                                   (self._beacon, STEADY if outputs.beacon else None)):
                try:
                    if relay is None:
                        raise HardwareError("relay not set up")
                    relay.set(pattern)
                except Exception as exc:  # noqa: BLE001 — the other relay is still tried
                    errors.append(exc)
            if errors:
                if isinstance(errors[0], HardwareError):
                    raise errors[0]
                raise HardwareError(str(errors[0])) from errors[0]

    def off(self) -> None:
        """Switch both relays off. Idempotent; never raises (failures are logged)."""
        with self._lock:
            for relay in (self._siren, self._beacon):
                if relay is None or relay.closed:
                    continue
                try:
                    relay.off()
                except Exception:
                    log.exception("cannot switch off the relay on GPIO%d", relay.pin)

    @property
    def outputs(self) -> Outputs:
        """What the relays are currently commanded to do."""
        siren = self._siren.pattern if self._siren is not None else None
        beacon = self._beacon is not None and self._beacon.pattern is not None
        return Outputs(siren=siren, beacon=beacon)

    @property
    def button_pressed(self) -> bool:
        """The raw (undebounced) state of the ack button."""
        return self._button is not None and self._button.is_active

    @property
    def feedback_active(self) -> bool | None:
        """The raw state of the siren feedback input, or None when none is configured."""
        if self._feedback is None:
            return None
        return self._feedback.is_active

    def close(self) -> None:
        """Switch the relays off, then release every line (and a factory made here). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.off()
            for line in (self._siren, self._beacon, self._button, self._feedback):
                if line is None:
                    continue
                try:
                    line.close()
                except Exception:
                    log.exception("cannot close GPIO%d", line.pin)
            if self._owns_factory:
                try:
                    self._factory.close()
                except Exception:
                    log.exception("cannot close the GPIO pin factory")

    def __enter__(self) -> Hardware:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hardware {self.outputs!r}{' closed' if self._closed else ''}>"


def force_outputs_off(gpio: GpioConfig, *, pin_factory: Factory | None = None) -> list[str]:
    """Drive every relay pin to its off level and leave it driven; return what was done.

    This is ``polres-station outputs-off``, run by systemd ``ExecStopPost=`` after any stop,
    crash or watchdog kill. It needs nothing from the service (no state, no broker), opens
    each output with its configured polarity straight at the off level (``active_high: false``
    → HIGH), and tries every pin even if one fails; if any failed it raises
    :class:`HardwareError` listing all of them.

    The pins are left as outputs driven off rather than closed: gpiozero's ``close()`` turns a
    pin into an input with no pull (lgpio even disables the bias), which would let an
    active-low relay board's input float. When this process exits, Raspberry Pi OS kernels keep
    a released line's output level (``pinctrl_bcm2835.persist_gpio_outputs``, default on; not
    with ``dtparam=strict_gpiod`` or a mainline kernel, where the pin reverts to an input).
    The firmware ``gpio=`` lines rendered into ``firmware/`` set each relay pin to output-off at
    boot (and its pull), which is what holds the level from power-on until the service runs::

        >>> for line in force_outputs_off(config.gpio):
        ...     print(line)
        gpio.siren: GPIO17 driven high = off (active-low), left driven
        gpio.beacon: GPIO27 driven low = off (active-high), left driven
    """
    factory = pin_factory if pin_factory is not None else make_pin_factory(gpio.pin_factory)
    lines: list[str] = []
    failed = False
    for key, output in (("gpio.siren", gpio.siren), ("gpio.beacon", gpio.beacon)):
        level = not output.active_high  # the pin level that means "relay off"
        polarity = "active-high" if output.active_high else "active-low"
        try:
            # The pin API, not a DigitalOutputDevice: a device closes (and floats) its pin when
            # it is garbage-collected, a bare pin object does not. output_with_state() switches
            # the pin to output already at the level (lgpio: one claim; no glitch to "on").
            pin = factory.pin(output.pin)
            pin.output_with_state(level)
            lines.append(f"{key}: GPIO{output.pin} driven {'high' if level else 'low'} = off "
                         f"({polarity}), left driven")
        except Exception as exc:  # noqa: BLE001 — the other output is still driven off
            failed = True
            lines.append(f"{key}: GPIO{output.pin} could NOT be driven off ({polarity}): {exc}")
    # The factory is deliberately not closed: RPiGPIOFactory.close() runs GPIO.cleanup(), which
    # returns every pin it touched to an input. The process ends right after this anyway.
    if failed:
        raise HardwareError("; ".join(lines))
    return lines


class _translated:
    """Context manager: re-raise any non-HardwareError as HardwareError("<what>: <error>")."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, HardwareError) or not isinstance(exc, Exception):
            return
        raise HardwareError(f"{self.what}: {exc}") from exc


_T = TypeVar("_T")


def _open(key: str, pin: int, build: Callable[[], _T]) -> _T:
    """Build one line; any failure becomes HardwareError("<key> <pin>: <error>")."""
    try:
        return build()
    except Exception as exc:
        raise HardwareError(f"{key} {pin}: {exc}") from exc
