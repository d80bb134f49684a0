"""Bus messages the hardware drivers add to the contract (registered with the bus codec on import).

`DeviceFault` (defined in `loopylab.bus.messages`, so that the gate can read it; re-exported here) on
`<device>/fault` (latched): the arm driver publishes `arm/fault`, the MCU bridge `mcu/fault`, the Modbus
devices `<name>/fault`. `active=False` says the fault has cleared.
`Readings` carries named scalar values (analog inputs, Modbus registers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loopylab.bus import DeviceFault, Message, register_message

__all__ = ["DeviceFault", "Readings"]


@register_message
@dataclass
class Readings(Message):
    name: list[str] = field(default_factory=list)
    value: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        self.value = np.asarray(self.value, dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.name, self.value.tolist()))
