"""station.hardware against gpiozero's MockFactory (no hand-made fakes).

Pin histories are compared as ``[s.state for s in pin.states]``: ``MockPin.assert_states`` zips,
so extra or missing states pass silently. A MockPin starts as a floating input (False), so an
active-low output opened off shows ``[False, True]``: the input level, then driven HIGH.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from station.alarms import Outputs
from station.config import ButtonConfig, GpioConfig, InputPinConfig, OutputPinConfig, Pattern
from station.errors import HardwareError
from station.hardware import (
    STEADY,
    Hardware,
    InputLine,
    Relay,
    force_outputs_off,
    make_pin_factory,
)


def states(pin) -> list[bool]:
    return [s.state for s in pin.states]


def transitions(pin) -> int:
    return len(pin.states) - 1


@pytest.fixture
def mock_factory():
    factory = MockFactory()
    yield factory
    # Close whatever a failing test left open (relays off first), then forget all pins.
    with factory._res_lock:
        devices = {ref() for refs in factory._reservations.values() for ref in refs}
    for device in devices - {None}:
        device.close()
    factory.reset()
    factory.close()


class FakeClock:
    """A settable monotonic clock (a value source, not a GPIO fake)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def gpio(siren_high=True, beacon_high=True, *, siren=17, beacon=27, button=22, feedback=None,
         **kw) -> GpioConfig:
    return GpioConfig(
        pin_factory=kw.pop("pin_factory", "mock"),
        siren=OutputPinConfig(siren, active_high=siren_high),
        beacon=OutputPinConfig(beacon, active_high=beacon_high),
        ack_button=ButtonConfig(button, pull_up=kw.pop("button_pull_up", True)),
        siren_feedback=None if feedback is None else InputPinConfig(feedback, pull_up=True),
    )


# --- Relay ---------------------------------------------------------------------------------

