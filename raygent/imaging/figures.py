"""Simple, recognisable figures drawn with Pillow primitives: animals, people, robots.

Every figure is drawn by a `Pen` in its own coordinates: the feet at (0, 0), y up, 100 units =
the figure's height, facing +x (a flipped pen mirrors it). Shapes get a darker outline so that
they still read after a style-transfer pass.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

RGB = tuple[int, int, int]


def shade(colour: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter (factor > 1, towards white) version of a colour."""
    if factor <= 1:
        return tuple(max(0, int(c * factor)) for c in colour)  # type: ignore[return-value]
    t = min(1.0, factor - 1)
    return tuple(int(c + (255 - c) * t) for c in colour)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 36,
                   start: float = 0.0, end: float = 360.0) -> list[tuple[float, float]]:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    pts = []
    for i in range(n + 1 if end - start < 360 else n):
        t = math.radians(start + (end - start) * i / (n if end - start < 360 else n))
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return pts


class Pen:
    """Draws in a figure's local units onto an ImageDraw (y up, feet at the origin)."""

    def __init__(self, draw: Any, x0: float, y0: float, height_px: float, flip: bool = False,
                 line_scale: float = 1.0):
        self.draw, self.x0, self.y0, self.u, self.flip = draw, x0, y0, height_px / 100.0, flip
        self.lw = max(1, round(self.u * 1.6 * line_scale))

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return (self.x0 + (-x if self.flip else x) * self.u, self.y0 - y * self.u)

    def poly(self, pts: list[tuple[float, float]], fill: RGB | None, outline: bool | RGB = True) -> None:
        line = None
        if outline:
            line = outline if isinstance(outline, tuple) else shade(fill or (80, 80, 80), 0.4)
        self.draw.polygon([self.xy(x, y) for x, y in pts], fill=fill, outline=line,
                          width=self.lw if line else 0)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB | None, angle: float = 0.0,
                outline: bool | RGB = True) -> None:
        self.poly(ellipse_points(cx, cy, rx, ry, angle), fill, outline)

    def circle(self, cx: float, cy: float, r: float, fill: RGB | None, outline: bool | RGB = True) -> None:
        self.ellipse(cx, cy, r, r, fill, 0.0, outline)

    def line(self, pts: list[tuple[float, float]], fill: RGB, width: float = 2.0) -> None:
        self.draw.line([self.xy(x, y) for x, y in pts], fill=fill, width=max(1, round(width * self.u)),
                       joint="curve")

    def arc(self, cx: float, cy: float, rx: float, ry: float, start: float, end: float, fill: RGB,
            width: float = 1.5) -> None:
        self.line(ellipse_points(cx, cy, rx, ry, 0.0, 16, start, end), fill, width)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, outline: bool | RGB = True) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, outline)


BLACK: RGB = (25, 22, 22)
WHITE: RGB = (250, 248, 240)
PINK: RGB = (240, 150, 160)
SKIN: RGB = (242, 200, 165)

# ---------------------------------------------------------------------------------------------
# four-legged animals: one parametric side view
# ---------------------------------------------------------------------------------------------

QUADRUPEDS: dict[str, dict[str, Any]] = {
    "fox": dict(colour=(226, 110, 38), light=WHITE, body=(34, 14), leg=34, leg_w=6, head=(13, 11), ears="pointy",
                snout="pointy", tail="bushy", dark_legs=True, neck=8),
    "cat": dict(colour=(150, 150, 155), light=(235, 235, 235), body=(28, 13), leg=34, leg_w=5, head=(13, 12),
                ears="cat", snout="cat", tail="up", neck=6),
    "dog": dict(colour=(190, 135, 80), light=(245, 225, 190), body=(30, 15), leg=34, leg_w=7, head=(13, 12),
                ears="floppy", snout="long", tail="wag", collar=(210, 40, 40), neck=9),
    "bear": dict(colour=(120, 78, 45), light=(190, 150, 110), body=(36, 24), leg=26, leg_w=12, head=(17, 16),
                 ears="round", snout="round", tail="stub", neck=10),
    "panda": dict(colour=WHITE, light=WHITE, body=(36, 24), leg=26, leg_w=12, head=(17, 16), ears="round",
                  snout="round", tail="stub", panda=True, neck=10),
    "lion": dict(colour=(222, 170, 70), light=(245, 215, 150), body=(34, 17), leg=32, leg_w=9, head=(14, 13),
                 ears="round", snout="round", tail="tuft", mane=(160, 85, 30), neck=8),
    "tiger": dict(colour=(236, 135, 35), light=WHITE, body=(36, 16), leg=32, leg_w=9, head=(14, 13),
                  ears="round", snout="round", tail="long", stripes=True, neck=8),
    "pig": dict(colour=(245, 165, 175), light=(250, 190, 200), body=(32, 20), leg=20, leg_w=8, head=(14, 13),
                ears="pointy_small", snout="pig", tail="curly", neck=6),
    "horse": dict(colour=(150, 95, 55), light=(180, 130, 90), body=(30, 14), leg=48, leg_w=6, head=(12, 8),
                  ears="pointy_small", snout="horse", tail="long_hair", mane=(60, 40, 25), long_neck=True),
    "deer": dict(colour=(180, 120, 70), light=WHITE, body=(27, 12), leg=48, leg_w=5, head=(11, 8),
                 ears="pointy_small", snout="horse", tail="stub_white", antlers=True, spots=True, long_neck=True),
    "elephant": dict(colour=(150, 150, 160), light=(175, 175, 185), body=(34, 25), leg=28, leg_w=13,
                     head=(17, 17), ears="elephant", snout="trunk", tail="thin", neck=4),
    "mouse": dict(colour=(160, 160, 165), light=(235, 225, 225), body=(28, 16), leg=12, leg_w=5, head=(14, 12),
                  ears="mouse", snout="pointy", tail="thin_long", neck=4),
    "dragon": dict(colour=(60, 160, 85), light=(215, 205, 110), body=(34, 16), leg=28, leg_w=9, head=(13, 10),
                   ears="horns", snout="long", tail="dragon", wings=True, spikes=True, neck=12),
}


