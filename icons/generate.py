#!/usr/bin/env python3
"""Draws memtray's icons (the app icon and the tray frames) as PNG files, with the standard library only.

Run from anywhere: `python3 icons/generate.py`. The PNGs are committed; rerun after changing a shape or colour.
Tray frames: `tray-idle.png`, `tray-attention.png` (stuck or failed messages), `tray-error.png` (no core),
and `tray-spin-00.png` .. `tray-spin-09.png`, a ring whose bright arc turns a tenth of a circle per frame.
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SPIN_FRAMES = 10


def write_png(path, size, pixel):
    """pixel(x, y) -> (r, g, b, a) floats in 0..1, sampled 4x4 per pixel for smooth edges."""
    rows = bytearray()
    for y in range(size):
        rows.append(0)
        for x in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(4):
                for sx in range(4):
                    r, g, b, a = pixel((x + (sx + 0.5) / 4) / size, (y + (sy + 0.5) / 4) / size)
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    acc[3] += a
            a = acc[3] / 16
            if a > 0:
                rows += bytes(round(min(1.0, c / acc[3]) * 255) for c in acc[:3])
            else:
                rows += b"\0\0\0"
            rows.append(round(a * 255))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")
    with open(os.path.join(HERE, path), "wb") as f:
        f.write(png)


CLEAR = (0, 0, 0, 0)
GREY = (0.62, 0.66, 0.72, 1)
BLUE = (0.27, 0.56, 0.98, 1)
AMBER = (0.96, 0.62, 0.07, 1)
RED = (0.90, 0.22, 0.21, 1)
INK = (0.11, 0.13, 0.17, 1)


def polar(u, v):
    dx, dy = u - 0.5, v - 0.5
    return math.hypot(dx, dy), (math.degrees(math.atan2(dx, -dy)) + 360) % 360


def ring(u, v, colour_at):
    r, angle = polar(u, v)
    if 0.27 <= r <= 0.42:
        return colour_at(angle)
    return None


def tray_idle(u, v):
    return ring(u, v, lambda a: GREY) or CLEAR


def tray_spin(frame):
    start = frame * 360 / SPIN_FRAMES

    def pixel(u, v):
        def colour(angle):
            behind = (start - angle) % 360
            if behind < 120:
                fade = 1 - behind / 120
                return tuple(BLUE[i] * fade + GREY[i] * (1 - fade) for i in range(3)) + (1,)
            return GREY

        return ring(u, v, colour) or CLEAR

    return pixel


def dot(u, v, colour):
    if math.hypot(u - 0.78, v - 0.22) <= 0.2:
        return colour
    return None


def tray_attention(u, v):
    return dot(u, v, AMBER) or ring(u, v, lambda a: GREY) or CLEAR


def tray_error(u, v):
    return dot(u, v, RED) or ring(u, v, lambda a: (0.45, 0.47, 0.5, 1)) or CLEAR


def app_icon(u, v):
    # A dark rounded square holding the tray ring and a blue arc.
    cx, cy = abs(u - 0.5), abs(v - 0.5)
    corner = 0.18
    qx, qy = max(cx - (0.5 - corner), 0), max(cy - (0.5 - corner), 0)
    if math.hypot(qx, qy) > corner:
        return CLEAR
    r, angle = polar(u, v)
    if 0.2 <= r <= 0.32:
        return BLUE if angle < 270 else GREY
    if r <= 0.08:
        return GREY
    return INK


def main():
    write_png("tray-idle.png", 32, tray_idle)
    write_png("tray-attention.png", 32, tray_attention)
    write_png("tray-error.png", 32, tray_error)
    for frame in range(SPIN_FRAMES):
        write_png(f"tray-spin-{frame:02}.png", 32, tray_spin(frame))
    for size, name in [(32, "32x32.png"), (128, "128x128.png"), (256, "128x128@2x.png"), (512, "icon.png")]:
        write_png(name, size, app_icon)


if __name__ == "__main__":
    main()
