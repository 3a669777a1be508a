"""Pages in a non-Latin script (and an English one) rendered for OCR with a system font,
with their truth: the Universal Declaration of Human Rights, Art. 1-2."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# fonts-dejavu-core (scripts/bootstrap.sh --test): Pillow's own default font has no Cyrillic.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

RUSSIAN = """Все люди рождаются свободными и равными в своем достоинстве и правах.
Они наделены разумом и совестью и должны поступать в отношении друг друга
в духе братства. Каждый человек должен обладать всеми правами и всеми
свободами, провозглашенными настоящей Декларацией, без какого бы то ни было
различия, как-то в отношении расы, цвета кожи, пола, языка, религии."""

ENGLISH = """All human beings are born free and equal in dignity and rights.
They are endowed with reason and conscience and should act towards one another
in a spirit of brotherhood. Everyone is entitled to all the rights and freedoms
set forth in this Declaration, without distinction of any kind, such as race,
colour, sex, language, religion, political or other opinion."""


def text_page(text: str) -> Image.Image:
    assert DEJAVU.exists(), f"{DEJAVU} is missing (apt-get install fonts-dejavu-core; scripts/bootstrap.sh --test)"
    lines = text.split("\n")
    font = ImageFont.truetype(str(DEJAVU), 28)
    im = Image.new("L", (1500, 60 + 45 * len(lines)), 255)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((30, 30 + 45 * i), line, font=font, fill=0)
    return im
