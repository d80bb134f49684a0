"""Image degradations for the sim bench: sensor noise, defocus blur, lighting changes (seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class ImageAugment:
    noise_sigma: float = 0.0  # grey levels (0..255), Gaussian, per pixel and channel
    blur_px: float = 0.0  # Gaussian blur sigma, pixels
    lighting: float = 0.0  # max relative brightness change per frame (0.2 = +-20 %)
    gamma: float = 0.0  # max gamma change per frame (0.2 = gamma in 0.8..1.2)
    seed: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    @property
    def active(self) -> bool:
        return any((self.noise_sigma, self.blur_px, self.lighting, self.gamma))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if not self.active:
            return rgb
        img = rgb.astype(np.float32)
        if self.blur_px > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.blur_px)
        if self.gamma > 0:
            g = 1.0 + self.rng.uniform(-self.gamma, self.gamma)
            img = 255.0 * (img / 255.0) ** g
        if self.lighting > 0:
            img *= 1.0 + self.rng.uniform(-self.lighting, self.lighting)
        if self.noise_sigma > 0:
            img += self.rng.normal(0.0, self.noise_sigma, img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)
