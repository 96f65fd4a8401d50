"""
What the sections of evaluate.py share: the corpus they read (split as the providers split it), the
validation windows, the table printer, and matplotlib, imported only for plot=True.
"""

from dataclasses import dataclass

import numpy as np
import torch

import eval_metrics as em
from common import UserError
from data.corpus import load_model_splits


@dataclass
class Corpus:
    train_text: str
    val_text: str
    val_ids: torch.Tensor         # (N,) the validation split, encoded
    vocabulary: set               # lower-case words of the training text
    train_ids: np.ndarray = None  # the training split, encoded (the corpus's own small integers, not copied)
    index: em.CorpusIndex = None  # built on first use (samples section)

    def corpus_index(self):
        if self.index is None:
            self.index = em.CorpusIndex(self.train_text)
        return self.index


def load_corpus(ckpt, device):
    """The checkpoint's corpus, split as the providers split it; refused when its vocabulary differs."""
    splits = load_model_splits(ckpt.get('config') or {}, ckpt['meta']['stoi'])
    train_text = splits.text('train')
    return Corpus(train_text, splits.text('val'), torch.from_numpy(splits.ids['val']).to(device, torch.long),
                  set(em.words(train_text)), splits.ids['train'])


def val_windows(val_ids, length):
    """(N, length) consecutive, non-overlapping windows covering the validation split."""
    n = len(val_ids) // length
    if n == 0:
        raise UserError(f"the validation split ({len(val_ids)} characters) is shorter than one block of {length}")
    return val_ids[:n * length].view(n, length)


def import_pyplot():
    """matplotlib is not a project dependency: imported only for plot=True."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("plot=True needs matplotlib, which is not a project dependency: "
                        "pip install matplotlib") from None
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def fmt(value, digits=4):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pm(mean, se, digits=3):
    """'mean ± se' ('mean' alone without an SE, '-' without a mean)."""
    if mean is None:
        return '-'
    return f"{mean:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else '')


def print_table(title, headers, rows, digits=None):
    """A left-aligned first column and right-aligned numbers; digits[i]: decimals of column i (default 4)."""
    digits = digits or [4] * len(headers)
    cells = [[fmt(v, d) for v, d in zip(row, digits)] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print('  '.join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for row in cells:
        print('  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
