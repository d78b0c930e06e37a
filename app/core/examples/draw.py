"""Draws the web page's example pictures with Pillow, so the project ships no third-party photos.

Regenerate them with `python -m app.examples.draw` (deterministic: same bytes every run).
"""

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = (384, 288)
HERE = Path(__file__).resolve().parent


def house(draw: ImageDraw.ImageDraw) -> None:
    """A house with a red roof on a lawn, under a blue sky with the sun."""
    draw.rectangle((0, 0, 384, 200), fill=(120, 180, 240))
    draw.rectangle((0, 200, 384, 288), fill=(70, 160, 70))
    draw.ellipse((300, 25, 350, 75), fill=(250, 215, 60))
    draw.rectangle((110, 130, 260, 230), fill=(235, 225, 200))
    draw.polygon([(95, 135), (185, 70), (275, 135)], fill=(190, 40, 40))
    draw.rectangle((170, 180, 200, 230), fill=(110, 70, 40))
    for left in (125, 220):
        draw.rectangle((left, 150, left + 28, 175), fill=(150, 200, 240), outline=(255, 255, 255))


def sailboat(draw: ImageDraw.ImageDraw) -> None:
    """A sailboat on the sea at sunset."""
    for y in range(170):
        draw.line((0, y, 384, y), fill=(250, 140 + y // 3, 60 + y // 2))
    draw.ellipse((150, 120, 234, 204), fill=(255, 200, 80))
    draw.rectangle((0, 170, 384, 288), fill=(30, 70, 140))
    for y in range(185, 288, 18):
        draw.line((20, y, 364, y), fill=(60, 110, 180), width=2)
    draw.polygon([(120, 215), (260, 215), (240, 240), (140, 240)], fill=(90, 50, 30))
    draw.line((190, 100, 190, 215), fill=(60, 40, 20), width=4)
    draw.polygon([(194, 105), (194, 208), (255, 208)], fill=(245, 245, 240))
    draw.polygon([(186, 115), (186, 208), (140, 208)], fill=(230, 230, 225))


def tree(draw: ImageDraw.ImageDraw) -> None:
    """An apple tree in a green field, with white clouds."""
    draw.rectangle((0, 0, 384, 210), fill=(150, 200, 245))
    draw.rectangle((0, 210, 384, 288), fill=(90, 170, 60))
    for x, y in ((40, 40), (80, 30), (260, 55), (300, 45)):
        draw.ellipse((x, y, x + 70, y + 35), fill=(255, 255, 255))
    draw.rectangle((178, 150, 206, 240), fill=(110, 70, 35))
    draw.ellipse((110, 60, 275, 180), fill=(40, 130, 50))
    for x, y in ((150, 100), (200, 85), (235, 125), (170, 140), (215, 150)):
        draw.ellipse((x, y, x + 14, y + 14), fill=(210, 30, 30))


SCENES: dict[str, Callable[[ImageDraw.ImageDraw], None]] = {
    "house.jpg": house,
    "sailboat.jpg": sailboat,
    "tree.jpg": tree,
}


def draw_all(directory: Path = HERE) -> list[Path]:
    """Draw every scene as a small JPEG in `directory`; returns their paths."""
    paths = []
    for name, scene in SCENES.items():
        image = Image.new("RGB", SIZE)
        scene(ImageDraw.Draw(image))
        path = directory / name
        image.save(path, format="JPEG", quality=85, optimize=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for path in draw_all():
        print(f"{path} ({path.stat().st_size} bytes)")