def test_active_high_relay_starts_off_and_follows_polarity(mock_factory):
    relay = Relay(17, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    assert pin.function == "output"
    assert pin.state is False and relay.is_active is False and relay.pattern is None
    relay.on()
    assert pin.state is True and relay.is_active is True and relay.pattern == STEADY
    relay.set(None)
    assert pin.state is False and relay.is_active is False and relay.pattern is None
    assert states(pin) == [False, True, False]
    relay.close()


def test_active_low_relay_starts_off_with_pin_high_and_follows_polarity(mock_factory):
    relay = Relay(18, active_high=False, pin_factory=mock_factory)
    pin = mock_factory.pin(18)
    assert pin.function == "output"
    assert pin.state is True  # HIGH = relay off on an active-low board
    assert relay.is_active is False
    relay.on()
    assert pin.state is False and relay.is_active is True
    relay.set(None)
    assert pin.state is True and relay.is_active is False
    relay.off()  # already off: no edge
    assert states(pin) == [False, True, False, True]
    relay.close()


def test_continuous_pattern_is_steady_on(mock_factory):
    relay = Relay(17, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    relay.set(Pattern(1.0, 0.0))
    time.sleep(0.05)
    assert relay.pattern == Pattern(1.0, 0.0)
    assert relay.is_active
    assert states(pin) == [False, True]
    relay.set(Pattern(2.0, 0.0))  # another continuous pattern: still on, no edge
    relay.on()
    assert states(pin) == [False, True]
    relay.close()


def test_blinking_pattern_alternates_starting_on(mock_factory):
    relay = Relay(17, active_high=False, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    before = len(pin.states)
    relay.set(Pattern(0.05, 0.05))
    deadline = time.monotonic() + 5.0
    while transitions(pin) - (before - 1) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    relay.set(None)
    history = states(pin)[before - 1:]  # from the off level the pattern started at
    assert len(history) >= 4, history
    assert history[1] is False  # active-low: the first edge is ON (pin LOW)
    assert all(a != b for a, b in zip(history, history[1:])), history  # alternating
    assert pin.state is True and relay.pattern is None


def test_same_pattern_again_does_not_restart_cadence(mock_factory):
    relay = Relay(17, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    pattern = Pattern(0.05, 2.0)
    relay.set(pattern)
    time.sleep(0.25)  # well into the 2 s off phase
    assert states(pin) == [False, True, False]
    for _ in range(50):
        relay.set(Pattern(0.05, 2.0))  # equal, not identical: still a no-op
    time.sleep(0.05)
    assert states(pin) == [False, True, False]  # a restart would have switched it on again
    relay.set(Pattern(0.05, 1.0))  # a different pattern does restart, with the on phase
    deadline = time.monotonic() + 5.0
    while len(pin.states) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)  # the blink thread makes the first edge
    assert states(pin)[:4] == [False, True, False, True]
    relay.close()


def test_relay_close_turns_off_first_and_is_idempotent(mock_factory):
    relay = Relay(17, active_high=False, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    relay.set(Pattern(0.5, 0.5))
    relay.close()
    relay.close()
    assert relay.closed and relay.is_active is False and relay.pattern is None
    assert pin.state is True  # left at the off level
    assert states(pin)[-1] is True
    with pytest.raises(HardwareError, match="closed"):
        relay.on()
    Relay(17, pin_factory=mock_factory).close()  # the pin was released


# --- InputLine -----------------------------------------------------------------------------

def test_pull_up_line_is_active_low(mock_factory):
    clock = FakeClock()
    edges = []
    line = InputLine(22, pull_up=True, pin_factory=mock_factory,
                     on_change=lambda active, t: edges.append((active, t)), clock=clock)
    pin = mock_factory.pin(22)
    assert line.is_active is False
    pin.drive_low()
    assert edges == [(True, 1000.0)] and line.is_active is True
    clock.now = 1000.25
    pin.drive_high()
    assert edges == [(True, 1000.0), (False, 1000.25)] and line.is_active is False
    pin.drive_high()  # no edge
    assert len(edges) == 2
    line.close()
    line.close()
    assert line.is_active is False


def test_pull_down_line_is_active_high(mock_factory):
    clock = FakeClock(5.0)
    edges = []
    line = InputLine(23, pull_up=False, pin_factory=mock_factory,
                     on_change=lambda active, t: edges.append((active, t)), clock=clock)
    pin = mock_factory.pin(23)
    assert line.is_active is False
    pin.drive_high()
    clock.now = 5.5
    pin.drive_low()
    assert edges == [(True, 5.0), (False, 5.5)]
    line.close()


def test_every_raw_edge_is_reported_no_debounce_here(mock_factory):
    edges = []
    line = InputLine(22, pin_factory=mock_factory, on_change=lambda a, t: edges.append(a))
    pin = mock_factory.pin(22)
    for _ in range(5):  # a bouncing contact
        pin.drive_low()
        pin.drive_high()
    assert edges == [True, False] * 5
    line.close()


def test_callback_exception_is_logged_not_propagated(mock_factory, caplog):
    calls = []

    def broken(active, t):
        calls.append(active)
        raise RuntimeError("queue full")

    line = InputLine(22, pin_factory=mock_factory, on_change=broken)
    pin = mock_factory.pin(22)
    with caplog.at_level(logging.ERROR, logger="station.hardware"):
        pin.drive_low()
        pin.drive_high()
    assert calls == [True, False]
    records = [r for r in caplog.records if r.name == "station.hardware"]
    assert len(records) == 2 and "queue full" in records[0].exc_text
    line.close()


def test_line_without_callback_and_after_close_is_quiet(mock_factory):
    line = InputLine(22, pin_factory=mock_factory)
    mock_factory.pin(22).drive_low()
    assert line.is_active
    line.close()


# --- Hardware ------------------------------------------------------------------------------

def test_hardware_apply_drives_both_relays_idempotently(mock_factory):
    with Hardware(gpio(siren_high=False), pin_factory=mock_factory) as hw:
        siren, beacon = mock_factory.pin(17), mock_factory.pin(27)
        assert hw.outputs == Outputs()
        assert siren.state is True and beacon.state is False  # both off
        wanted = Outputs(siren=Pattern(1.0, 0.0), beacon=True)
        hw.apply(wanted)
        assert siren.state is False and beacon.state is True  # both on
        assert hw.outputs == wanted
        for _ in range(100):
            hw.apply(Outputs(siren=Pattern(1.0, 0.0), beacon=True))
        assert states(siren) == [False, True, False]
        assert states(beacon) == [False, True]
        hw.apply(Outputs(siren=None, beacon=True))  # siren stops, beacon stays
        assert siren.state is True and beacon.state is True
        hw.apply(Outputs())
        assert siren.state is True and beacon.state is False
        assert hw.outputs == Outputs()


def test_hardware_apply_blinking_siren(mock_factory):
    with Hardware(gpio(), pin_factory=mock_factory) as hw:
        hw.apply(Outputs(siren=Pattern(0.05, 0.05), beacon=True))
        siren = mock_factory.pin(17)
        deadline = time.monotonic() + 5.0
        while transitions(siren) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert transitions(siren) >= 3
        assert hw.outputs == Outputs(siren=Pattern(0.05, 0.05), beacon=True)


def test_hardware_close_turns_outputs_off(mock_factory):
    hw = Hardware(gpio(siren_high=False, beacon_high=False), pin_factory=mock_factory)
    hw.apply(Outputs(siren=Pattern(0.5, 0.5), beacon=True))
    siren, beacon = mock_factory.pin(17), mock_factory.pin(27)
    assert siren.state is False and beacon.state is False  # active-low: on
    hw.close()
    hw.close()
    assert siren.state is True and beacon.state is True  # off
    assert hw.closed and hw.outputs == Outputs()
    hw.off()  # never raises, even closed
    with pytest.raises(HardwareError):
        hw.apply(Outputs(beacon=True))


def test_hardware_off_is_idempotent(mock_factory):
    with Hardware(gpio(), pin_factory=mock_factory) as hw:
        hw.apply(Outputs(siren=STEADY, beacon=True))
        hw.off()
        hw.off()
        assert hw.outputs == Outputs()
        assert states(mock_factory.pin(17)) == [False, True, False]


def test_hardware_button_and_feedback(mock_factory):
    clock = FakeClock(42.0)
    pressed, feedback = [], []
    with Hardware(gpio(feedback=5), pin_factory=mock_factory, clock=clock,
                  on_button=lambda a, t: pressed.append((a, t)),
                  on_feedback=lambda a, t: feedback.append((a, t))) as hw:
        assert hw.button_pressed is False and hw.feedback_active is False
        mock_factory.pin(22).drive_low()
        assert hw.button_pressed is True and pressed == [(True, 42.0)]
        mock_factory.pin(5).drive_low()
        assert hw.feedback_active is True and feedback == [(True, 42.0)]
        mock_factory.pin(22).drive_high()
        assert pressed == [(True, 42.0), (False, 42.0)]
    assert hw.button_pressed is False


def test_hardware_without_feedback_reports_none(mock_factory):
    with Hardware(gpio(), pin_factory=mock_factory) as hw:
        assert hw.feedback_active is None and hw.feedback is None


def test_hardware_can_be_driven_from_another_thread(mock_factory):
    with Hardware(gpio(), pin_factory=mock_factory) as hw:
        worker = threading.Thread(target=hw.apply, args=(Outputs(siren=STEADY, beacon=True),))
        worker.start()
        worker.join(5)
        assert hw.outputs == Outputs(siren=STEADY, beacon=True)
        assert mock_factory.pin(17).state is True


def test_duplicate_pin_raises_and_leaves_siren_off(mock_factory):
    with pytest.raises(HardwareError, match=r"^gpio\.beacon\.pin 17: "):
        Hardware(gpio(siren_high=False, siren=17, beacon=17), pin_factory=mock_factory)
    siren = mock_factory.pin(17)
    assert siren.state is True  # active-low siren at its off level
    assert False not in states(siren)[1:]  # never driven on
    Relay(17, pin_factory=mock_factory).close()  # everything opened was released


def test_invalid_pin_raises_naming_key_and_closes_opened_lines(mock_factory):
    with pytest.raises(HardwareError, match=r"^gpio\.siren_feedback\.pin 99: "):
        Hardware(gpio(feedback=99), pin_factory=mock_factory)
    assert states(mock_factory.pin(17)) == [False]  # the siren never switched on
    for pin in (17, 27):
        Relay(pin, pin_factory=mock_factory).close()
    InputLine(22, pin_factory=mock_factory).close()


def test_button_on_a_relay_pin_is_refused(mock_factory):
    with pytest.raises(HardwareError, match=r"^gpio\.ack_button\.pin 27: "):
        Hardware(gpio(button=27), pin_factory=mock_factory)


def test_hardware_makes_its_factory_from_config():
    with Hardware(gpio(pin_factory="mock")) as hw:
        assert isinstance(hw.pin_factory, MockFactory)
        hw.apply(Outputs(beacon=True))
        assert hw.pin_factory.pin(27).state is True


# --- pin factories -------------------------------------------------------------------------

def test_make_pin_factory_mock():
    factory = make_pin_factory("mock")
    try:
        assert isinstance(factory, MockFactory)
    finally:
        factory.close()


def _without_gpio_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make lgpio and RPi.GPIO unimportable (a None in sys.modules fails the import), so the
    missing-library path is checked on a Pi too, where both are installed."""
    for module in ("lgpio", "RPi", "RPi.GPIO", "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio"):
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("name, library", [("lgpio", "lgpio"), ("rpigpio", "RPi.GPIO")])
def test_make_pin_factory_explicit_library_fails_loudly(name, library, monkeypatch):
    _without_gpio_libraries(monkeypatch)
    with pytest.raises(HardwareError) as caught:
        make_pin_factory(name)
    message = str(caught.value)
    assert library in message and "[pi]" in message


def test_make_pin_factory_auto_does_not_fall_back(monkeypatch):
    _without_gpio_libraries(monkeypatch)
    with pytest.raises(HardwareError, match=r"^no GPIO library usable on this machine; "
                                            r"set gpio.pin_factory: mock to run without a Pi"):
        make_pin_factory("auto")


def test_make_pin_factory_unknown_name():
    with pytest.raises(HardwareError, match="native"):
        make_pin_factory("native")


# --- force_outputs_off ---------------------------------------------------------------------

def test_force_outputs_off_leaves_pins_driven_at_off_level(mock_factory):
    lines = force_outputs_off(gpio(siren_high=False, beacon_high=True), pin_factory=mock_factory)
    siren, beacon = mock_factory.pin(17), mock_factory.pin(27)
    assert siren.function == "output" and siren.state is True  # active-low off = HIGH
    assert beacon.function == "output" and beacon.state is False
    assert len(lines) == 2
    assert lines[0].startswith("gpio.siren: GPIO17 driven high") and "active-low" in lines[0]
    assert lines[1].startswith("gpio.beacon: GPIO27 driven low")


def test_force_outputs_off_after_a_crash_with_siren_on(mock_factory):
    cfg = gpio(siren_high=False, beacon_high=False)
    crashed = Hardware(cfg, pin_factory=mock_factory)  # never closed: the service "died"
    crashed.apply(Outputs(siren=STEADY, beacon=True))
    assert mock_factory.pin(17).state is False and mock_factory.pin(27).state is False
    force_outputs_off(cfg, pin_factory=mock_factory)
    assert mock_factory.pin(17).state is True and mock_factory.pin(27).state is True
    assert mock_factory.pin(17).function == "output"


def test_force_outputs_off_tries_every_pin_and_reports_failures(mock_factory):
    with pytest.raises(HardwareError) as caught:
        force_outputs_off(gpio(siren=99, beacon_high=False), pin_factory=mock_factory)
    message = str(caught.value)
    assert "gpio.siren: GPIO99 could NOT be driven off" in message
    assert "gpio.beacon: GPIO27 driven high" in message
    assert mock_factory.pin(27).state is True