def draw_quadruped(pen: Pen, kind: str, colour: RGB | None, rng: random.Random) -> None:
    p = QUADRUPEDS[kind]
    c: RGB = colour or p["colour"]
    light: RGB = p["light"]
    far = shade(c, 0.75)
    bw, bh = p["body"]
    leg, lw = p["leg"], p["leg_w"]
    body_y = leg + bh * 0.45
    head_rx, head_ry = p["head"]
    long_neck = p.get("long_neck", False)
    hx = bw + head_rx * 0.4
    hy = body_y + (bh + (26 if long_neck else p.get("neck", 8)))
    dark = BLACK if p.get("panda") else shade(c, 0.45)
    leg_colour = (40, 30, 28) if p.get("dark_legs") else (BLACK if p.get("panda") else c)

    # tail first (behind the body)
    tail = p["tail"]
    tx, ty = -bw * 0.92, body_y + bh * 0.2
    if tail == "bushy":
        pen.ellipse(tx - 20, ty + 10, 24, 10, c, angle=-28)
        pen.ellipse(tx - 38, ty + 20, 8, 6, light, angle=-28)
    elif tail == "up":
        pen.line([(tx, ty), (tx - 10, ty + 14), (tx - 12, ty + 30), (tx - 6, ty + 40)], shade(c, 0.5), 6.5)
        pen.line([(tx, ty), (tx - 10, ty + 14), (tx - 12, ty + 30), (tx - 6, ty + 40)], c, 4.5)
    elif tail == "wag":
        pen.ellipse(tx - 9, ty + 10, 12, 4, c, angle=-50)
    elif tail in ("stub", "stub_white"):
        pen.circle(tx + 2, ty + 2, 5, light if tail == "stub_white" else (BLACK if p.get("panda") else c))
    elif tail == "tuft":
        pen.line([(tx, ty), (tx - 14, ty - 14), (tx - 22, ty - 20)], shade(c, 0.8), 2.5)
        pen.ellipse(tx - 24, ty - 21, 5, 4, p["mane"])
    elif tail == "long":
        pen.line([(tx, ty), (tx - 16, ty - 6), (tx - 26, ty + 6), (tx - 30, ty + 18)], shade(c, 0.45), 6)
        pen.line([(tx, ty), (tx - 16, ty - 6), (tx - 26, ty + 6), (tx - 30, ty + 18)], c, 4)
    elif tail == "curly":
        pen.arc(tx - 5, ty + 4, 5, 5, 0, 300, shade(c, 0.6), 2)
    elif tail == "long_hair":
        pen.poly([(tx + 2, ty + 4), (tx - 14, ty - 10), (tx - 12, ty - 34), (tx - 4, ty - 30), (tx + 4, ty - 4)],
                 p["mane"])
    elif tail == "thin":
        pen.line([(tx, ty), (tx - 6, ty - 16)], shade(c, 0.6), 2)
    elif tail == "thin_long":
        pen.line([(tx, ty - 4), (tx - 16, ty - 14), (tx - 30, ty - 10), (tx - 40, ty - 18)], PINK, 2)
    elif tail == "dragon":
        pts = [(tx, ty), (tx - 20, ty - 14), (tx - 38, ty - 20), (tx - 52, ty - 12)]
        pen.line(pts, shade(c, 0.5), 8)
        pen.line(pts, c, 6)
        pen.poly([(tx - 50, ty - 12), (tx - 62, ty - 4), (tx - 58, ty - 18)], shade(c, 0.7))

    if p.get("wings"):
        pen.poly([(-6, body_y + 8), (-30, body_y + 52), (-18, body_y + 40), (-8, body_y + 46), (0, body_y + 34),
                  (10, body_y + 40), (8, body_y + 10)], shade(c, 0.7))

    # far legs, body, near legs
    legs = [(-bw * 0.62, far), (bw * 0.5, far)]
    near = [(-bw * 0.42, leg_colour), (bw * 0.7, leg_colour)]
    for x, col in legs:
        pen.rect(x - lw / 2, 0, x + lw / 2, body_y, shade(leg_colour, 0.8) if col is far else col)
    if p.get("panda"):
        pen.ellipse(0, body_y, bw, bh, WHITE)
        pen.ellipse(bw * 0.35, body_y + 2, bw * 0.35, bh * 0.95, BLACK)  # the black shoulder band
    else:
        pen.ellipse(0, body_y, bw, bh, c)
        pen.ellipse(bw * 0.25, body_y - bh * 0.45, bw * 0.6, bh * 0.4, light if kind in ("fox", "tiger") else
                    mix(c, light, 0.5), outline=False)
    if p.get("stripes"):
        for i in range(6):
            x = -bw * 0.7 + i * bw * 0.28
            pen.poly([(x, body_y + bh * 0.95), (x + 4, body_y + bh * 0.95), (x + 6, body_y), (x + 2, body_y + 2)],
                     BLACK, outline=False)
    if p.get("spots"):
        for _ in range(6):
            pen.circle(rng.uniform(-bw * 0.6, bw * 0.5), body_y + rng.uniform(0, bh * 0.6), 1.8, WHITE,
                       outline=False)
    if p.get("spikes"):
        for i in range(5):
            x = -bw * 0.6 + i * bw * 0.3
            pen.poly([(x - 4, body_y + bh * 0.9), (x, body_y + bh + 8), (x + 4, body_y + bh * 0.9)], light)
    for x, col in near:
        pen.rect(x - lw / 2, 0, x + lw / 2, body_y - bh * 0.3, col)
        pen.ellipse(x + lw * 0.15, 1.5, lw * 0.65, 2.2, shade(col, 0.6), outline=False)

    # neck and head
    if long_neck:
        pen.poly([(bw * 0.55, body_y + bh * 0.6), (hx - head_rx * 0.6, hy - 2), (hx + 2, hy - head_ry * 0.5),
                  (bw * 0.95, body_y - bh * 0.2)], c)
        if p.get("mane") and kind == "horse":
            pen.poly([(bw * 0.55, body_y + bh * 0.7), (hx - head_rx * 0.7, hy + 4), (hx - head_rx * 0.95, hy - 2),
                      (bw * 0.45, body_y + bh * 0.3)], p["mane"])
    if p.get("mane") and kind == "lion":
        pen.circle(hx - 2, hy, head_ry * 1.6, p["mane"])
    _ears(pen, p["ears"], hx, hy, head_rx, head_ry, c, dark)
    if kind in ("horse", "deer"):
        pen.ellipse(hx + 4, hy, head_rx, head_ry, c, angle=-30)
    else:
        pen.ellipse(hx, hy, head_rx, head_ry, c)
    if p.get("panda"):
        pen.ellipse(hx + 4, hy + 2, 4.5, 3.5, BLACK, angle=20, outline=False)
    _snout(pen, p["snout"], kind, hx, hy, head_rx, head_ry, c, light)
    if p.get("antlers"):
        for dx in (-3, 2):
            base = (hx + dx, hy + head_ry * 0.7)
            pen.line([base, (base[0] - 2, base[1] + 16), (base[0] - 8, base[1] + 26)], (110, 75, 40), 2)
            pen.line([(base[0] - 2, base[1] + 9), (base[0] + 6, base[1] + 17)], (110, 75, 40), 2)
            pen.line([(base[0] - 4, base[1] + 19), (base[0] + 2, base[1] + 28)], (110, 75, 40), 2)
    # eye
    ex, ey = hx + head_rx * 0.35, hy + head_ry * 0.25
    if kind in ("horse", "deer"):
        ex, ey = hx + 1, hy + 3
    if p.get("panda"):
        pen.circle(ex, ey, 1.6, WHITE, outline=False)
    else:
        pen.circle(ex, ey, 2.2, BLACK, outline=False)
        pen.circle(ex + 0.6, ey + 0.7, 0.7, WHITE, outline=False)
    if p.get("collar"):
        pen.line([(hx - head_rx * 0.7, hy - head_ry * 0.9), (hx + head_rx * 0.1, hy - head_ry * 1.05)],
                 p["collar"], 3)


