"""The wrist force/torque sensor's errors: white noise on every sample, a slowly drifting zero, quantisation.

Figures: the Robotiq FT 300-S datasheet (the wrist sensor the rig's firmware bridge speaks to) gives its
signal noise as a standard deviation at no load, at its 100 Hz output: 0.1 N on Fx, Fy and Fz, 0.005 N·m on
Mx and My, 0.003 N·m on Mz; its stream carries forces in 0.01 N and torques in 0.001 N·m steps. A sample
taken at another rate gets the same noise density (sd scaled by sqrt(rate / 100 Hz)). The datasheet states
no zero drift: the zero here wanders as an Ornstein-Uhlenbeck process with half the white noise's sd and a
30 s correlation time (an assumption, stated as such): a reading less its baseline taken seconds before
keeps a few hundredths of a newton of it, which averaging more samples cannot remove.

Seeded per world, so that the same world and the same commands read the same numbers; in a sealed world (the
world builder holds a secret: sim/secret.py) the stream is keyed through that secret, so that whoever knows the
seed can predict the noise no more than the hidden properties.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from loopylab.world.scene import keyed_rng

DATASHEET_HZ = 100.0


@dataclass(frozen=True)
class FTNoiseSpec:
    force_sd: tuple[float, float, float] = (0.1, 0.1, 0.1)  # N, 1 sigma per sample at 100 Hz
    torque_sd: tuple[float, float, float] = (0.005, 0.005, 0.003)  # N·m
    drift_ratio: float = 0.5  # the zero's stationary sd, as a share of the white noise's
    drift_tau_s: float = 30.0  # its correlation time
    force_step: float = 0.01  # N: the stream's resolution
    torque_step: float = 0.001  # N·m


FT300 = FTNoiseSpec()


def sensor_stream(spec, name: str, code: int, secret: bytes | str | None = None) -> np.random.Generator:
    """A sensor's random stream of a world (`name`, and `code` for the public worlds' stream): keyed through the
    world builder's `secret` where it holds one (world/scene.keyed_rng: nobody else can reproduce the noise), else by
    the world's seed, or by its whole spec where it has none."""
    key = spec.seed
    if key is None:
        digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).digest()
        key = int.from_bytes(digest[:8], "little")
    if secret:
        return keyed_rng(secret, int(key), f"sensor/{name}")
    return np.random.default_rng([int(key), code])


def world_stream(spec, secret: bytes | str | None = None) -> np.random.Generator:
    """The wrist sensor's random stream of a world (see `sensor_stream`)."""
    return sensor_stream(spec, "ft", 0xF7, secret)


class FTNoise:
    """Adds the sensor's errors to the true wrench, one sample at a time, in sim time."""

    def __init__(self, spec: FTNoiseSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self._white = np.array([*spec.force_sd, *spec.torque_sd])
        self._drift = spec.drift_ratio * self._white
        self._step = np.array([spec.force_step] * 3 + [spec.torque_step] * 3)
        self.bias = self._drift * rng.standard_normal(6)  # the zero as it stands when the world is built
        self._t: float | None = None

    def sample(self, force: np.ndarray, torque: np.ndarray, t: float, period: float) -> tuple[np.ndarray, np.ndarray]:
        """The sensor's reading at sim time `t` of a sample averaged over `period` seconds."""
        z = self.rng.standard_normal(12)
        if self._t is not None and t > self._t:
            a = math.exp(-(t - self._t) / self.spec.drift_tau_s)  # the exact OU step over the elapsed time
            self.bias = a * self.bias + self._drift * math.sqrt(1.0 - a * a) * z[6:]
        self._t = t
        white = self._white / math.sqrt(DATASHEET_HZ * max(period, 1e-6)) * z[:6]
        w = np.concatenate([force, torque]) + self.bias + white
        w = np.round(w / self._step) * self._step
        return w[:3], w[3:]
