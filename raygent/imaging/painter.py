"""Compose a picture of a `Scene` procedurally with Pillow (deterministic for a seed).

Layers, back to front: the sky (a gradient by time of day and weather, with sun / moon / stars /
clouds / rainbow), the world (far hills or mountains or a skyline or the sea, the ground, water,
trees, buildings and props; graded by the light: dark blue at night, warm at sunset), the
characters (graded more gently so that they stay readable), the lights (lit windows, lanterns,
a campfire, glows; never darkened) and the weather (rain, snow, fog). Everything is drawn at twice
the size and scaled down, which smooths the edges.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from raygent.imaging.figures import FIGURES, FRONT_FACING, RGB, Pen, mix, shade
from raygent.imaging.scene import COLOURS, Scene

SKIES: dict[str, list[tuple[float, RGB]]] = {
    "day": [(0.0, (70, 140, 225)), (0.7, (150, 200, 240)), (1.0, (205, 230, 245))],
    "night": [(0.0, (6, 9, 28)), (0.6, (20, 30, 72)), (1.0, (42, 58, 108))],
    "sunset": [(0.0, (60, 50, 125)), (0.4, (200, 95, 110)), (0.75, (245, 150, 70)), (1.0, (255, 205, 110))],
    "dawn": [(0.0, (110, 140, 205)), (0.55, (235, 165, 180)), (1.0, (255, 218, 170))],
}
#: colour multipliers for the world and for the characters, by time of day
GRADES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "day": ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    "night": ((0.33, 0.4, 0.66), (0.7, 0.72, 0.9)),
    "sunset": ((0.95, 0.72, 0.62), (1.0, 0.88, 0.8)),
    "dawn": ((0.95, 0.82, 0.85), (1.0, 0.92, 0.92)),
}
GROUND: dict[str, RGB] = {
    "forest": (62, 120, 55), "meadow": (112, 178, 80), "garden": (100, 172, 76), "mountain": (96, 145, 82),
    "city": (128, 128, 132), "village": (118, 172, 86), "desert": (226, 196, 128), "sea": (236, 216, 166),
    "house": (112, 178, 80), "space": (150, 150, 160), "underwater": (212, 192, 142), "room": (160, 110, 70),
}
HORIZON = {"forest": 0.6, "meadow": 0.6, "garden": 0.62, "mountain": 0.62, "city": 0.66, "village": 0.6,
           "desert": 0.6, "sea": 0.52, "house": 0.6, "space": 0.76, "underwater": 0.82, "room": 0.7}
LEAF: list[RGB] = [(52, 120, 60), (70, 140, 62), (40, 100, 58), (88, 150, 70)]
PINE: list[RGB] = [(30, 92, 60), (38, 104, 66), (26, 80, 52)]
FLOWER: list[RGB] = [(240, 80, 90), (250, 210, 60), (245, 140, 200), (150, 110, 230), (250, 250, 250)]


def _gradient(h: int, w: int, stops: list[tuple[float, RGB]], top: int = 0, bottom: int | None = None) -> np.ndarray:
    bottom = h if bottom is None else bottom
    t = np.clip((np.arange(h, dtype=np.float32) - top) / max(1, bottom - top), 0, 1)
    pos = np.array([s for s, _ in stops], dtype=np.float32)
    cols = np.array([c for _, c in stops], dtype=np.float32)
    rows = np.stack([np.interp(t, pos, cols[:, k]) for k in range(3)], axis=1)
    return np.repeat(rows[:, None, :], w, axis=1)


class _Painter:
    def __init__(self, scene: Scene, width: int, height: int, seed: int, supersample: int = 2):
        self.scene, self.rng = scene, random.Random(seed)
        self.ss = supersample
        self.W, self.H = width * supersample, height * supersample
        self.out_size = (width, height)
        self.horizon = HORIZON.get(scene.setting, 0.6) * self.H
        self.time = scene.time_of_day
        self.night = self.time == "night"
        self.weather = scene.weather
        self.world = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        self.actors = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        self.lights = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        self.wd, self.ad, self.ld = (ImageDraw.Draw(self.world), ImageDraw.Draw(self.actors),
                                     ImageDraw.Draw(self.lights))
        self.glows: list[tuple[float, float, float, RGB]] = []  # x, y, radius, colour: lamps, fire, windows
        self.sky_glows: list[tuple[float, float, float, RGB]] = []  # sun, moon, nebulae: behind the world
        self.water: list[tuple[str, Any]] = []  # where fish can swim: ("band", (y0, y1)) / ("ellipse", box) / path
        self.river_side = self.rng.choice((-1, 1))  # the river ends at the right (1) or left (-1)
        self.sky_img: Image.Image | None = None

    # -- helpers --------------------------------------------------------------------------
    def lw(self, k: float = 1.0) -> int:
        return max(1, round(self.W / 400 * k))

    def ground_colour(self) -> RGB:
        if self.weather == "snow" and self.scene.setting not in ("room", "underwater", "space", "city"):
            return (236, 240, 246)
        return GROUND.get(self.scene.setting, GROUND["meadow"])

    def sky_colour_at(self, y: float) -> RGB:
        assert self.sky_img is not None
        return self.sky_img.getpixel((self.W // 2, int(min(max(y, 0), self.H - 1))))[:3]

    # -- sky --------------------------------------------------------------------------------
    def paint_sky(self) -> None:
        s = self.scene
        if s.setting == "underwater":
            arr = _gradient(self.H, self.W, [(0, (90, 190, 220)), (0.5, (30, 120, 180)), (1, (15, 60, 110))])
        elif s.setting == "space":
            arr = _gradient(self.H, self.W, [(0, (4, 4, 16)), (0.6, (14, 10, 40)), (1, (30, 20, 60))], 0,
                            int(self.horizon))
        else:
            stops = SKIES[self.time]
            grey = {"cloudy": 0.45, "rain": 0.6, "storm": 0.72, "fog": 0.35, "snow": 0.3}.get(self.weather, 0.0)
            if grey:
                target = (95, 100, 110) if self.weather == "storm" else (175, 180, 188)
                if self.night:
                    target = (40, 42, 50)
                stops = [(p, mix(c, target, grey)) for p, c in stops]
            arr = _gradient(self.H, self.W, stops, 0, int(self.horizon))
        self.sky_img = Image.fromarray(arr.astype(np.uint8), "RGB").convert("RGBA")
        d = ImageDraw.Draw(self.sky_img)
        if s.setting == "underwater":
            self.paint_underwater_sky(d)
            return
        clear = self.weather in ("clear", "snow", "fog") or s.setting == "space"
        if self.night or s.setting == "space" or ("star" in s.objects and self.time != "day"):
            n = 140 if s.setting == "space" else (90 if clear else 25)
            for _ in range(n):
                x, y = self.rng.uniform(0, self.W), self.rng.uniform(0, self.horizon * 0.92)
                r = self.rng.choice((1.0, 1.0, 1.5, 2.0)) * self.ss
                d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 250, 225))
            for _ in range(6 if clear else 2):  # a few sparkling ones
                x, y = self.rng.uniform(0.05, 0.95) * self.W, self.rng.uniform(0.05, 0.5) * self.horizon
                r = self.rng.uniform(5, 9) * self.ss
                d.polygon([(x, y - r), (x + r * 0.25, y - r * 0.25), (x + r, y), (x + r * 0.25, y + r * 0.25),
                           (x, y + r), (x - r * 0.25, y + r * 0.25), (x - r, y), (x - r * 0.25, y - r * 0.25)],
                          fill=(255, 248, 200))
        if s.setting == "space":
            self.paint_space_sky(d)
        if self.night and (clear or "moon" in s.objects) and s.setting != "room":
            self.paint_moon(d)
        elif self.time == "day" and self.weather in ("clear", "snow") and s.setting not in ("room", "space"):
            self.paint_sun(d, low=False)
        elif self.time in ("sunset", "dawn") and self.weather not in ("rain", "storm") and s.setting != "room":
            self.paint_sun(d, low=True)
        if "moon" in s.objects and not self.night and s.setting not in ("room", "space"):
            x, y, r = self.W * 0.78, self.horizon * 0.25, self.W * 0.035
            d.ellipse((x - r, y - r, x + r, y + r), fill=(240, 240, 235, 255))
        if "rainbow" in s.objects and not self.night:
            self.paint_rainbow()
        n_clouds = {"cloudy": 7, "rain": 9, "storm": 9, "fog": 3}.get(self.weather, 0)
        if "cloud" in s.objects or (self.weather == "clear" and self.time == "day" and s.setting != "space"):
            n_clouds = max(n_clouds, 3 if "cloud" in s.objects else 2)
        if s.setting != "space":
            for _ in range(n_clouds):
                self.paint_cloud(d, self.rng.uniform(0.05, 0.95) * self.W, self.rng.uniform(0.08, 0.55) * self.horizon,
                                 self.rng.uniform(0.09, 0.16) * self.W)
        for obj in ("planet", "balloon", "kite"):
            if obj in s.objects and not (obj == "planet" and s.setting == "space"):
                getattr(self, f"paint_{obj}")(d)

    def paint_moon(self, d: ImageDraw.ImageDraw) -> None:
        x, y, r = self.W * self.rng.uniform(0.68, 0.84), self.horizon * self.rng.uniform(0.2, 0.32), self.W * 0.065
        self.sky_glows.append((x, y, r * 2.2, (70, 78, 110)))
        d.ellipse((x - r, y - r, x + r, y + r), fill=(250, 245, 215))
        for dx, dy, cr in ((-0.3, -0.2, 0.22), (0.25, 0.3, 0.16), (0.35, -0.35, 0.1), (-0.1, 0.45, 0.09)):
            cx, cy, rr = x + dx * r, y + dy * r, cr * r
            d.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=(228, 222, 190))
        self.moon = (x, y, r)

    def paint_sun(self, d: ImageDraw.ImageDraw, low: bool) -> None:
        if low:
            x, y, r = self.W * self.rng.uniform(0.3, 0.7), self.horizon - self.H * 0.02, self.W * 0.11
            self.sky_glows.append((x, y, r * 2.4, (110, 65, 30)))
            d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 215, 120) if self.time == "sunset" else (255, 225, 160))
        else:
            x, y, r = self.W * self.rng.uniform(0.12, 0.3), self.horizon * 0.22, self.W * 0.06
            ray = (255, 225, 90)
            for i in range(12):
                a = math.radians(i * 30 + 15)
                d.line([(x + math.cos(a) * r * 1.3, y + math.sin(a) * r * 1.3),
                        (x + math.cos(a) * r * 1.8, y + math.sin(a) * r * 1.8)], fill=ray, width=self.lw(2.2))
            d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 220, 70), outline=(245, 170, 40), width=self.lw(1.5))
        self.sun = (x, y, r)

    def paint_cloud(self, d: ImageDraw.ImageDraw, x: float, y: float, w: float) -> None:
        dark = self.weather in ("rain", "storm", "cloudy")
        base = (200, 202, 210) if not dark else ((120, 122, 132) if self.weather == "storm" else (168, 170, 180))
        if self.night:
            base = mix(base, (40, 45, 70), 0.6)
        elif self.time == "sunset":
            base = mix(base, (250, 170, 150), 0.35)
        top = shade(base, 1.25)
        for i in range(6):
            cx = x + (i - 2.5) * w * 0.28 + self.rng.uniform(-0.05, 0.05) * w
            r = w * (0.32 if 1 <= i <= 4 else 0.22) * self.rng.uniform(0.85, 1.15)
            cy = y - (r * 0.5 if 1 <= i <= 4 else 0)
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=base)
            d.ellipse((cx - r * 0.8, cy - r * 0.9, cx + r * 0.7, cy + r * 0.5), fill=top)
        d.rectangle((x - w * 0.75, y - w * 0.05, x + w * 0.75, y + w * 0.18), fill=base)

    def paint_rainbow(self) -> None:
        layer = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        cx, cy, r = self.W * self.rng.uniform(0.4, 0.6), self.horizon, self.W * 0.42
        band = self.W * 0.012
        for i, col in enumerate([(230, 60, 60), (245, 150, 50), (245, 225, 70), (80, 190, 80), (70, 130, 230),
                                 (90, 70, 180), (150, 80, 200)]):
            rr = r - i * band
            d.arc((cx - rr, cy - rr, cx + rr, cy + rr), 180, 360, fill=col + (150,), width=int(band) + 1)
        assert self.sky_img is not None
        self.sky_img.alpha_composite(layer)

    def paint_planet(self, d: ImageDraw.ImageDraw, x: float | None = None, y: float | None = None,
                     r: float | None = None, colour: RGB = (210, 150, 90)) -> None:
        x = self.W * 0.25 if x is None else x
        y = self.horizon * 0.3 if y is None else y
        r = self.W * 0.07 if r is None else r
        d.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=shade(colour, 0.6), width=self.lw())
        for k in (-0.35, 0.1, 0.45):
            d.line([(x - r * 0.9, y + k * r), (x + r * 0.9, y + k * r)], fill=shade(colour, 0.85), width=self.lw(2))
        d.arc((x - r * 1.8, y - r * 0.45, x + r * 1.8, y + r * 0.45), -10, 190, fill=(235, 220, 180),
              width=self.lw(2.5))

    def paint_balloon(self, d: ImageDraw.ImageDraw) -> None:
        x0, y0 = self.W * self.rng.uniform(0.6, 0.8), self.horizon * 0.45
        for i, col in enumerate([(235, 60, 70), (250, 200, 50), (70, 140, 230)]):
            x, y, r = x0 + (i - 1) * self.W * 0.045, y0 - (i % 2) * self.W * 0.04, self.W * 0.035
            d.line([(x, y + r * 1.2), (x0, y0 + self.W * 0.16)], fill=(90, 90, 90), width=self.lw(0.8))
            d.ellipse((x - r, y - r * 1.2, x + r, y + r * 1.2), fill=col, outline=shade(col, 0.5), width=self.lw())
            d.ellipse((x - r * 0.5, y - r * 0.8, x - r * 0.2, y - r * 0.3), fill=shade(col, 1.5))

    def paint_kite(self, d: ImageDraw.ImageDraw) -> None:
        x, y, r = self.W * self.rng.uniform(0.2, 0.4), self.horizon * 0.3, self.W * 0.05
        col = (235, 70, 80)
        d.polygon([(x, y - r * 1.3), (x + r, y), (x, y + r * 1.5), (x - r, y)], fill=col, outline=shade(col, 0.5),
                  width=self.lw())
        d.line([(x, y - r * 1.3), (x, y + r * 1.5)], fill=(250, 230, 120), width=self.lw())
        d.line([(x - r, y), (x + r, y)], fill=(250, 230, 120), width=self.lw())
        pts = [(x + i * r * 0.3, y + r * 1.5 + i * r * 0.5 + (r * 0.25 if i % 2 else 0)) for i in range(8)]
        d.line(pts, fill=(90, 90, 90), width=self.lw(0.8))
        for px, py in pts[1::2]:
            d.polygon([(px - r * 0.15, py), (px, py - r * 0.12), (px + r * 0.15, py), (px, py + r * 0.12)],
                      fill=(250, 200, 60))
        d.line([(x, y), (self.W * 0.5, self.H * 0.8)], fill=(240, 240, 240), width=self.lw(0.5))

    def paint_space_sky(self, d: ImageDraw.ImageDraw) -> None:
        for _ in range(3):  # soft nebula blobs
            x, y, r = self.rng.uniform(0.1, 0.9) * self.W, self.rng.uniform(0.1, 0.6) * self.horizon, self.W * 0.12
            col = self.rng.choice([(80, 40, 120), (40, 60, 130), (110, 40, 90)])
            self.sky_glows.append((x, y, r, col))
        self.paint_planet(d, self.W * 0.22, self.horizon * 0.3, self.W * 0.08)
        x, y, r = self.W * 0.8, self.horizon * 0.18, self.W * 0.05  # the Earth
        d.ellipse((x - r, y - r, x + r, y + r), fill=(60, 120, 220), outline=(30, 60, 120), width=self.lw())
        for dx, dy, rx, ry in ((-0.3, -0.2, 0.35, 0.25), (0.3, 0.3, 0.3, 0.2)):
            d.ellipse((x + (dx - rx) * r, y + (dy - ry) * r, x + (dx + rx) * r, y + (dy + ry) * r), fill=(80, 170, 80))

    def paint_underwater_sky(self, d: ImageDraw.ImageDraw) -> None:
        layer = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        ld = ImageDraw.Draw(layer)
        for _ in range(5):  # light rays
            x = self.rng.uniform(0.1, 0.9) * self.W
            w = self.rng.uniform(0.03, 0.07) * self.W
            ld.polygon([(x - w, 0), (x + w, 0), (x + w * 3 - self.W * 0.1, self.H * 0.8),
                        (x - w - self.W * 0.1, self.H * 0.8)], fill=(200, 240, 255, 40))
        assert self.sky_img is not None
        self.sky_img.alpha_composite(layer)
        self.water.append(("band", (self.H * 0.15, self.H * 0.7)))

    # -- world ----------------------------------------------------------------------------
    def paint_world(self) -> None:
        s = self.scene
        getattr(self, f"setting_{s.setting}", self.setting_meadow)()
        if "river" in s.objects and s.setting not in ("space", "underwater", "room", "sea"):
            self.paint_river()
        if "lake" in s.objects and s.setting not in ("space", "underwater", "room"):
            self.paint_lake()
        if any(c.kind == "fish" for c in s.characters) and not self.water and s.setting not in ("room",):
            self.paint_lake()
        if "castle" in s.objects and s.setting not in ("space", "underwater", "room"):
            self.paint_castle(self.W * self.rng.uniform(0.35, 0.65), self.horizon + self.H * 0.03, self.W * 0.3)
        if "house" in s.objects and s.setting not in ("space", "underwater", "room", "village", "city"):
            side = -self.river_side
            self.paint_house(self.W * (0.5 + side * 0.28), self.horizon + self.H * 0.1, self.W * 0.24)
        if "tent" in s.objects:
            self.paint_tent(self.W * (0.5 + self.river_side * 0.25), self.horizon + self.H * 0.12, self.W * 0.2)
        if "bridge" in s.objects and self.river_path:
            self.paint_bridge()
        if "boat" in s.objects:
            self.paint_boat()
        if "tree" in s.objects and s.setting not in ("forest", "space", "underwater", "room"):
            side = self.river_side if "house" in s.objects else -self.river_side
            self.paint_broadleaf(self.wd, self.W * (0.5 + side * 0.38), self.H * 0.97, self.H * 0.6)
        if "rocket" in s.objects and s.setting != "space":
            self.paint_rocket(self.W * 0.9, self.H * 0.92, self.H * 0.3, angle=0)
        if "cactus" in s.objects and s.setting != "desert":
            self.paint_cactus(self.W * 0.1, self.H * 0.95, self.H * 0.22)
        self.paint_foreground()

    river_path: list[tuple[float, float, float]] = []

    def setting_meadow(self) -> None:
        d, h = self.wd, self.horizon
        for k, (dy, col) in enumerate(((0.0, (130, 185, 105)), (0.05, (118, 178, 90)))):
            far = mix(col, self.sky_colour_at(h - 1), 0.25 if k == 0 else 0.1)
            pts = [(0, h + dy * self.H)]
            phase = self.rng.uniform(0, 6.28)
            for i in range(41):
                x = self.W * i / 40
                pts.append((x, h + dy * self.H - self.H * (0.05 + 0.04 * math.sin(phase + i * 0.35 + k))))
            pts += [(self.W, self.H), (0, self.H)]
            d.polygon(pts, fill=far)
        d.rectangle((0, h + self.H * 0.08, self.W, self.H), fill=self.ground_colour())
        if self.weather != "snow":
            for _ in range(2):
                x = self.rng.choice((0.1, 0.9)) * self.W + self.rng.uniform(-0.05, 0.05) * self.W
                self.paint_broadleaf(d, x, h + self.H * 0.04, self.H * 0.16)
        if self.weather == "snow":
            self.whiten_ground()

    def setting_house(self) -> None:
        self.setting_meadow()

    def setting_garden(self) -> None:
        self.setting_meadow()
        d, y = self.wd, self.horizon + self.H * 0.14
        for _ in range(5):  # bushes behind the fence
            x, r = self.rng.uniform(0, 1) * self.W, self.W * self.rng.uniform(0.05, 0.08)
            col = self.rng.choice(LEAF)
            d.ellipse((x - r, y - r * 1.4, x + r, y + r * 0.2), fill=col, outline=shade(col, 0.6), width=self.lw())
        fence = (245, 240, 230)
        step = self.W / 22
        for i in range(23):
            x = i * step
            d.polygon([(x - step * 0.3, y + self.H * 0.02), (x - step * 0.3, y - self.H * 0.07), (x, y - self.H * 0.09),
                       (x + step * 0.3, y - self.H * 0.07), (x + step * 0.3, y + self.H * 0.02)], fill=fence,
                      outline=shade(fence, 0.6), width=self.lw())
        for k in (0.055, 0.0):
            d.rectangle((0, y - self.H * k - self.H * 0.008, self.W, y - self.H * k + self.H * 0.008), fill=fence,
                        outline=shade(fence, 0.6), width=self.lw(0.7))
        for _ in range(14):
            self.paint_flower(d, self.rng.uniform(0, 1) * self.W, y + self.H * self.rng.uniform(0.03, 0.08),
                              self.H * 0.05)

    def setting_forest(self) -> None:
        d, h = self.wd, self.horizon
        far = mix((40, 95, 60), self.sky_colour_at(h - 1), 0.35)
        d.rectangle((0, h - self.H * 0.02, self.W, self.H), fill=far)
        x = -self.W * 0.02
        while x < self.W * 1.02:  # a far tree line
            th = self.H * self.rng.uniform(0.08, 0.15)
            tw = th * 0.45
            d.polygon([(x - tw, h), (x, h - th), (x + tw, h)], fill=shade(far, self.rng.uniform(0.85, 1.05)))
            x += tw * self.rng.uniform(0.7, 1.1)
        d.rectangle((0, h, self.W, self.H), fill=self.ground_colour())
        if self.weather == "snow":
            self.whiten_ground()
        trees = []
        for _ in range(9):  # middle distance, leaving a clearing in the middle
            x = self.rng.choice((self.rng.uniform(-0.02, 0.33), self.rng.uniform(0.67, 1.02))) * self.W
            y = h + self.H * self.rng.uniform(0.01, 0.1)
            trees.append((y, x, self.H * self.rng.uniform(0.22, 0.34) * (0.6 + (y - h) / self.H * 3)))
        for _ in range(3):
            x = self.rng.uniform(0.35, 0.65) * self.W
            trees.append((h + self.H * 0.005, x, self.H * self.rng.uniform(0.14, 0.2)))
        for y, x, th in sorted(trees):
            if self.rng.random() < 0.6:
                self.paint_pine(d, x, y, th)
            else:
                self.paint_broadleaf(d, x, y, th)
        for side in (-1, 1):  # big trees framing the picture
            self.paint_broadleaf(d, self.W * (0.5 + side * self.rng.uniform(0.47, 0.52)), self.H * 1.02,
                                 self.H * self.rng.uniform(0.62, 0.74))

    def setting_mountain(self) -> None:
        d, h = self.wd, self.horizon
        peaks = sorted([(self.rng.uniform(-0.1, 1.1) * self.W, self.H * self.rng.uniform(0.22, 0.4)) for _ in range(5)],
                       key=lambda p: -p[1])
        for i, (x, ph) in enumerate(peaks):
            col = mix((110, 120, 150), self.sky_colour_at(h - 1), 0.35 - i * 0.06)
            w = ph * self.rng.uniform(1.1, 1.5)
            top = (x, h - ph)
            d.polygon([(x - w, h + 2), top, (x + w, h + 2)], fill=col, outline=shade(col, 0.7), width=self.lw())
            cap = 0.28
            d.polygon([(x - w * cap, h - ph * (1 - cap)), top, (x + w * cap, h - ph * (1 - cap)),
                       (x + w * cap * 0.4, h - ph * (1 - cap) + ph * 0.05), (x, h - ph * (1 - cap)),
                       (x - w * cap * 0.5, h - ph * (1 - cap) + ph * 0.06)], fill=(245, 248, 252))
        d.rectangle((0, h, self.W, self.H), fill=self.ground_colour())
        if self.weather == "snow":
            self.whiten_ground()
        for _ in range(7):
            x = self.rng.choice((self.rng.uniform(0, 0.3), self.rng.uniform(0.7, 1))) * self.W
            self.paint_pine(d, x, h + self.H * self.rng.uniform(0.0, 0.06), self.H * self.rng.uniform(0.1, 0.18))

    def setting_sea(self) -> None:
        d, h = self.wd, self.horizon
        shore = self.H * 0.74
        sea = [(0, (40, 110, 175)), (1, (70, 160, 200))]
        if self.night:
            sea = [(0, (30, 60, 110)), (1, (50, 90, 140))]
        arr = _gradient(int(shore - h) + 1, self.W, sea)
        self.world.paste(Image.fromarray(arr.astype(np.uint8), "RGB").convert("RGBA"), (0, int(h)))
        for _ in range(40):
            y = self.rng.uniform(h + 4, shore - 4)
            x = self.rng.uniform(0, self.W)
            w = self.W * 0.03 * (0.4 + (y - h) / (shore - h))
            d.arc((x - w, y - w * 0.25, x + w, y + w * 0.25), 200, 340, fill=(210, 235, 250), width=self.lw(0.8))
        self.water.append(("band", (h + self.H * 0.04, shore - self.H * 0.03)))
        pts = [(0, shore)]
        for i in range(21):
            pts.append((self.W * i / 20, shore + self.H * 0.012 * math.sin(i * 0.9)))
        pts += [(self.W, self.H), (0, self.H)]
        d.polygon(pts, fill=self.ground_colour())
        d.line(pts[1:-2], fill=(250, 250, 245), width=self.lw(2))
        self.reflect_x = None

    def setting_city(self) -> None:
        d, h = self.wd, self.horizon
        x = -self.W * 0.02
        while x < self.W:
            bw = self.W * self.rng.uniform(0.08, 0.15)
            bh = self.H * self.rng.uniform(0.18, 0.46)
            col = self.rng.choice([(120, 130, 150), (150, 140, 130), (100, 110, 130), (170, 160, 150), (130, 110, 100)])
            d.rectangle((x, h - bh, x + bw, h), fill=col, outline=shade(col, 0.6), width=self.lw())
            ww, wh = bw / 7, self.H * 0.022
            for wy in np.arange(h - bh + wh, h - wh * 1.5, wh * 2):
                for wx in np.arange(x + ww, x + bw - ww, ww * 2):
                    lit = self.night and self.rng.random() < 0.55
                    box = (wx, wy, wx + ww, wy + wh)
                    if lit:
                        self.ld.rectangle(box, fill=(255, 220, 120, 255))
                    else:
                        d.rectangle(box, fill=(170, 200, 225) if not self.night else (40, 50, 70))
            x += bw * self.rng.uniform(1.0, 1.15)
        d.rectangle((0, h, self.W, self.H), fill=(150, 150, 155))
        road_top = h + (self.H - h) * 0.25
        d.rectangle((0, road_top, self.W, road_top + self.H * 0.12), fill=(70, 70, 75))
        for i in range(0, 12):
            x = i * self.W / 10
            d.rectangle((x, road_top + self.H * 0.055, x + self.W * 0.05, road_top + self.H * 0.065),
                        fill=(240, 230, 180))
        for x in (0.2, 0.8):  # street lamps
            self.paint_lamp(self.W * x, road_top - self.H * 0.005, self.H * 0.25)

    def setting_village(self) -> None:
        self.setting_meadow()
        for i in range(4):
            x = self.W * (0.12 + i * 0.25 + self.rng.uniform(-0.04, 0.04))
            y = self.horizon + self.H * self.rng.uniform(0.02, 0.06)
            self.paint_house(x, y, self.W * self.rng.uniform(0.12, 0.16))

    def setting_desert(self) -> None:
        d, h = self.wd, self.horizon
        for k, col in enumerate([(230, 190, 120), (236, 200, 130), (226, 196, 128)]):
            pts = [(0, self.H)]
            phase = self.rng.uniform(0, 6.28)
            for i in range(41):
                x = self.W * i / 40
                pts.append((x, h + k * self.H * 0.08 - self.H * 0.05 * (1 + math.sin(phase + i * 0.3))))
            pts.append((self.W, self.H))
            d.polygon(pts, fill=col, outline=shade(col, 0.8), width=self.lw())
        x = self.W * self.rng.uniform(0.6, 0.8)  # a pyramid in the distance
        d.polygon([(x - self.W * 0.12, h), (x, h - self.H * 0.13), (x + self.W * 0.12, h)], fill=(210, 170, 100),
                  outline=(150, 120, 70), width=self.lw())
        for x in (0.12, 0.88):
            self.paint_cactus(self.W * x, self.H * 0.9, self.H * 0.25)

    def setting_space(self) -> None:
        d, h = self.wd, self.horizon
        pts = [(0, self.H)]
        for i in range(41):
            pts.append((self.W * i / 40, h - self.H * 0.02 * math.sin(i * 0.25)))
        pts.append((self.W, self.H))
        d.polygon(pts, fill=(150, 150, 160))
        for _ in range(9):
            x, y = self.rng.uniform(0, self.W), self.rng.uniform(h + self.H * 0.02, self.H * 0.98)
            r = self.W * self.rng.uniform(0.02, 0.05) * (0.4 + (y - h) / (self.H - h))
            d.ellipse((x - r, y - r * 0.35, x + r, y + r * 0.35), fill=(120, 120, 130), outline=(95, 95, 105),
                      width=self.lw())
        if "rocket" in self.scene.objects:
            self.paint_rocket(self.W * 0.82, self.horizon * 0.7, self.H * 0.26, angle=30)

    def setting_underwater(self) -> None:
        d, h = self.wd, self.horizon
        pts = [(0, self.H)]
        for i in range(41):
            pts.append((self.W * i / 40, h - self.H * 0.015 * math.sin(i * 0.5)))
        pts.append((self.W, self.H))
        d.polygon(pts, fill=self.ground_colour())
        for _ in range(9):  # seaweed
            x = self.rng.uniform(0, self.W)
            hh = self.H * self.rng.uniform(0.15, 0.35)
            col = self.rng.choice([(40, 140, 80), (60, 160, 90), (30, 120, 90)])
            pts = [(x + math.sin(t * 0.6) * self.W * 0.015, h + self.H * 0.04 - t / 10 * hh) for t in range(11)]
            d.line(pts, fill=col, width=self.lw(5), joint="curve")
        for _ in range(4):  # coral
            x, y = self.rng.uniform(0.05, 0.95) * self.W, h + self.H * self.rng.uniform(0.03, 0.1)
            col = self.rng.choice([(240, 110, 110), (245, 160, 80), (220, 100, 170)])
            for a in (-40, -15, 10, 35):
                r = self.H * 0.07
                d.line([(x, y), (x + math.sin(math.radians(a)) * r, y - math.cos(math.radians(a)) * r)], fill=col,
                       width=self.lw(4))
        for _ in range(25):  # bubbles
            x, y = self.rng.uniform(0, self.W), self.rng.uniform(0.05, 0.8) * self.H
            r = self.rng.uniform(2, 6) * self.ss
            self.ld.ellipse((x - r, y - r, x + r, y + r), outline=(220, 245, 255, 200), width=self.lw(0.6))

    def setting_room(self) -> None:
        d, h = self.wd, self.horizon
        wall = (235, 215, 180)
        d.rectangle((0, 0, self.W, h), fill=wall)
        for x in np.arange(0, self.W, self.W / 16):  # wallpaper stripes
            d.rectangle((x, 0, x + self.W / 64, h), fill=shade(wall, 0.95))
        d.rectangle((0, h, self.W, self.H), fill=(165, 115, 72))
        for y in np.arange(h, self.H, self.H * 0.05):
            d.line([(0, y), (self.W, y)], fill=(130, 88, 55), width=self.lw())
        d.rectangle((0, h - self.H * 0.02, self.W, h), fill=(200, 185, 160))
        # a window showing the sky of the time of day
        x0, y0, x1, y1 = self.W * 0.58, self.H * 0.12, self.W * 0.88, self.H * 0.48
        sky = _gradient(int(y1 - y0), int(x1 - x0), SKIES[self.time])
        self.world.paste(Image.fromarray(sky.astype(np.uint8), "RGB").convert("RGBA"), (int(x0), int(y0)))
        if self.night:
            r = (x1 - x0) * 0.12
            cx, cy = x0 + (x1 - x0) * 0.7, y0 + (y1 - y0) * 0.3
            self.ld.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 245, 215, 255))
            for _ in range(12):
                sx, sy = self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)
                self.ld.ellipse((sx - 2, sy - 2, sx + 2, sy + 2), fill=(255, 250, 220, 255))
        frame = (120, 80, 50)
        d.rectangle((x0, y0, x1, y1), outline=frame, width=self.lw(4))
        d.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)], fill=frame, width=self.lw(3))
        d.line([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)], fill=frame, width=self.lw(3))
        px0, py0 = self.W * 0.12, self.H * 0.16  # a picture on the wall
        d.rectangle((px0, py0, px0 + self.W * 0.2, py0 + self.H * 0.15), fill=(140, 190, 230), outline=(170, 120, 40),
                    width=self.lw(4))
        d.polygon([(px0 + self.W * 0.02, py0 + self.H * 0.14), (px0 + self.W * 0.09, py0 + self.H * 0.05),
                   (px0 + self.W * 0.16, py0 + self.H * 0.14)], fill=(90, 140, 90))
        d.ellipse((self.W * 0.2, self.H * 0.8, self.W * 0.8, self.H * 0.97), fill=(180, 60, 70),
                  outline=(140, 40, 50), width=self.lw(2))
        self.paint_lamp(self.W * 0.08, self.H * 0.8, self.H * 0.3)

    # -- objects ----------------------------------------------------------------------------
    def whiten_ground(self) -> None:
        """Snow: the ground is white."""
        self.wd.rectangle((0, self.horizon + self.H * 0.01, self.W, self.H), fill=(236, 240, 246))

    def paint_pine(self, d: ImageDraw.ImageDraw, x: float, y: float, th: float) -> None:
        col = self.rng.choice(PINE)
        d.rectangle((x - th * 0.04, y - th * 0.15, x + th * 0.04, y), fill=(90, 60, 35))
        for k in range(3):
            w = th * (0.36 - k * 0.08)
            base = y - th * (0.12 + k * 0.24)
            d.polygon([(x - w, base), (x, base - th * 0.42), (x + w, base)], fill=col, outline=shade(col, 0.6),
                      width=self.lw())
            if self.weather == "snow":
                d.polygon([(x - w * 0.35, base - th * 0.28), (x, base - th * 0.42), (x + w * 0.35, base - th * 0.28)],
                          fill=(240, 244, 250))

    def paint_broadleaf(self, d: ImageDraw.ImageDraw, x: float, y: float, th: float) -> None:
        trunk = (110, 72, 42)
        tw = th * 0.07
        d.polygon([(x - tw * 1.4, y), (x - tw * 0.7, y - th * 0.55), (x + tw * 0.7, y - th * 0.55), (x + tw * 1.4, y)],
                  fill=trunk, outline=shade(trunk, 0.6), width=self.lw())
        d.line([(x, y - th * 0.45), (x + th * 0.16, y - th * 0.62)], fill=trunk, width=max(1, int(tw * 0.7)))
        col = self.rng.choice(LEAF)
        if self.time == "sunset" and self.rng.random() < 0.3:
            col = (150, 130, 60)
        blobs = [(0, 0.72, 0.26), (-0.18, 0.6, 0.19), (0.18, 0.6, 0.19), (-0.1, 0.86, 0.18), (0.12, 0.84, 0.18)]
        for bx, by, br in blobs:
            cx, cy, r = x + bx * th, y - by * th, br * th
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col, outline=shade(col, 0.6), width=self.lw())
        for bx, by, br in blobs[:3]:
            cx, cy, r = x + bx * th - br * th * 0.25, y - by * th - br * th * 0.25, br * th * 0.5
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=shade(col, 1.15))
        if self.weather == "snow":
            for bx, by, br in blobs[3:]:
                cx, cy, r = x + bx * th, y - by * th - br * th * 0.6, br * th * 0.7
                d.chord((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), 180, 360, fill=(240, 244, 250))

    def paint_river(self) -> None:
        d, h = self.wd, self.horizon
        side = self.river_side
        x_far = self.W * (0.5 + side * self.rng.uniform(0.05, 0.15))
        x_near = self.W * (0.5 + side * 0.36)
        n = 24
        left, right, path = [], [], []
        for i in range(n + 1):
            t = i / n
            y = h + (self.H - h) * t
            xc = x_far + (x_near - x_far) * t + math.sin(t * 5 + 1) * self.W * 0.05 * t
            w = self.W * (0.012 + 0.14 * t * t)
            left.append((xc - w, y))
            right.append((xc + w, y))
            path.append((xc, y, w))
        water = (70, 140, 210) if not self.night else (55, 95, 160)
        bank = (150, 125, 85)
        d.polygon(left + right[::-1], fill=water, outline=bank, width=self.lw(2.5))
        for xc, y, w in path[4::2]:  # ripples
            dx = w * self.rng.uniform(-0.5, 0.3)
            d.line([(xc + dx, y), (xc + dx + w * 0.4, y)], fill=(180, 215, 245), width=self.lw(1.2))
        if self.night and getattr(self, "moon", None):
            for xc, y, w in path[6::2]:  # moonlight on the water
                self.ld.line([(xc - w * 0.3, y), (xc + w * 0.2, y)], fill=(240, 235, 190, 200), width=self.lw(1.5))
        self.river_path = path
        self.water.append(("river", path))

    def paint_lake(self) -> None:
        d = self.wd
        cx = self.W * (0.5 + self.river_side * 0.2)
        cy = self.horizon + (self.H - self.horizon) * 0.3
        rx, ry = self.W * 0.24, self.H * 0.06
        water = (80, 150, 210) if not self.night else (55, 95, 160)
        d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=water, outline=(140, 120, 80), width=self.lw(2.5))
        for _ in range(6):
            x, y = cx + self.rng.uniform(-0.6, 0.6) * rx, cy + self.rng.uniform(-0.4, 0.4) * ry
            d.line([(x, y), (x + rx * 0.12, y)], fill=(190, 220, 245), width=self.lw(1.2))
        self.water.append(("ellipse", (cx, cy, rx, ry)))

    def paint_castle(self, x: float, y: float, w: float) -> None:
        d = self.wd
        stone, dark, roof = (200, 196, 190), (120, 115, 110), (80, 90, 160)
        if self.night:
            stone = (185, 185, 195)
        lw = self.lw(1.2)

        def crenels(x0: float, x1: float, top: float, size: float) -> None:
            n = max(3, int((x1 - x0) / size))
            step = (x1 - x0) / n
            for i in range(0, n, 2):
                d.rectangle((x0 + i * step, top - size * 0.8, x0 + (i + 1) * step, top), fill=stone, outline=dark,
                            width=lw)

        wall_h, tower_w, tower_h = w * 0.38, w * 0.2, w * 0.75
        d.rectangle((x - w / 2, y - wall_h, x + w / 2, y), fill=stone, outline=dark, width=lw)
        crenels(x - w / 2, x + w / 2, y - wall_h, w * 0.06)
        keep_w, keep_h = w * 0.3, w * 0.62
        d.rectangle((x - keep_w / 2, y - keep_h, x + keep_w / 2, y - wall_h * 0.5), fill=stone, outline=dark, width=lw)
        d.polygon([(x - keep_w * 0.6, y - keep_h), (x, y - keep_h - w * 0.3), (x + keep_w * 0.6, y - keep_h)],
                  fill=roof, outline=shade(roof, 0.6), width=lw)
        d.line([(x, y - keep_h - w * 0.3), (x, y - keep_h - w * 0.42)], fill=dark, width=lw)
        d.polygon([(x, y - keep_h - w * 0.42), (x + w * 0.1, y - keep_h - w * 0.39), (x, y - keep_h - w * 0.36)],
                  fill=(220, 50, 60))
        for sx in (-1, 1):
            tx = x + sx * (w / 2 - tower_w / 2)
            d.rectangle((tx - tower_w / 2, y - tower_h, tx + tower_w / 2, y), fill=stone, outline=dark, width=lw)
            d.polygon([(tx - tower_w * 0.65, y - tower_h), (tx, y - tower_h - w * 0.28),
                       (tx + tower_w * 0.65, y - tower_h)], fill=roof, outline=shade(roof, 0.6), width=lw)
            wy = y - tower_h * 0.7
            win = (tx - tower_w * 0.15, wy, tx + tower_w * 0.15, wy + tower_w * 0.4)
            if self.night:
                self.ld.rounded_rectangle(win, radius=tower_w * 0.15, fill=(255, 215, 110, 255))
                self.glows.append((tx, wy + tower_w * 0.2, tower_w * 0.5, (110, 80, 20)))
            else:
                d.rounded_rectangle(win, radius=tower_w * 0.15, fill=(60, 60, 80))
        d.chord((x - w * 0.08, y - w * 0.24, x + w * 0.08, y + w * 0.08), 180, 360, fill=(90, 60, 40))
        d.rectangle((x - w * 0.08, y - w * 0.08, x + w * 0.08, y), fill=(90, 60, 40))

    def paint_house(self, x: float, y: float, w: float) -> None:
        d = self.wd
        wall = self.rng.choice([(240, 225, 190), (230, 190, 150), (245, 240, 230)])
        roof = self.rng.choice([(190, 70, 60), (150, 80, 60), (90, 100, 140)])
        lw = self.lw(1.2)
        hh = w * 0.6
        d.rectangle((x + w * 0.2, y - hh - w * 0.35, x + w * 0.3, y - hh - w * 0.1), fill=(150, 90, 70),
                    outline=(80, 50, 40), width=lw)  # the chimney
        d.rectangle((x - w / 2, y - hh, x + w / 2, y), fill=wall, outline=shade(wall, 0.5), width=lw)
        d.polygon([(x - w * 0.62, y - hh), (x, y - hh - w * 0.42), (x + w * 0.62, y - hh)], fill=roof,
                  outline=shade(roof, 0.5), width=lw)
        door = (x - w * 0.09, y - hh * 0.55, x + w * 0.09, y)
        d.rectangle(door, fill=(120, 75, 45), outline=(70, 45, 30), width=lw)
        for sx in (-1, 1):
            box = (x + sx * w * 0.3 - w * 0.1, y - hh * 0.7, x + sx * w * 0.3 + w * 0.1, y - hh * 0.38)
            if self.night:
                self.ld.rectangle(box, fill=(255, 210, 110, 255), outline=(90, 60, 40, 255), width=lw)
                self.glows.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, w * 0.2, (120, 85, 25)))
            else:
                d.rectangle(box, fill=(170, 210, 240), outline=shade(wall, 0.5), width=lw)
                d.line([((box[0] + box[2]) / 2, box[1]), ((box[0] + box[2]) / 2, box[3])], fill=shade(wall, 0.5),
                       width=lw)
        if self.weather == "snow":
            d.polygon([(x - w * 0.62, y - hh), (x, y - hh - w * 0.42), (x + w * 0.62, y - hh),
                       (x + w * 0.5, y - hh - w * 0.06), (x, y - hh - w * 0.34), (x - w * 0.5, y - hh - w * 0.06)],
                      fill=(242, 245, 250))

    def paint_tent(self, x: float, y: float, w: float) -> None:
        col = (230, 120, 50)
        self.wd.polygon([(x - w / 2, y), (x, y - w * 0.7), (x + w / 2, y)], fill=col, outline=shade(col, 0.5),
                        width=self.lw(1.2))
        self.wd.polygon([(x - w * 0.12, y), (x, y - w * 0.45), (x + w * 0.12, y)], fill=(90, 50, 30))

    def paint_bridge(self) -> None:
        path = self.river_path
        xc, y, w = path[len(path) // 3]
        d = self.wd
        wood = (140, 95, 55)
        span = w * 1.6
        box = (xc - span, y - span * 0.5, xc + span, y + span * 0.5)
        d.arc(box, 180, 360, fill=wood, width=self.lw(5))
        d.line([(xc - span, y), (xc + span, y)], fill=wood, width=self.lw(2))
        for k in range(-3, 4):
            px = xc + k * span / 3.5
            top = y - math.sqrt(max(0.0, 1 - (k / 3.5) ** 2)) * span * 0.5
            d.line([(px, top), (px, top - span * 0.18)], fill=shade(wood, 0.8), width=self.lw(1.5))
        d.arc((box[0], box[1] - span * 0.18, box[2], box[3] - span * 0.18), 180, 360, fill=shade(wood, 0.8),
              width=self.lw(1.5))

    def paint_boat(self) -> None:
        if not self.water:
            return
        kind, where = self.water[0]
        if kind == "band":
            x, y = self.W * self.rng.uniform(0.55, 0.8), (where[0] + where[1]) / 2
        elif kind == "ellipse":
            x, y = where[0], where[1]
        else:
            x, y, _ = where[int(len(where) * 0.55)]
        w = self.W * (0.16 if kind != "river" else 0.12)
        d = self.wd
        hull = (150, 90, 50)
        d.polygon([(x - w / 2, y - w * 0.12), (x + w / 2, y - w * 0.12), (x + w * 0.35, y + w * 0.08),
                   (x - w * 0.35, y + w * 0.08)], fill=hull, outline=shade(hull, 0.5), width=self.lw(1.2))
        d.line([(x, y - w * 0.12), (x, y - w * 0.8)], fill=(90, 60, 40), width=self.lw(1.5))
        d.polygon([(x + w * 0.03, y - w * 0.78), (x + w * 0.03, y - w * 0.18), (x + w * 0.4, y - w * 0.18)],
                  fill=(245, 240, 230), outline=(150, 140, 130), width=self.lw())

    def paint_lamp(self, x: float, y: float, hgt: float) -> None:
        d = self.wd
        d.line([(x, y), (x, y - hgt)], fill=(50, 50, 55), width=self.lw(2.5))
        box = (x - hgt * 0.07, y - hgt * 1.12, x + hgt * 0.07, y - hgt * 0.98)
        if self.night or self.time == "sunset":
            self.ld.rectangle(box, fill=(255, 220, 130, 255), outline=(50, 50, 55, 255), width=self.lw())
            self.glows.append((x, y - hgt * 1.05, hgt * 0.4, (140, 100, 35)))
        else:
            d.rectangle(box, fill=(230, 230, 200), outline=(50, 50, 55), width=self.lw())

    def paint_rocket(self, x: float, y: float, hgt: float, angle: float) -> None:
        layer = Image.new("RGBA", (int(hgt * 0.8), int(hgt * 1.4)), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        cx, w = layer.width / 2, hgt * 0.16
        top, bottom = hgt * 0.05, hgt * 1.0
        d.polygon([(cx - w, bottom), (cx - w, top + hgt * 0.3), (cx, top), (cx + w, top + hgt * 0.3), (cx + w, bottom)],
                  fill=(235, 235, 240), outline=(110, 110, 120), width=self.lw(1.2))
        d.polygon([(cx, top), (cx - w * 0.8, top + hgt * 0.22), (cx + w * 0.8, top + hgt * 0.22)], fill=(220, 60, 60))
        for s in (-1, 1):
            fin = [(cx + s * w, bottom - hgt * 0.25), (cx + s * w * 2.1, bottom + hgt * 0.02), (cx + s * w, bottom)]
            d.polygon(fin, fill=(220, 60, 60), outline=(120, 30, 30), width=self.lw())
        d.ellipse((cx - w * 0.5, top + hgt * 0.35, cx + w * 0.5, top + hgt * 0.35 + w), fill=(120, 200, 240),
                  outline=(80, 80, 90), width=self.lw(1.5))
        if angle:
            d.polygon([(cx - w * 0.7, bottom), (cx, bottom + hgt * 0.35), (cx + w * 0.7, bottom)], fill=(255, 170, 40))
            d.polygon([(cx - w * 0.35, bottom), (cx, bottom + hgt * 0.2), (cx + w * 0.35, bottom)],
                      fill=(255, 240, 150))
        layer = layer.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True)
        self.world.alpha_composite(layer, (int(x - layer.width / 2), int(y - layer.height * 0.75)))

    def paint_cactus(self, x: float, y: float, hgt: float) -> None:
        d, col = self.wd, (70, 150, 80)
        w = hgt * 0.12
        d.rounded_rectangle((x - w, y - hgt, x + w, y), radius=w, fill=col, outline=shade(col, 0.5), width=self.lw())
        for s, hy in ((-1, 0.55), (1, 0.7)):
            ax = x + s * w * 2.4
            d.rounded_rectangle((min(x, ax), y - hgt * hy, max(x, ax), y - hgt * hy + w * 1.2), radius=w * 0.6,
                                fill=col, outline=shade(col, 0.5), width=self.lw())
            d.rounded_rectangle((ax - w * 0.7, y - hgt * (hy + 0.25), ax + w * 0.7, y - hgt * hy + w * 1.2),
                                radius=w * 0.7, fill=col, outline=shade(col, 0.5), width=self.lw())

    def paint_flower(self, d: ImageDraw.ImageDraw, x: float, y: float, size: float) -> None:
        col = self.rng.choice(FLOWER)
        d.line([(x, y), (x, y - size)], fill=(60, 130, 60), width=self.lw(1.2))
        r = size * 0.22
        for k in range(5):
            a = k * 2 * math.pi / 5
            px, py = x + math.cos(a) * r, y - size + math.sin(a) * r
            d.ellipse((px - r * 0.8, py - r * 0.8, px + r * 0.8, py + r * 0.8), fill=col, outline=shade(col, 0.6),
                      width=max(1, self.lw(0.5)))
        d.ellipse((x - r * 0.6, y - size - r * 0.6, x + r * 0.6, y - size + r * 0.6), fill=(250, 200, 40))

    def paint_mushroom(self, d: ImageDraw.ImageDraw, x: float, y: float, size: float) -> None:
        d.rectangle((x - size * 0.15, y - size * 0.5, x + size * 0.15, y), fill=(245, 235, 215),
                    outline=(150, 130, 110), width=self.lw())
        d.chord((x - size * 0.5, y - size * 0.9, x + size * 0.5, y - size * 0.2), 180, 360, fill=(220, 50, 50),
                outline=(120, 30, 30), width=self.lw())
        for dx, dy in ((-0.25, -0.62), (0.05, -0.75), (0.28, -0.6)):
            r = size * 0.07
            cx, cy = x + dx * size, y + dy * size
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255))

    def paint_foreground(self) -> None:
        s, d = self.scene, self.wd
        if s.setting in ("space", "room", "city", "underwater"):
            return
        y0 = self.horizon + (self.H - self.horizon) * 0.35
        if self.weather != "snow" and s.setting not in ("desert", "sea"):
            grass = shade(self.ground_colour(), 0.8)
            for _ in range(60):  # tufts of grass
                x, y = self.rng.uniform(0, self.W), self.rng.uniform(y0, self.H)
                g = self.H * 0.015 * (0.5 + (y - y0) / (self.H - y0))
                for dx in (-1, 0, 1):
                    d.line([(x, y), (x + dx * g * 0.5, y - g * (1.2 if dx == 0 else 0.9))], fill=grass,
                           width=self.lw(0.8))
        n_flowers = 12 if "flower" in s.objects else (4 if s.setting in ("meadow", "garden", "house") else 0)
        if self.weather == "snow":
            n_flowers = 0
        for _ in range(n_flowers):
            x, y = self.rng.uniform(0.02, 0.98) * self.W, self.rng.uniform(y0, self.H * 0.99)
            if self.in_water(x, y):
                continue
            self.paint_flower(d, x, y, self.H * 0.05 * (0.6 + (y - y0) / (self.H - y0)))
        if "mushroom" in s.objects or (s.setting == "forest" and self.rng.random() < 0.5):
            for _ in range(3 if "mushroom" in s.objects else 2):
                x = self.W * (0.5 - self.river_side * self.rng.uniform(0.3, 0.45))
                self.paint_mushroom(d, x, self.H * self.rng.uniform(0.9, 0.98), self.H * 0.06)
        if "campfire" in s.objects:
            self.paint_campfire(self.W * 0.5 - self.river_side * self.W * 0.12, self.H * 0.9, self.H * 0.1)
        if "lantern" in s.objects and s.setting not in ("room", "city"):
            self.paint_lamp(self.W * (0.5 - self.river_side * 0.42), self.H * 0.9, self.H * 0.3)

    def paint_campfire(self, x: float, y: float, size: float) -> None:
        d = self.wd
        for a in (-20, 20):
            dx = math.cos(math.radians(a)) * size * 0.6
            dy = math.sin(math.radians(a)) * size * 0.2
            d.line([(x - dx, y + dy), (x + dx, y - dy)], fill=(110, 70, 40), width=self.lw(5))
        flame = [(-0.4, 0.05), (-0.2, 0.6), (0, 0.4), (0.1, 0.95), (0.3, 0.5), (0.4, 0.05)]
        self.ld.polygon([(x + fx * size, y - fy * size) for fx, fy in flame], fill=(250, 120, 30, 255))
        self.ld.polygon([(x - size * 0.2, y - size * 0.05), (x, y - size * 0.55), (x + size * 0.2, y - size * 0.05)],
                        fill=(255, 220, 90, 255))
        self.glows.append((x, y - size * 0.4, size * 2.2, (160, 80, 20)))

    def in_water(self, x: float, y: float) -> bool:
        for kind, where in self.water:
            if kind == "river":
                for xc, yy, w in where:
                    if abs(yy - y) < (self.H - self.horizon) / 24 and abs(x - xc) < w * 1.15:
                        return True
            elif kind == "ellipse":
                cx, cy, rx, ry = where
                if ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.2:
                    return True
            elif kind == "band" and self.scene.setting == "sea" and where[0] <= y <= where[1] + self.H * 0.05:
                return True
        return False

    # -- characters ---------------------------------------------------------------------------
    def paint_characters(self) -> None:
        s = self.scene
        figures: list[tuple[str, RGB | None, float]] = []
        for ch in s.characters:
            colour = COLOURS.get(ch.colour) if ch.colour else None
            for _ in range(ch.count):
                figures.append((ch.kind, colour, ch.size))
        figures = figures[:8]
        ground = [f for f in figures
                  if FIGURES[f[0]][2] == "ground" or (FIGURES[f[0]][2] == "water" and not self.water)]
        if s.setting == "underwater":
            ground = [f for f in ground if f[0] in ("turtle", "frog", "robot") or FIGURES[f[0]][2] == "ground"]
        others = [f for f in figures if f not in ground]
        crowd = min(1.0, (3.5 / max(1, len(ground))) ** 0.6)
        # x slots across the free side of the picture (away from the river)
        if self.river_path:
            lo, hi = (0.08, 0.64) if self.river_side > 0 else (0.36, 0.92)
        else:
            lo, hi = 0.1, 0.9
        n = len(ground)
        placed = []
        for i, (kind, colour, size) in enumerate(ground):
            x = self.W * (lo + (hi - lo) * (i + 0.5) / n + self.rng.uniform(-0.03, 0.03) * (hi - lo))
            y = self.H * (0.86 + self.rng.uniform(-0.02, 0.06) + (0.03 if i % 2 else 0.0))
            if s.setting == "room":
                y = self.H * (0.88 + self.rng.uniform(-0.02, 0.04))
            placed.append((y, x, kind, colour, size))
        for y, x, kind, colour, size in sorted(placed):
            fn, frac, _ = FIGURES[kind]
            depth = 0.85 + 0.3 * (y / self.H - 0.84)
            height = self.H * frac * size * crowd * depth
            if s.setting == "underwater":
                height *= 1.6
            flip = x > self.W / 2 and kind not in FRONT_FACING
            self.shadow(x, y, height)
            fn(Pen(self.ad, x, y, height, flip=flip), colour, random.Random(self.rng.random()))
        for i, (kind, colour, size) in enumerate(others):
            fn, frac, where = FIGURES[kind]
            height = self.H * frac * size * (2.0 if s.setting == "underwater" else 1.0)
            if where == "water" and self.water:
                x, y = self.water_spot(i)
                flip = self.rng.random() < 0.5
                y += height * 0.5
            elif kind == "butterfly":
                x, y = self.W * self.rng.uniform(0.2, 0.8), self.H * self.rng.uniform(0.55, 0.7)
                flip = False
            else:
                x, y = self.W * self.rng.uniform(0.15, 0.85), self.horizon * self.rng.uniform(0.35, 0.7)
                flip = self.rng.random() < 0.5
            fn(Pen(self.ad, x, y, height, flip=flip), colour, random.Random(self.rng.random()))

    def water_spot(self, i: int) -> tuple[float, float]:
        kind, where = self.water[i % len(self.water)]
        if kind == "band":
            return self.W * self.rng.uniform(0.15, 0.85), self.rng.uniform(where[0], where[1])
        if kind == "ellipse":
            cx, cy, rx, ry = where
            return cx + self.rng.uniform(-0.4, 0.4) * rx, cy
        xc, y, w = where[int(len(where) * self.rng.uniform(0.6, 0.9))]
        return xc, y

    def shadow(self, x: float, y: float, height: float) -> None:
        r = height * 0.32
        self.ad.ellipse((x - r, y - r * 0.12, x + r, y + r * 0.12), fill=(0, 0, 0, 60))

    # -- weather --------------------------------------------------------------------------------
    def weather_layer(self) -> Image.Image | None:
        w = self.weather
        if w not in ("rain", "storm", "snow", "fog") or self.scene.setting in ("room", "space", "underwater"):
            return None
        layer = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        if w in ("rain", "storm"):
            for _ in range(260 if w == "storm" else 180):
                x, y = self.rng.uniform(-0.1, 1.0) * self.W, self.rng.uniform(0, 1) * self.H
                length = self.H * self.rng.uniform(0.03, 0.06)
                d.line([(x, y), (x + length * 0.3, y + length)], fill=(200, 215, 235, 150), width=self.lw(0.8))
            if w == "storm":
                x, y = self.W * self.rng.uniform(0.2, 0.8), 0.0
                pts = [(x, y)]
                while y < self.horizon * 0.8:
                    y += self.H * 0.06
                    x += self.W * self.rng.uniform(-0.05, 0.05)
                    pts.append((x, y))
                d.line(pts, fill=(255, 250, 200, 255), width=self.lw(3))
                self.glows.append((pts[len(pts) // 2][0], pts[len(pts) // 2][1], self.W * 0.15, (90, 90, 60)))
        elif w == "snow":
            for _ in range(220):
                x, y = self.rng.uniform(0, self.W), self.rng.uniform(0, self.H)
                r = self.rng.uniform(1.5, 4.5) * self.ss
                d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255, 220))
        elif w == "fog":
            arr = np.zeros((self.H, self.W, 4), dtype=np.uint8)
            y = np.arange(self.H, dtype=np.float32)
            alpha = 150 * np.exp(-((y - self.horizon) / (self.H * 0.18)) ** 2) + 40
            arr[..., :3] = 225
            arr[..., 3] = alpha[:, None].astype(np.uint8)
            layer = Image.fromarray(arr, "RGBA")
        return layer

    # -- all together ----------------------------------------------------------------------------
    def paint(self) -> Image.Image:
        self.river_path = []
        self.paint_sky()
        self.paint_world()
        self.paint_characters()
        assert self.sky_img is not None
        world_mul, actor_mul = GRADES[self.time]
        if self.scene.setting == "room" and self.time == "night":  # indoors at night: lamplight, not moonlight
            world_mul, actor_mul = (0.72, 0.62, 0.52), (0.92, 0.86, 0.8)
        if self.weather in ("rain", "cloudy", "fog"):
            world_mul = tuple(m * 0.88 for m in world_mul)  # type: ignore[assignment]
        elif self.weather == "storm":
            world_mul = tuple(m * 0.72 for m in world_mul)  # type: ignore[assignment]
        canvas = self._glow(self.sky_img, self.sky_glows)
        canvas.alpha_composite(_grade(self.world, world_mul))
        canvas.alpha_composite(_grade(self.actors, actor_mul))
        canvas.alpha_composite(self.lights)
        weather = self.weather_layer()  # before the glows: lightning adds one
        canvas = self._glow(canvas, self.glows)
        if weather is not None:
            canvas.alpha_composite(weather)
        return canvas.convert("RGB").resize(self.out_size, Image.Resampling.LANCZOS)


    def _glow(self, canvas: Image.Image, glows: list[tuple[float, float, float, RGB]]) -> Image.Image:
        """Add soft light (blurred discs, drawn at a quarter of the size) onto the canvas."""
        if not glows:
            return canvas
        small = Image.new("RGB", (self.W // 4, self.H // 4), (0, 0, 0))
        gd = ImageDraw.Draw(small)
        for x, y, r, col in glows:
            x, y, r = x / 4, y / 4, r / 4
            gd.ellipse((x - r, y - r, x + r, y + r), fill=col)
        small = small.filter(ImageFilter.GaussianBlur(max(2, self.W / 80)))
        glow = np.asarray(small.resize((self.W, self.H), Image.Resampling.BILINEAR), dtype=np.uint16)
        base = np.asarray(canvas.convert("RGB"), dtype=np.uint16)
        return Image.fromarray(np.minimum(base + glow, 255).astype(np.uint8), "RGB").convert("RGBA")


def _grade(layer: Image.Image, mul: tuple[float, float, float]) -> Image.Image:
    if mul == (1.0, 1.0, 1.0):
        return layer
    arr = np.asarray(layer, dtype=np.float32).copy()
    arr[..., :3] *= np.array(mul, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA")


def paint_scene(scene: Scene, width: int = 512, height: int = 512, seed: int = 0, supersample: int = 2) -> Image.Image:
    """The scene as an RGB picture of width x height (the same picture for the same seed)."""
    return _Painter(scene, width, height, seed, supersample).paint()