def _ears(pen: Pen, ears: str, hx: float, hy: float, rx: float, ry: float, c: RGB, dark: RGB) -> None:
    if ears == "pointy":  # fox: big triangles with dark tips
        for dx, col in ((-6, shade(c, 0.8)), (0, c)):
            pen.poly([(hx + dx - 5, hy + ry * 0.5), (hx + dx - 1, hy + ry + 15), (hx + dx + 5, hy + ry * 0.6)], col)
            pen.poly([(hx + dx - 2.5, hy + ry + 8), (hx + dx - 1, hy + ry + 15), (hx + dx + 1.4, hy + ry + 9)],
                     (40, 30, 28), outline=False)
    elif ears == "cat":
        for dx in (-7, 2):
            pen.poly([(hx + dx - 4, hy + ry * 0.6), (hx + dx, hy + ry + 9), (hx + dx + 5, hy + ry * 0.55)], c)
            pen.poly([(hx + dx - 1.5, hy + ry * 0.75), (hx + dx, hy + ry + 5), (hx + dx + 2.5, hy + ry * 0.7)], PINK,
                     outline=False)
    elif ears == "floppy":
        pen.ellipse(hx - rx * 0.55, hy - 1, 5, 11, dark, angle=15)
    elif ears == "round":
        for dx in (-rx * 0.6, rx * 0.3):
            pen.circle(hx + dx, hy + ry * 0.85, ry * 0.38, dark)
    elif ears == "pointy_small":
        pen.poly([(hx - 4, hy + ry * 0.6), (hx - 3, hy + ry + 8), (hx + 1, hy + ry * 0.6)], c)
    elif ears == "elephant":
        pen.ellipse(hx - rx * 0.5, hy - 2, rx * 0.75, ry * 1.05, shade(c, 0.85))
    elif ears == "mouse":
        for dx in (-6, 3):
            pen.circle(hx + dx, hy + ry * 0.95, 7, c)
            pen.circle(hx + dx, hy + ry * 0.95, 4.5, PINK, outline=False)
    elif ears == "horns":
        for dx in (-5, 1):
            pen.poly([(hx + dx - 2, hy + ry * 0.7), (hx + dx - 8, hy + ry + 12), (hx + dx + 2, hy + ry * 0.7)],
                     (235, 225, 190))


