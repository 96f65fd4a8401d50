"""
The text corpus, its standard splits and the character vocabulary shared by every provider.

Two kinds of corpus, picked by the `corpus` key (this module is the one place that knows their names):

  corpus=None     any UTF-8 text (`input_file`), split 90/10 into train and val. Without an input_file:
                  Tiny Shakespeare at data/tinyshakespeare/input.txt, downloaded when missing from the
                  address nanoGPT's shakespeare_char preparation uses.
  corpus='text8'  the character-level benchmark of the literature: Matt Mahoney's text8 (the first 10^8
                  bytes of an English Wikipedia dump of 2006, lower-case a-z and space), downloaded when
                  missing as text8.zip and unpacked to data/text8/text8 (or read from `input_file`),
                  checked (exactly 100,000,000 characters, exactly the 27 symbols), split the standard
                  way: the first 90M characters train, the next 5M val, the last 5M test.

Downloads and unpacking go to a temporary name that is then renamed into place. Token ids are kept
as one compact numpy array (uint8 for up to 256 characters) and the splits are views of it, so a
100M-character corpus costs about 100 MB, not several copies of it.
"""

import os
import urllib.request
import zipfile
from dataclasses import dataclass

import numpy as np

from common import REPO_ROOT, UserError
from queue_io import atomic_write

IGNORE_INDEX = -100  # label of positions that carry no loss
SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
DEFAULT_CORPUS = os.path.join(REPO_ROOT, 'data', 'tinyshakespeare', 'input.txt')
TRAIN_FRACTION = 0.9
CHUNK = 1 << 22  # characters encoded or decoded at a time: bounds the 4-byte code points held at once


@dataclass(frozen=True)
class Benchmark:
    """A fixed benchmark corpus: where it comes from, what it must hold, and its standard splits."""
    name: str
    url: str           # a zip archive...
    member: str        # ...holding the corpus under this name
    path: str          # where the unpacked corpus lives (the archive beside it, as <path>.zip)
    alphabet: str      # exactly these characters, one byte each, every one present
    split_sizes: tuple  # ((split, characters), ...): consecutive, in this order, covering the file

    @property
    def length(self):
        return sum(n for _, n in self.split_sizes)


TEXT8 = Benchmark(name='text8', url='http://mattmahoney.net/dc/text8.zip', member='text8',
                  path=os.path.join(REPO_ROOT, 'data', 'text8', 'text8'), alphabet=' abcdefghijklmnopqrstuvwxyz',
                  split_sizes=(('train', 90_000_000), ('val', 5_000_000), ('test', 5_000_000)))
BENCHMARKS = {TEXT8.name: TEXT8}


@dataclass
class Splits:
    """A corpus as token ids: `ids[split]` are views of one numpy array (uint8 up to 256 characters)."""
    path: str      # the file read (absolute)
    vocab: dict    # build_vocab's
    ids: dict      # {'train': (n,), 'val': (n,)[, 'test': (n,)]}
    length: int    # characters in the corpus

    def text(self, split):
        return decode_ids(self.ids[split], self.vocab['chars'])


def load_splits(corpus=None, input_file=None):
    """The corpus a config names (keys `corpus`, `input_file`), encoded and split."""
    if corpus is None:
        return plain_text_splits(input_file)
    if not isinstance(corpus, str) or corpus not in BENCHMARKS:
        raise UserError(f"corpus={corpus!r} is unknown; use None (any UTF-8 input_file) or one of "
                        f"{', '.join(map(repr, BENCHMARKS))}")
    return benchmark_splits(BENCHMARKS[corpus], input_file)


def load_model_splits(config, stoi):
    """The splits of the corpus a run was trained on (its saved config), refused when its vocabulary is
    not the model's `stoi`."""
    splits = load_splits(config.get('corpus'), config.get('input_file'))
    if splits.vocab['stoi'] != stoi:
        raise UserError(f"the corpus {splits.path} does not have the checkpoint's vocabulary "
                        f"(was the input_file changed or moved?)")
    return splits


