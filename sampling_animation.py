"""
sample.py's animation_file: the live view's frames drawn into an animated GIF, one frame per iteration,
to share what the terminal shows. What a frame says comes from sampling_log (frame_header,
render_tokens, frame_rows: one copy for both views); this module adds the colours and the pixels:
masked characters as shaded cells, the prompt in its own colour, the finished text held longer.

Pillow draws the pictures. It is optional (requirements.txt lists it, matplotlib installs it too):
only animation_file needs it, and check_settings says so in one line before any model is loaded.
"""

import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

import sampling_log
from common import UserError
from queue_io import atomic_write

try:
    from PIL import Image, ImageDraw, ImageFont
except ImportError:  # checked by check_settings, where it matters
    Image = ImageDraw = ImageFont = None

# what each character of a frame is: one letter per character, laid over the text (frame_rows cuts both
# the same way); '-' is frame_rows' line between two samples
HEADER, PROMPT, MASKED, TEXT, SEPARATOR = 'h', 'p', 'm', 't', '-'
BACKGROUND = (24, 24, 30)
COLOURS = {HEADER: (140, 140, 155), SEPARATOR: (85, 85, 100), PROMPT: (255, 176, 60),
           MASKED: (62, 72, 96), TEXT: (232, 232, 232)}
FONT_SIZE = 16      # pixels: with the default 80 columns the picture is about 800 wide
MARGIN = 12         # pixels around the text
MIN_FRAME_MS = 20   # browsers play shorter GIF delays at 100 ms
# monospace fonts Pillow finds by name on Linux / macOS / Windows; matplotlib's copy of DejaVu after them
FONT_FILES = ('DejaVuSansMono.ttf', 'Menlo.ttc', 'consola.ttf')


def check_settings(cfg):
    """The animation keys, before any model is loaded: a .gif name, Pillow at hand, sizes that make sense."""
    if cfg.animation_file is None:
        return
    if not isinstance(cfg.animation_file, str) or not cfg.animation_file.lower().endswith('.gif'):
        raise UserError(f"animation_file={cfg.animation_file!r}: the animation is a GIF; give a path ending in .gif")
    if Image is None:
        raise UserError("animation_file needs Pillow, which is not installed: pip install pillow")
    for key, least, why in (('animation_frame_ms', MIN_FRAME_MS, 'browsers play shorter delays at 100 ms'),
                            ('animation_final_ms', MIN_FRAME_MS, 'browsers play shorter delays at 100 ms'),
                            ('animation_columns', 10, 'characters per line')):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < least:
            raise UserError(f"{key}={cfg[key]!r} must be a whole number >= {least} ({why})")


# -----------------------------------------------------------------------------
# the frames, as text

@dataclass
class Frame:
    header: str
    texts: list   # the samples as the live view shows them: masked characters as sampling_log.PLACEHOLDER
    kinds: list   # one letter per character of each text (PROMPT, MASKED, TEXT), '\n' where the text has one

    def rows(self, columns):
        """(rows of text, rows of kinds): the live view's rows, the two cut the same way."""
        header_kinds = ''.join(MASKED if c == sampling_log.PLACEHOLDER else HEADER for c in self.header)
        return (sampling_log.frame_rows(self.header, self.texts, columns),
                sampling_log.frame_rows(header_kinds, self.kinds, columns))


def character_kinds(tokens, texts, prompt_length, vocab):
    """One string of kind letters per sample: the prompt (the first prompt_length positions, in every
    sampler), masked positions ([MASK] or [WRONG]), generated characters; '\n' kept where the text has it."""
    masked = (tokens == vocab.mask_token_id) | (tokens == vocab.wrong_token_id)  # (B, L)
    in_prompt = torch.arange(tokens.shape[1], device=tokens.device) < prompt_length  # (L,)
    kind = torch.where(in_prompt, 0, torch.where(masked, 1, 2))  # (B, L)
    letters = (PROMPT, MASKED, TEXT)
    return [''.join('\n' if c == '\n' else letters[k] for c, k in zip(text, row))
            for text, row in zip(texts, kind.tolist())]


