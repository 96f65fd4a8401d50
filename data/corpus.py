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
    text = decode_utf8(path)
    check_corpus(text, path)
    return text


def decode_utf8(path):
    """The text of `path` with universal newlines, as a text-mode read gives it; a file that is not
    UTF-8 is a UserError naming the first byte that is not (decoded whole, so the offset is the file's)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise UserError(f"corpus {path} is not UTF-8 text: byte {e.start} (0x{raw[e.start]:02x}) cannot be decoded; "
                        f"re-encode the file to UTF-8 (e.g. iconv -f <its encoding> -t utf-8 {path} > new.txt) "
                        f"and set input_file to the new file") from None
    return text.replace('\r\n', '\n').replace('\r', '\n')


def check_corpus(text, path):
    """A corpus needs text to split into train and val windows, and two different characters to learn."""
    if not text:
        raise UserError(f"corpus {path} is empty")
    if len(set(text)) == 1:
        held = 'a single character' if len(text) == 1 else f"{len(text)} characters, all of them"
        raise UserError(f"corpus {path} holds {held} {text[0]!r}: a model has nothing to learn from one distinct "
                        f"character; use a text with at least two different characters")


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
