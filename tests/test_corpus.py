"""The corpus download path, against a local HTTP server (no network needed)."""
import os

import numpy as np
import pytest

from common import UserError
from conftest import run_main
from data import corpus

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


@pytest.fixture
def server(server, tmp_path):
    """conftest's local server, serving Tiny Shakespeare's stand-in as input.txt."""
    (tmp_path / 'www' / 'input.txt').write_text(TEXT, encoding='utf-8')
    return server


def test_download_renames_into_place(server, tmp_path):
    path = tmp_path / 'corpus' / 'input.txt'
    corpus.download(f'{server}/input.txt', str(path))
    assert path.read_text(encoding='utf-8') == TEXT
    assert os.listdir(path.parent) == ['input.txt']  # no temporary file left


def test_failed_download_says_where_to_put_the_file(server, tmp_path):
    path = tmp_path / 'corpus' / 'input.txt'
    with pytest.raises(UserError) as excinfo:
        corpus.download(f'{server}/missing.txt', str(path))
    message = str(excinfo.value)
    assert str(path) in message and 'missing.txt' in message
    assert os.listdir(path.parent) == []  # neither the file nor a temporary one


def test_read_corpus_downloads_the_default_corpus_when_missing(server, tmp_path, monkeypatch):
    path = tmp_path / 'tinyshakespeare' / 'input.txt'
    monkeypatch.setattr(corpus, 'DEFAULT_CORPUS', str(path))
    assert corpus.read_corpus(None, url=f'{server}/input.txt') == TEXT
    assert path.exists()
    assert corpus.read_corpus(None, url=f'{server}/gone.txt') == TEXT  # present now: no second download


def test_missing_input_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        corpus.read_corpus(str(tmp_path / 'nope.txt'))


def test_vocab_and_encoding_round_trip():
    vocab = corpus.build_vocab(TEXT)
    ids = corpus.encode(TEXT, vocab['stoi'])
    assert ids.dtype == np.int64 and corpus.decode(ids, vocab['itos']) == TEXT
    assert vocab['mask_token_id'] == len(vocab['chars']) and vocab['vocab_size'] == len(vocab['chars']) + 2


def test_a_corpus_that_is_not_utf8_is_one_line_with_the_byte_offset(tmp_path):
    path = tmp_path / 'latin1.txt'
    path.write_bytes('Zürich\n'.encode('utf-8') * 100 + 'Zürich\n'.encode('latin-1'))
    with pytest.raises(UserError) as excinfo:
        corpus.read_corpus(str(path))
    message = str(excinfo.value)
    assert str(path) in message and 'byte 801 (0xfc)' in message and 're-encode' in message and 'UTF-8' in message
    assert '\n' not in message


def test_random_bytes_as_corpus_is_a_user_error_through_the_cli(tmp_path):
    path = tmp_path / 'random.bin'
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    code, out = run_main(['prepare.py', f'--input_file={path}', f'--data_dir={tmp_path / "q"}', '--max_files=1'])
    assert code == 2 and out.startswith('error: corpus ') and 'not UTF-8' in out, out
    assert len(out.strip().splitlines()) == 1


def test_universal_newlines_as_a_text_mode_read(tmp_path):
    path = tmp_path / 'crlf.txt'
    path.write_bytes(b'ab\r\ncd\ref\n\r\r\n')
    assert corpus.read_corpus(str(path)) == 'ab\ncd\nef\n\n\n'


@pytest.mark.parametrize('content, expected', [
    ('', 'is empty'),
    ('a', "holds a single character 'a'"),
    ('aaaa', "holds 4 characters, all of them 'a'"),
], ids=['empty', 'one character', 'one distinct character'])
def test_degenerate_corpora_say_what_is_wrong(tmp_path, content, expected):
    path = tmp_path / 'input.txt'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(UserError, match=expected):
        corpus.read_corpus(str(path))
