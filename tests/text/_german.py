"""A German page (Grundgesetz, Art. 1-3) rendered for OCR, with its truth."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

GERMAN = """Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen
ist Verpflichtung aller staatlichen Gewalt. Das Deutsche Volk bekennt sich
darum zu unverletzlichen und unveräußerlichen Menschenrechten als Grundlage
jeder menschlichen Gemeinschaft, des Friedens und der Gerechtigkeit in der Welt.
Männer und Frauen sind gleichberechtigt. Niemand darf wegen seines Geschlechtes,
seiner Abstammung, seiner Sprache, seiner Heimat und Herkunft benachteiligt werden."""


def german_page() -> Image.Image:
    lines = GERMAN.split("\n")
    font = ImageFont.load_default(size=30)
    im = Image.new("L", (1400, 60 + 45 * len(lines)), 255)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((30, 30 + 45 * i), line, font=font, fill=0)
    return im