def _snout(pen: Pen, snout: str, kind: str, hx: float, hy: float, rx: float, ry: float, c: RGB, light: RGB) -> None:
    if snout == "pointy":
        tip = hx + rx + (12 if kind == "fox" else 8)
        pen.poly([(hx + rx * 0.3, hy + ry * 0.35), (tip, hy - ry * 0.25), (hx + rx * 0.2, hy - ry * 0.8)], c)
        if kind == "fox":
            pen.poly([(hx - rx * 0.1, hy - ry * 0.15), (tip - 4, hy - ry * 0.4), (hx + rx * 0.1, hy - ry * 0.95)],
                     light, outline=False)
        pen.circle(tip, hy - ry * 0.25, 2.2, BLACK, outline=False)
        if kind == "mouse":
            for dy in (-2, 1):
                pen.line([(tip - 3, hy - ry * 0.25), (tip + 8, hy - ry * 0.25 + dy * 2)], (60, 60, 60), 0.6)
    elif snout == "cat":
        pen.ellipse(hx + rx * 0.75, hy - ry * 0.35, 4, 3, light, outline=False)
        pen.circle(hx + rx * 0.95, hy - ry * 0.15, 1.4, PINK, outline=False)
        for dy in (-1.5, 0.5, 2.5):
            pen.line([(hx + rx * 0.7, hy - ry * 0.3), (hx + rx + 9, hy - ry * 0.3 + dy * 1.5)], (50, 50, 50), 0.5)
    elif snout == "long":
        pen.ellipse(hx + rx * 0.9, hy - ry * 0.35, rx * 0.7, ry * 0.42, mix(c, light, 0.6))
        pen.circle(hx + rx * 1.55, hy - ry * 0.2, 2.4, BLACK, outline=False)
    elif snout == "round":
        pen.ellipse(hx + rx * 0.7, hy - ry * 0.35, rx * 0.42, ry * 0.34, light)
        pen.circle(hx + rx * 1.0, hy - ry * 0.2, 2.4, BLACK, outline=False)
        if kind == "tiger":
            for dy in (0, 4):
                pen.line([(hx - rx * 0.6, hy + ry * 0.3 + dy), (hx - rx * 0.1, hy + ry * 0.2 + dy)], BLACK, 1.2)
    elif snout == "pig":
        pen.ellipse(hx + rx * 0.95, hy - ry * 0.2, 3.5, 5, mix(c, (220, 110, 130), 0.5))
        pen.circle(hx + rx * 1.05, hy - ry * 0.05, 0.9, (120, 50, 60), outline=False)
        pen.circle(hx + rx * 1.05, hy - ry * 0.4, 0.9, (120, 50, 60), outline=False)
    elif snout == "horse":
        pen.ellipse(hx + rx + 2, hy - ry * 0.6, rx * 0.55, ry * 0.55, mix(c, (60, 40, 30), 0.3), angle=-30)
        pen.circle(hx + rx + 5, hy - ry * 0.6, 1.2, BLACK, outline=False)
    elif snout == "trunk":
        pts = [(hx + rx * 0.6, hy - ry * 0.3), (hx + rx + 4, hy - ry * 0.9), (hx + rx + 6, hy - ry * 1.6),
               (hx + rx + 10, hy - ry * 2.0)]
        pen.line(pts, shade(c, 0.5), 8)
        pen.line(pts, c, 6)
        pen.poly([(hx + rx * 0.3, hy - ry * 0.6), (hx + rx + 3, hy - ry * 1.1), (hx + rx * 0.7, hy - ry * 0.55)],
                 WHITE)


