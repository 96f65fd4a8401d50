"""
The text corpus and the character vocabulary shared by every provider.

One copy of Tiny Shakespeare lives at data/tinyshakespeare/input.txt. When it is missing it is
downloaded (to a temporary name, then renamed into place) from the address nanoGPT's
shakespeare_char preparation uses. Any other UTF-8 text works through the `input_file` key.
"""

import os
import urllib.request

import numpy as np

from common import REPO_ROOT, UserError

IGNORE_INDEX = -100  # label of positions that carry no loss
SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
DEFAULT_CORPUS = os.path.join(REPO_ROOT, 'data', 'tinyshakespeare', 'input.txt')
TRAIN_FRACTION = 0.9


def download(url, path, timeout=30):
    """Fetch `url` to `path` atomically; on failure say where to put the file by hand."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.download-{os.getpid()}'
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, 'wb') as f:
            f.write(response.read())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"could not download the corpus from {url} ({e}); "
                        f"download it yourself and save it as {path}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_corpus(input_file=None, url=SHAKESPEARE_URL):
    """The corpus text. `input_file=None` means Tiny Shakespeare, downloaded when missing."""
    path = input_file or DEFAULT_CORPUS
    if not os.path.exists(path):
        if input_file:
            raise UserError(f"input_file {input_file} does not exist")
        print(f"downloading Tiny Shakespeare to {path} ...")
        download(url, path)
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if len(text) < 2:
        raise UserError(f"corpus {path} is empty")
    return text


def build_vocab(text):
    """Sorted characters of the corpus plus the two special tokens [MASK] and [WRONG]."""
    chars = sorted(set(text))
    return dict(
        chars=chars,
        stoi={ch: i for i, ch in enumerate(chars)},
        itos={i: ch for i, ch in enumerate(chars)},
        mask_token_id=len(chars),
        wrong_token_id=len(chars) + 1,
        vocab_size=len(chars) + 2,  # every model has both special tokens: identical shapes
        ignore_index=IGNORE_INDEX,
    )


def encode(text, stoi):
    """Token ids of `text` as an int64 numpy array; characters outside `stoi` are a UserError."""
    unknown = sorted(set(text) - set(stoi))
    if unknown:
        raise UserError(f"text contains characters outside the vocabulary: {''.join(unknown)!r}")
    lookup = np.zeros(max(map(ord, stoi)) + 1, dtype=np.int64)
    for ch, i in stoi.items():
        lookup[ord(ch)] = i
    return lookup[np.frombuffer(text.encode('utf-32-le'), dtype=np.uint32)]


def decode(ids, itos):
    """Text of token ids; special tokens show as [MASK] / [WRONG] / [?]."""
    return ''.join(itos.get(int(i), '[MASK]' if int(i) == len(itos) else
                            '[WRONG]' if int(i) == len(itos) + 1 else '[?]') for i in ids)


def split_ids(ids):
    """90/10 train/val split of the encoded corpus."""
    n = int(len(ids) * TRAIN_FRACTION)
    return ids[:n], ids[n:]