class Recorder:
    """A log callback for the loops that keeps every iteration's frame, then passes the record on to
    `then` (the verbose lines or the live view). Without `then` it shows the progress bar itself: a
    loop given a log callback shows none."""

    def __init__(self, vocab, prompt_length, label, total, then=None):
        self.vocab, self.prompt_length, self.label, self.total, self.then = vocab, prompt_length, label, total, then
        self.frames = []
        self.bar = tqdm(total=total, desc=label, leave=False) if then is None else None

    def __call__(self, it, record):
        tokens = record['tokens']  # (B, L); the diffusion loop changes it in place later: render it now
        texts = sampling_log.render_tokens(tokens, self.vocab, sampling_log.PLACEHOLDER)
        header = sampling_log.frame_header(self.label, it, self.total, sampling_log.PLACEHOLDER)
        self.frames.append(Frame(header, texts, character_kinds(tokens, texts, self.prompt_length, self.vocab)))
        if self.then is not None:
            self.then(it, record)
        if self.bar is not None:
            self.bar.update()

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def save(self, path, columns, frame_ms, final_ms):
        """Write the frames to the GIF `path` (atomically): frame_ms each, the last one final_ms."""
        laid_out = [frame.rows(columns) for frame in self.frames]
        canvas = Canvas(load_font(FONT_SIZE), columns, max(len(text_rows) for text_rows, _ in laid_out))
        palette = palette_image()
        images = [draw_frame(text_rows, kind_rows, canvas).quantize(palette=palette, dither=Image.Dither.NONE)
                  for text_rows, kind_rows in laid_out]
        write_gif(path, images, [frame_ms] * (len(images) - 1) + [final_ms])


# -----------------------------------------------------------------------------
# the frames, as pictures

def load_font(size):
    """A monospace TrueType font: the first of FONT_FILES found, else matplotlib's DejaVu Sans Mono,
    else Pillow's own font (not monospace: the cells keep the columns straight anyway)."""
    candidates = list(FONT_FILES)
    try:
        import matplotlib
        candidates.append(os.path.join(matplotlib.get_data_path(), 'fonts', 'ttf', 'DejaVuSansMono.ttf'))
    except ImportError:
        pass
    for name in candidates:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


class Canvas:
    """A grid of character cells: `columns` wide and `n_rows` high, the same for every frame."""

    def __init__(self, font, columns, n_rows):
        ascent, descent = font.getmetrics()
        self.font, self.cell, self.line = font, round(font.getlength('M')), ascent + descent + 2
        self.size = (2 * MARGIN + columns * self.cell, 2 * MARGIN + n_rows * self.line)

    def origin(self, row, column):
        return MARGIN + column * self.cell, MARGIN + row * self.line


def draw_frame(text_rows, kind_rows, canvas):
    """An RGB picture of one frame: characters in their kind's colour, masked ones as shaded cells.
    One character at a time, each in its own cell, so the columns stay straight in any font."""
    image = Image.new('RGB', canvas.size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for r, (text, kinds) in enumerate(zip(text_rows, kind_rows)):
        for c, (char, kind) in enumerate(zip(text, kinds)):
            x, y = canvas.origin(r, c)
            if kind == MASKED:
                draw.rectangle([x + 1, y + 2, x + canvas.cell - 2, y + canvas.line - 3], fill=COLOURS[MASKED])
            elif char != ' ':
                draw.text((x, y), char, font=canvas.font, fill=COLOURS[kind])
    return image


def palette_image():
    """A 'P' image whose palette is the background and 16 shades from it to each colour: the anti-aliased
    text maps onto it without dithering, and every frame shares it (no flicker, small frame deltas)."""
    shades = [tuple(round(b + (c - b) * step / 16) for b, c in zip(BACKGROUND, colour))
              for colour in COLOURS.values() for step in range(1, 17)]
    colours = [BACKGROUND] + shades
    colours += [BACKGROUND] * (256 - len(colours))
    image = Image.new('P', (1, 1))
    image.putpalette([channel for colour in colours for channel in colour])
    return image


def write_gif(path, images, durations_ms):
    """One GIF frame per image, looping forever; written under a temporary name and renamed into place.
    (Pillow merges identical neighbours into one frame; the header's iteration counter, never cut off
    by frame_rows, makes every frame differ.)"""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: images[0].save(f, format='GIF', save_all=True, append_images=images[1:],
                                                duration=durations_ms, loop=0))