# ---------------------------------------------------------------------------------------------
# other animals
# ---------------------------------------------------------------------------------------------

def draw_owl(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (140, 98, 62)
    light = mix(c, (250, 235, 200), 0.6)
    bark = (105, 70, 40)
    # the stump it sits on
    pen.rect(-22, 0, 22, 30, bark)
    pen.ellipse(0, 30, 22, 5, (175, 135, 90))
    pen.arc(0, 30, 12, 2.5, 0, 360, bark, 0.8)
    base = 32
    pen.ellipse(0, base + 30, 24, 32, c)  # body
    pen.ellipse(-21, base + 26, 8, 22, shade(c, 0.75), angle=8)  # wings
    pen.ellipse(21, base + 26, 8, 22, shade(c, 0.75), angle=-8)
    pen.ellipse(0, base + 20, 15, 19, light, outline=False)  # belly
    for row in range(3):
        for col in range(3 - row % 2):
            x = -8 + col * 8 + (4 if row % 2 else 0)
            y = base + 28 - row * 8
            pen.line([(x - 2.5, y + 2), (x, y), (x + 2.5, y + 2)], shade(c, 0.6), 1.0)
    pen.poly([(-20, base + 52), (-17, base + 68), (-9, base + 56)], c)  # ear tufts
    pen.poly([(20, base + 52), (17, base + 68), (9, base + 56)], c)
    for dx in (-9.5, 9.5):  # big eyes
        pen.circle(dx, base + 46, 9, (250, 245, 230))
        pen.circle(dx, base + 46, 6, (250, 190, 40), outline=False)
        pen.circle(dx, base + 46, 3.4, BLACK, outline=False)
        pen.circle(dx + 1.2, base + 47.5, 1.1, WHITE, outline=False)
    pen.poly([(-3, base + 40), (3, base + 40), (0, base + 32)], (240, 160, 40))  # beak
    for dx in (-7, 7):  # feet
        pen.ellipse(dx, base + 0.5, 4.5, 2.2, (240, 160, 40))


def draw_rabbit(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (235, 232, 228)
    pen.circle(-22, 20, 6, WHITE)  # cotton tail
    pen.ellipse(-2, 22, 22, 20, c)  # body (sitting)
    pen.ellipse(-10, 8, 14, 8, shade(c, 0.9))  # hind leg
    for dx, ang in ((6, 8), (14, -6)):  # long ears
        pen.ellipse(dx + 10, 76, 4.5, 18, c, angle=ang)
        pen.ellipse(dx + 10, 76, 2.2, 13, PINK, angle=ang, outline=False)
    pen.circle(20, 50, 13, c)  # head
    pen.ellipse(14, 10, 3.5, 10, c)  # front paws
    pen.ellipse(22, 6, 5, 3, c)
    pen.circle(25, 54, 2.2, BLACK, outline=False)
    pen.circle(25.6, 54.8, 0.7, WHITE, outline=False)
    pen.circle(32, 47, 1.8, PINK, outline=False)
    for dy in (-1.5, 1.5):
        pen.line([(31, 46), (40, 46 + dy * 1.6)], (90, 90, 90), 0.5)


def draw_squirrel(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (185, 100, 45)
    pts = ellipse_points(-18, 50, 16, 36, -12)
    pen.poly(pts, c)  # big tail
    pen.ellipse(-18, 58, 8, 26, mix(c, (240, 200, 150), 0.4), angle=-12, outline=False)
    pen.ellipse(2, 24, 15, 22, c)
    pen.ellipse(6, 20, 8, 15, (240, 215, 175), outline=False)
    pen.circle(10, 52, 12, c)
    pen.poly([(2, 60), (5, 73), (9, 61)], c)
    pen.circle(15, 55, 2, BLACK, outline=False)
    pen.circle(21, 49, 1.4, BLACK, outline=False)
    pen.ellipse(14, 30, 4, 3, shade(c, 0.8))  # paws holding something
    pen.circle(17, 33, 4, (150, 95, 45))  # an acorn
    pen.ellipse(4, 3, 9, 3, shade(c, 0.8))


def draw_bird(pen: Pen, colour: RGB | None, rng: random.Random, flying: bool = False) -> None:
    c = colour or (60, 120, 215)
    if flying:
        pen.poly([(-4, 50), (-26, 78), (-10, 70), (2, 54)], shade(c, 0.8))
    pen.poly([(-22, 52), (-36, 58), (-34, 44)], shade(c, 0.7))  # tail
    pen.ellipse(-4, 50, 22, 14, c)
    pen.ellipse(-2, 45, 14, 7, mix(c, WHITE, 0.55), outline=False)
    pen.circle(18, 60, 10, c)
    pen.poly([(26, 63), (36, 59), (26, 56)], (245, 170, 40))
    pen.circle(21, 63, 2, BLACK, outline=False)
    if flying:
        pen.poly([(-6, 52), (-20, 90), (0, 76), (6, 54)], shade(c, 0.9))
    else:
        pen.ellipse(-6, 52, 14, 7, shade(c, 0.8), angle=-12)
        for dx in (-4, 4):
            pen.line([(dx, 37), (dx, 26)], (200, 130, 40), 1.6)
            pen.line([(dx - 3, 26), (dx + 3, 26)], (200, 130, 40), 1.4)


def draw_duck(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (250, 215, 60)
    pen.ellipse(0, 26, 28, 18, c)
    pen.poly([(-24, 30), (-34, 42), (-22, 38)], c)
    pen.ellipse(-4, 30, 15, 8, shade(c, 0.85), angle=-10)
    pen.circle(20, 52, 12, c)
    pen.ellipse(33, 49, 8, 3.5, (245, 140, 30))
    pen.circle(23, 56, 2, BLACK, outline=False)
    for dx in (-6, 6):
        pen.line([(dx, 9), (dx, 2)], (245, 140, 30), 2)
        pen.ellipse(dx + 2, 1.5, 5, 1.8, (245, 140, 30), outline=False)


def draw_fish(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (250, 135, 30)
    pen.poly([(-26, 50), (-44, 64), (-40, 50), (-44, 36)], shade(c, 0.85))
    pen.ellipse(0, 50, 28, 16, c)
    pen.poly([(-4, 64), (6, 74), (10, 63)], shade(c, 0.8))
    pen.arc(10, 50, 6, 12, 100, 260, shade(c, 0.6), 1.2)
    pen.circle(16, 54, 3.5, WHITE)
    pen.circle(17, 54, 1.8, BLACK, outline=False)


def draw_frog(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (95, 180, 70)
    pen.ellipse(-20, 10, 14, 9, shade(c, 0.85))
    pen.ellipse(20, 10, 14, 9, shade(c, 0.85))
    pen.ellipse(0, 26, 26, 22, c)
    pen.ellipse(0, 18, 16, 12, mix(c, (240, 240, 190), 0.6), outline=False)
    for dx in (-12, 12):
        pen.circle(dx, 48, 9, c)
        pen.circle(dx, 49, 6, WHITE, outline=False)
        pen.circle(dx, 49, 3, BLACK, outline=False)
    pen.arc(0, 38, 12, 5, 200, 340, shade(c, 0.4), 1.2)
    for dx in (-10, 10):
        pen.ellipse(dx, 2, 6, 2.5, c)


def draw_turtle(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (95, 145, 75)
    skin = (150, 190, 110)
    for dx in (-20, 18):
        pen.ellipse(dx, 6, 6, 7, skin)
    pen.ellipse(34, 22, 9, 7, skin)
    pen.circle(38, 24, 1.6, BLACK, outline=False)
    pen.poly(ellipse_points(0, 14, 32, 30, 0, 18, 0, 180), c)
    for cx, cy in ((-14, 24), (0, 30), (14, 24), (-6, 18), (8, 18)):
        pen.poly(ellipse_points(cx, cy, 6, 5, 0, 6), shade(c, 1.25), outline=shade(c, 0.5))
    pen.rect(-33, 12, 33, 15, shade(c, 0.8))


def draw_butterfly(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (240, 120, 200)
    for s in (-1, 1):
        pen.ellipse(s * 14, 62, 14, 18, c, angle=s * 20)
        pen.ellipse(s * 11, 40, 10, 12, shade(c, 0.85), angle=-s * 20)
        pen.circle(s * 15, 64, 4, WHITE, outline=False)
    pen.ellipse(0, 50, 2.6, 18, BLACK)
    pen.line([(0, 66), (-6, 80)], BLACK, 0.8)
    pen.line([(0, 66), (6, 80)], BLACK, 0.8)


# ---------------------------------------------------------------------------------------------
# people and robots (front view)
# ---------------------------------------------------------------------------------------------

HAIR = [(60, 40, 25), (30, 25, 25), (150, 95, 45), (225, 185, 95)]


def draw_person(pen: Pen, kind: str, colour: RGB | None, rng: random.Random) -> None:
    feminine = kind in ("girl", "woman", "princess") or (kind in ("child", "person") and rng.random() < 0.5)
    royal = kind in ("princess", "king")
    elder = kind == "king"
    cloth = colour or {"princess": (245, 140, 185), "king": (190, 35, 45), "girl": (220, 60, 70),
                       "woman": (90, 140, 210), "boy": (60, 120, 210), "man": (70, 130, 80)}.get(
        kind, rng.choice([(220, 80, 60), (60, 130, 200), (240, 190, 40), (120, 180, 90)]))
    hair = (235, 200, 110) if kind == "princess" else ((225, 225, 225) if elder else rng.choice(HAIR))
    skin = rng.choice([SKIN, (225, 175, 135), (190, 135, 100)])
    head_y, head_r = 84, 11
    if feminine:
        pen.ellipse(0, 72, 14, 18, hair)  # long hair behind
    # legs / shoes
    if feminine or royal:
        for dx in (-5, 5):
            pen.rect(dx - 2.4, 2, dx + 2.4, 30, skin)
            pen.ellipse(dx + 1, 2, 4.2, 2.4, (70, 40, 30))
        hem = 2 if royal else 24
        pen.poly([(-7, 68), (7, 68), (18 if royal else 16, hem), (-18 if royal else -16, hem)], cloth)
        pen.line([(-17 if royal else -15, hem + 2), (17 if royal else 15, hem + 2)], shade(cloth, 1.4), 1.5)
    else:
        trousers = (60, 70, 110) if kind != "king" else shade(cloth, 0.6)
        for dx in (-5, 5):
            pen.rect(dx - 3.8, 3, dx + 3.8, 38, trousers)
            pen.ellipse(dx + 1, 2.5, 5.2, 2.6, (50, 35, 30))
        pen.rect(-11, 36, 11, 68, cloth)
        if royal:
            pen.poly([(-14, 68), (14, 68), (20, 4), (-20, 4)], cloth)
            pen.rect(-15, 4, 15, 8, WHITE)
    # arms
    for s in (-1, 1):
        pen.line([(s * 10, 66), (s * 17, 50), (s * 19, 40)], shade(cloth, 0.9), 5)
        pen.circle(s * 19, 38.5, 3, skin)
    pen.rect(-3, 68, 3, 74, skin, outline=False)  # neck
    pen.circle(0, head_y, head_r, skin)
    # hair on top
    if feminine:
        pen.poly(ellipse_points(0, head_y + 2, head_r + 1, head_r, 0, 14, 0, 180), hair)
    elif not elder:
        pen.poly(ellipse_points(0, head_y + 3, head_r + 0.5, head_r - 1, 0, 14, 0, 180), hair)
    else:
        pen.poly([(-9, 78), (9, 78), (5, 66), (0, 63), (-5, 66)], (235, 235, 235))  # beard
    for dx in (-4, 4):
        pen.circle(dx, head_y + 1, 1.4, BLACK, outline=False)
        pen.circle(dx * 1.5, head_y - 3, 1.8, (240, 150, 150), outline=False)
    pen.arc(0, head_y - 3, 4, 2.5, 200, 340, (150, 60, 50), 0.9)
    if royal:
        gold = (245, 200, 50)
        pen.poly([(-8, head_y + 9), (-8, head_y + 18), (-4, head_y + 13), (0, head_y + 19), (4, head_y + 13),
                  (8, head_y + 18), (8, head_y + 9)], gold)


def draw_robot(pen: Pen, colour: RGB | None, rng: random.Random) -> None:
    c = colour or (185, 192, 205)
    dark = shade(c, 0.55)
    glow = (90, 230, 255)
    for dx in (-8, 8):  # legs and feet
        pen.rect(dx - 4, 6, dx + 4, 28, dark)
        pen.rect(dx - 6.5, 0, dx + 6.5, 6, shade(c, 0.7))
    pen.rect(-17, 28, 17, 64, c)  # body
    pen.rect(-10, 36, 10, 54, shade(c, 0.8))  # chest panel
    for i, col in enumerate([(240, 70, 60), (250, 210, 60), (80, 210, 110)]):
        pen.circle(-5 + i * 5, 49, 2, col, outline=False)
    pen.rect(-7, 39, 7, 42, glow, outline=False)
    for s in (-1, 1):  # arms
        pen.rect(s * 17, 58, s * 23, 36, dark)
        pen.poly([(s * 17, 36), (s * 23, 36), (s * 25, 30), (s * 20, 33), (s * 15, 30)], shade(c, 0.7))
    pen.rect(-3, 64, 3, 68, dark)
    pen.rect(-13, 68, 13, 90, c)  # head
    for dx in (-6, 6):
        pen.circle(dx, 81, 3.6, glow)
        pen.circle(dx, 81, 1.4, WHITE, outline=False)
    pen.rect(-6, 72, 6, 75, dark)
    for x in (-3, 0, 3):
        pen.line([(x, 72), (x, 75)], shade(c, 0.9), 0.6)
    pen.line([(0, 90), (0, 97)], dark, 1.5)  # antenna
    pen.circle(0, 98.5, 2.6, (240, 60, 60))
    pen.rect(-15, 76, -13, 84, dark)
    pen.rect(13, 76, 15, 84, dark)


#: kind -> (draw function, height as a fraction of the picture's height, where it goes)
FIGURES: dict[str, tuple[Callable[..., None], float, str]] = {
    "fox": (lambda pen, c, rng: draw_quadruped(pen, "fox", c, rng), 0.27, "ground"),
    "cat": (lambda pen, c, rng: draw_quadruped(pen, "cat", c, rng), 0.21, "ground"),
    "dog": (lambda pen, c, rng: draw_quadruped(pen, "dog", c, rng), 0.24, "ground"),
    "bear": (lambda pen, c, rng: draw_quadruped(pen, "bear", c, rng), 0.3, "ground"),
    "panda": (lambda pen, c, rng: draw_quadruped(pen, "panda", c, rng), 0.28, "ground"),
    "lion": (lambda pen, c, rng: draw_quadruped(pen, "lion", c, rng), 0.28, "ground"),
    "tiger": (lambda pen, c, rng: draw_quadruped(pen, "tiger", c, rng), 0.27, "ground"),
    "pig": (lambda pen, c, rng: draw_quadruped(pen, "pig", c, rng), 0.18, "ground"),
    "horse": (lambda pen, c, rng: draw_quadruped(pen, "horse", c, rng), 0.36, "ground"),
    "deer": (lambda pen, c, rng: draw_quadruped(pen, "deer", c, rng), 0.36, "ground"),
    "elephant": (lambda pen, c, rng: draw_quadruped(pen, "elephant", c, rng), 0.38, "ground"),
    "mouse": (lambda pen, c, rng: draw_quadruped(pen, "mouse", c, rng), 0.1, "ground"),
    "dragon": (lambda pen, c, rng: draw_quadruped(pen, "dragon", c, rng), 0.36, "ground"),
    "owl": (draw_owl, 0.26, "ground"),
    "rabbit": (draw_rabbit, 0.2, "ground"),
    "squirrel": (draw_squirrel, 0.15, "ground"),
    "duck": (draw_duck, 0.13, "ground"),
    "frog": (draw_frog, 0.1, "ground"),
    "turtle": (draw_turtle, 0.13, "ground"),
    "bird": (lambda pen, c, rng: draw_bird(pen, c, rng, flying=True), 0.1, "sky"),
    "butterfly": (draw_butterfly, 0.08, "sky"),
    "fish": (draw_fish, 0.12, "water"),
    "robot": (draw_robot, 0.36, "ground"),
}
for _person in ("girl", "boy", "woman", "man", "child", "person", "princess", "king"):
    FIGURES[_person] = ((lambda k: lambda pen, c, rng: draw_person(pen, k, c, rng))(_person),
                        {"child": 0.32, "girl": 0.34, "boy": 0.34, "princess": 0.42, "king": 0.44}.get(_person, 0.44),
                        "ground")

#: figures drawn facing the viewer (never mirrored)
FRONT_FACING = {"owl", "frog", "butterfly", "robot", "girl", "boy", "woman", "man", "child", "person", "princess",
                "king"}