# -----------------------------------------------------------------------------
# any UTF-8 text

def plain_text_splits(input_file=None):
    text = read_corpus(input_file)
    vocab = build_vocab(text)
    ids = encode(text, vocab['stoi'], ids_dtype(len(vocab['chars'])))
    train, val = split_ids(ids)
    return Splits(os.path.abspath(input_file or DEFAULT_CORPUS), vocab, {'train': train, 'val': val}, len(ids))


def download(url, path, timeout=30, alternative=None):
    """Fetch `url` to `path` atomically; on failure say where to put the file by hand (or `alternative`)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.download-{os.getpid()}'
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, 'wb') as f:
            f.write(response.read())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"could not download the corpus from {url} ({e}); download it yourself and save it "
                        f"as {path}" + (f" (or {alternative})" if alternative else '')) from None
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
    del raw  # before the replacements: the bytes and the text are never held twice over
    return text.replace('\r\n', '\n').replace('\r', '\n')


def check_corpus(text, path):
    """A corpus needs text to split into train and val windows, and two different characters to learn."""
    if not text:
        raise UserError(f"corpus {path} is empty")
    if len(set(text)) == 1:
        held = 'a single character' if len(text) == 1 else f"{len(text)} characters, all of them"
        raise UserError(f"corpus {path} holds {held} {text[0]!r}: a model has nothing to learn from one distinct "
                        f"character; use a text with at least two different characters")


# -----------------------------------------------------------------------------
# benchmark corpora (text8)

def benchmark_splits(spec, input_file=None):
    """The benchmark read from `input_file`, or from spec.path (downloaded and unpacked when missing);
    checked and split into spec.split_sizes."""
    path = input_file or spec.path
    if input_file and not os.path.exists(input_file):
        raise UserError(f"input_file {input_file} does not exist (the unpacked {spec.name} file is expected)")
    if not input_file:
        fetch_benchmark(spec)
    ids = read_benchmark(spec, path)
    splits, start = {}, 0
    for split, size in spec.split_sizes:
        splits[split] = ids[start:start + size]  # views: one copy of the corpus in all
        start += size
    return Splits(os.path.abspath(path), build_vocab(spec.alphabet), splits, len(ids))


def fetch_benchmark(spec):
    """Make sure spec.path exists: unpack <path>.zip, downloading it first when it is missing too."""
    if os.path.exists(spec.path):
        return
    archive = f'{spec.path}.zip'
    if not os.path.exists(archive):
        print(f"downloading {spec.name} to {archive} ...")
        download(spec.url, archive, alternative=f"its unpacked {spec.member} as {spec.path}")
    print(f"unpacking {archive} to {spec.path} ...")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(spec.member) as member:
            atomic_write(spec.path, lambda f: copy_stream(member, f))
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        raise UserError(f"{archive} is not a zip archive holding {spec.member!r} ({e}); delete it and run again to "
                        f"download it afresh from {spec.url}") from None


def copy_stream(source, target, block=1 << 20):
    while chunk := source.read(block):
        target.write(chunk)


def read_benchmark(spec, path):
    """Token ids (uint8) of the benchmark file at `path`, after checking its size and its alphabet.

    The bytes are read once and turned into ids in place: the array read is the only copy."""
    if os.path.abspath(path) == os.path.abspath(spec.path):
        remedy = f"delete it (and {spec.path}.zip) to download {spec.url} afresh"
    else:
        remedy = f"set input_file to the unpacked {spec.name} file, or to None to download it"
    size = os.path.getsize(path)
    if size != spec.length:
        raise UserError(f"{path} has {size:,} bytes, but {spec.name} has {spec.length:,} characters: a different "
                        f"or damaged file; {remedy}")
    raw = np.fromfile(path, dtype=np.uint8)  # (length,): one byte per character
    check_alphabet(spec, path, raw, remedy)
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[np.frombuffer(''.join(sorted(spec.alphabet)).encode('ascii'), dtype=np.uint8)] = np.arange(
        len(spec.alphabet), dtype=np.uint8)  # ids: the symbols sorted, as build_vocab numbers them
    # in place, CHUNK at a time (numpy indexes with 8-byte integers): the bytes read become the ids
    for start in range(0, len(raw), CHUNK):
        raw[start:start + CHUNK] = lookup[raw[start:start + CHUNK]]
    return raw


def check_alphabet(spec, path, raw, remedy):
    """`raw` (bytes) holds exactly the symbols of spec.alphabet, each at least once; else one UserError line."""
    allowed = np.frombuffer(spec.alphabet.encode('ascii'), dtype=np.uint8)
    counts = id_counts(raw, 256)
    missing = [ch for ch in spec.alphabet if counts[ord(ch)] == 0]
    counts[allowed] = 0
    if counts.any():
        offset = int(np.flatnonzero(~np.isin(raw, allowed))[0])
        raise UserError(f"{path} is not {spec.name}: byte {offset} is 0x{raw[offset]:02x}, and {spec.name} holds "
                        f"only the {len(spec.alphabet)} symbols {spec.alphabet!r}; {remedy}")
    if missing:
        raise UserError(f"{path} is not {spec.name}: it lacks the symbols {''.join(missing)!r} of its alphabet "
                        f"{spec.alphabet!r}; {remedy}")


# -----------------------------------------------------------------------------
# vocabulary and encoding

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


def id_counts(ids, n):
    """(n,) int64: how often each id below n occurs in `ids`. numpy counts with 8-byte integers, so a
    long array is counted CHUNK ids at a time, never 8 bytes per character at once."""
    return sum((np.bincount(ids[start:start + CHUNK], minlength=n) for start in range(0, len(ids), CHUNK)),
               np.zeros(n, dtype=np.int64))


def ids_dtype(n_chars):
    """numpy dtype of a corpus's token ids: one byte per character for up to 256 characters."""
    return np.uint8 if n_chars <= 256 else np.int32


def encode(text, stoi, dtype=np.int64):
    """Token ids of `text` as a numpy array of `dtype`; characters outside `stoi` are a UserError.

    Encoded CHUNK characters at a time, so a long text never exists as 4-byte code points whole."""
    lookup = np.full(max(map(ord, stoi)) + 2, -1, dtype=np.int64)  # the last entry: every code point beyond
    for ch, i in stoi.items():
        lookup[ord(ch)] = i
    ids = np.empty(len(text), dtype=dtype)
    for start in range(0, len(text), CHUNK):
        codes = np.frombuffer(text[start:start + CHUNK].encode('utf-32-le'), dtype=np.uint32)
        chunk = lookup[np.minimum(codes, len(lookup) - 1)]  # (n,) int64, -1 outside the vocabulary
        if (chunk < 0).any():
            unknown = sorted(set(text) - set(stoi))
            raise UserError(f"text contains characters outside the vocabulary: {''.join(unknown)!r}")
        ids[start:start + len(codes)] = chunk
    return ids


def decode(ids, itos):
    """Text of token ids; special tokens show as [MASK] / [WRONG] / [?]."""
    return ''.join(itos.get(int(i), '[MASK]' if int(i) == len(itos) else
                            '[WRONG]' if int(i) == len(itos) + 1 else '[?]') for i in ids)


def decode_ids(ids, chars):
    """The text of a long array of ids of real characters, CHUNK at a time (no Python object per character)."""
    code_points = np.array([ord(ch) for ch in chars], dtype=np.uint32)
    return ''.join(code_points[ids[start:start + CHUNK]].tobytes().decode('utf-32-le')
                   for start in range(0, len(ids), CHUNK))


def split_ids(ids):
    """90/10 train/val split of the encoded corpus (views)."""
    n = int(len(ids) * TRAIN_FRACTION)
    return ids[:n], ids[n:]
