"""text8: download, check and split against a local server with a small stand-in archive; the provider on
it; evaluate.py's test section (every character of windows of the training length)."""
import dataclasses
import math
import os
import zipfile

import numpy as np
import pytest
import torch

import eval_test_split
import evaluate
from checkpoints import save_checkpoint
from common import UserError
from configurator import Config, load_config
from data import corpus
from model import GPT, GPTConfig
from prepare_streaming import load_provider_class, storage_ids

ALPHABET = corpus.TEXT8.alphabet
SIZES = (('train', 1800), ('val', 100), ('test', 100))


def stand_in_text(n=sum(n for _, n in SIZES), seed=0):
    """text8-like text: every one of the 27 symbols, then random ones."""
    rng = np.random.default_rng(seed)
    return ALPHABET + ''.join(rng.choice(list(ALPHABET), n - len(ALPHABET)))


TEXT = stand_in_text()


def write_archive(path, text=TEXT, member='text8'):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text)


@pytest.fixture
def small_text8(tmp_path, monkeypatch, server):
    """corpus='text8' made small: served by the local server as text8.zip, unpacked under tmp_path/data."""
    spec = dataclasses.replace(corpus.TEXT8, url=f'{server}/text8.zip', path=str(tmp_path / 'data' / 'text8'),
                               split_sizes=SIZES)
    monkeypatch.setitem(corpus.BENCHMARKS, 'text8', spec)
    return spec


# -----------------------------------------------------------------------------
# download, unpacking, checks, splits

def test_missing_text8_is_downloaded_unpacked_checked_and_split(small_text8, tmp_path, capsys):
    write_archive(tmp_path / 'www' / 'text8.zip')
    splits = corpus.load_splits('text8')
    assert 'downloading text8' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / 'data')) == ['text8', 'text8.zip']  # no temporary file left
    assert splits.vocab['chars'] == sorted(ALPHABET) and splits.vocab['vocab_size'] == 29
    assert {split: len(ids) for split, ids in splits.ids.items()} == dict(SIZES)
    assert splits.text('train') + splits.text('val') + splits.text('test') == TEXT  # in order, consecutive
    assert all(ids.dtype == np.uint8 and np.shares_memory(ids, splits.ids['train'].base) for ids in splits.ids.values())
    os.remove(tmp_path / 'data' / 'text8.zip')
    assert corpus.load_splits('text8').text('test') == TEXT[-100:]  # present now: read, not downloaded


def test_an_archive_put_there_by_hand_is_unpacked_without_a_download(small_text8, tmp_path):
    write_archive(tmp_path / 'data' / 'text8.zip')  # nothing on the server
    assert corpus.load_splits('text8').length == len(TEXT)


def test_no_network_says_in_one_line_where_to_put_the_file(small_text8, tmp_path):
    with pytest.raises(UserError) as excinfo:
        corpus.load_splits('text8')
    message = str(excinfo.value)
    assert small_text8.url in message and f"save it as {small_text8.path}.zip" in message
    assert f"unpacked text8 as {small_text8.path}" in message and '\n' not in message
    assert os.listdir(tmp_path / 'data') == []


def test_a_damaged_archive_is_refused(small_text8, tmp_path):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'text8.zip').write_bytes(b'not a zip')
    with pytest.raises(UserError, match='is not a zip archive holding .text8.*delete it'):
        corpus.load_splits('text8')
    write_archive(tmp_path / 'data' / 'text8.zip', member='other')
    with pytest.raises(UserError, match='is not a zip archive holding'):
        corpus.load_splits('text8')
    assert sorted(os.listdir(tmp_path / 'data')) == ['text8.zip']


def test_the_real_size_is_checked(tmp_path):
    path = tmp_path / 'text8'
    path.write_text(TEXT)
    with pytest.raises(UserError, match=r"has 2,000 bytes, but text8 has 100,000,000 characters: a different or "
                                        r"damaged file; set input_file to the unpacked text8 file, or to None"):
        corpus.load_splits('text8', str(path))


def test_a_damaged_download_says_to_delete_it(small_text8, tmp_path):
    write_archive(tmp_path / 'www' / 'text8.zip', TEXT[:-1])
    with pytest.raises(UserError, match=r"has 1,999 bytes, .*; delete it \(and .*text8.zip\) to download"):
        corpus.load_splits('text8')


@pytest.mark.parametrize('text, expected', [
    (TEXT[:500] + 'A' + TEXT[501:], r"byte 500 is 0x41, and text8 holds only the 27 symbols"),
    (TEXT.replace('q', 'z'), r"lacks the symbols 'q'"),
], ids=['a symbol outside', 'a symbol missing'])
def test_exactly_the_27_symbols(small_text8, tmp_path, text, expected):
    path = tmp_path / 'mine'
    path.write_text(text)
    with pytest.raises(UserError, match=expected):
        corpus.load_splits('text8', str(path))


def test_unknown_corpus_and_missing_input_file_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"corpus='enwik8' is unknown; use None .* 'text8'"):
        corpus.load_splits('enwik8')
    with pytest.raises(UserError, match='does not exist'):
        corpus.load_splits('text8', str(tmp_path / 'nope'))


def test_encoding_in_chunks_is_the_whole_encoding(monkeypatch):
    text = "Zürich, 東京 and\nback " * 50
    vocab = corpus.build_vocab(text)
    whole = corpus.encode(text, vocab['stoi'])
    monkeypatch.setattr(corpus, 'CHUNK', 7)
    chunked = corpus.encode(text, vocab['stoi'], np.uint8)
    assert chunked.dtype == np.uint8 and np.array_equal(chunked, whole)
    assert corpus.decode_ids(chunked, vocab['chars']) == text
    with pytest.raises(UserError, match="outside the vocabulary: 'Q'"):
        corpus.encode(text + 'Q', vocab['stoi'])


def test_uint8_ids_become_the_int8_of_batch_files_without_a_copy():
    ids = np.arange(29, dtype=np.uint8)
    as_int8 = storage_ids(ids, torch.int8)
    assert as_int8.dtype == torch.int8 and np.shares_memory(as_int8.numpy(), ids) and as_int8.tolist() == list(range(29))
    assert storage_ids(ids, torch.int16).dtype == torch.int16


# -----------------------------------------------------------------------------
# the provider on text8

def provider_config(tmp_path, **values):
    provider_cls = load_provider_class('char_diffusion')
    argv = ['--corpus=text8', f'--data_dir={tmp_path / "q"}', '--batch_size=4', '--block_size=16',
            '--batches_per_file=2', '--eval_iters=2', *(f'--{k}={v}' for k, v in values.items())]
    return provider_cls, load_config(provider_cls.config_defaults(), argv, warn_unread=False)


def test_the_provider_reads_text8_and_its_splits(small_text8, tmp_path):
    write_archive(tmp_path / 'data' / 'text8.zip')
    provider_cls, cfg = provider_config(tmp_path)
    provider = provider_cls(cfg)
    meta = provider.build_meta()
    assert meta['vocab_size'] == 29 and meta['data_config']['corpus'] == 'text8'
    assert meta['input_file'] == small_text8.path and meta['data_config']['corpus_chars'] == len(TEXT)
    vocab = corpus.build_vocab(ALPHABET)
    assert corpus.decode(provider.ids['val'].tolist(), vocab['itos']) == TEXT[1800:1900]  # the val split, not test
    x = provider.make_file('train', 0, 0, 2)[0]['x']
    assert x.dtype == torch.int8 and x.shape == (8, 16)


def test_a_plain_corpus_keeps_the_fingerprint_it_had_before_the_corpus_key(tiny_corpus, tmp_path):
    provider_cls = load_provider_class('char_diffusion')
    cfg = load_config(provider_cls.config_defaults(), [f'--input_file={tiny_corpus}', f'--data_dir={tmp_path}'],
                      warn_unread=False)
    assert 'corpus' not in provider_cls(cfg).data_config()


# -----------------------------------------------------------------------------
# evaluate.py --sections=test

class FixedCausal(torch.nn.Module):
    """The same distribution q over the real characters at every position: its bits/char are known by hand."""

    def __init__(self, n_real, vocab_size):
        super().__init__()
        self.log_q = torch.randn(n_real, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
        self.extra = vocab_size - n_real

    def forward(self, idx):  # (B, T) -> (B, T, V), [MASK] / [WRONG] with huge logits an evaluation must ignore
        B, T = idx.shape
        return torch.cat([self.log_q.expand(B, T, -1), torch.full((B, T, self.extra), 50.0)], dim=-1)


def test_windows_are_consecutive_and_the_tail_is_dropped():
    ids = np.arange(50, dtype=np.uint8)
    windows = eval_test_split.split_windows(ids, 16)
    assert windows.tolist() == [list(range(0, 16)), list(range(16, 32)), list(range(32, 48))]
    assert len(eval_test_split.split_windows(ids, 16, limit=2)) == 2
    with pytest.raises(UserError, match='shorter than one window'):
        eval_test_split.split_windows(ids, 64)


def test_the_reference_scores_every_character_the_first_by_train_frequencies():
    n_real, T = 27, 12
    train = np.repeat(np.arange(n_real, dtype=np.uint8), np.arange(1, n_real + 1))  # character c occurs c + 1 times
    first_bits = eval_test_split.first_character_bits(train, n_real)
    counts = np.arange(1, n_real + 1) + 1.0  # add-one smoothed
    assert torch.allclose(first_bits, torch.from_numpy(-np.log2(counts / counts.sum())))
    model = FixedCausal(n_real, n_real + 2)
    windows = torch.randint(0, n_real, (5, T), generator=torch.Generator().manual_seed(1))
    bits = eval_test_split.reference_window_bits(model, windows, first_bits, n_real, batch_size=2)
    by_hand = (first_bits[windows[:, 0]] - model.log_q.double()[windows[:, 1:]].sum(1) / math.log(2)) / T
    assert torch.allclose(bits, by_hand)


def save_model(path, cfg, meta, training_type, attention_type, block_size=16):
    args = dict(block_size=block_size, vocab_size=meta['vocab_size'], n_layer=1, n_head=2, n_embd=16, dropout=0.0,
                bias=False, attention_type=attention_type, pos_encoding='rotary')
    torch.manual_seed(0)
    save_checkpoint(dict(model=GPT(GPTConfig(**args)).state_dict(), model_args=args, iter_num=10, best_val_loss=1.0,
                         config=dict(cfg, training_type=training_type), meta=meta, training_type=training_type,
                         remasking_loss_type='all_positions', run_id='test'), str(path))


@pytest.fixture
def text8_runs(small_text8, tmp_path):
    """A random-weight unmasking model and autoregressive reference trained (in name) on the small text8."""
    write_archive(tmp_path / 'data' / 'text8.zip')
    provider_cls, cfg = provider_config(tmp_path)
    meta = provider_cls(cfg).build_meta()
    for folder, kind, attention in (('unmask', 'unmasking', 'bidirectional'), ('ar', 'autoregressive', 'causal')):
        (tmp_path / folder).mkdir()
        save_model(tmp_path / folder / f'ckpt_{kind}_10.pt', cfg, meta, kind, attention)
    return tmp_path


ARGS = ['--sections=test', '--elbo_draws=1', '--eval_batch_size=8', '--device=cpu']


def test_evaluate_reports_test_bits_per_char_over_every_window(text8_runs, capsys):
    report = evaluate.main([f'--out_dir={text8_runs / "unmask"}', f'--reference_out_dir={text8_runs / "ar"}', *ARGS])
    test = report['test']
    assert 'loss' not in report  # the test section alone reads no validation split
    assert (test['windows'], test['window_length'], test['dropped_characters'], test['complete']) == (6, 16, 4, True)
    assert 4 < test['elbo']['bits_per_char'] < 9  # random weights: about log2(27) = 4.75 and above
    assert test['gap']['bits_per_char'] == pytest.approx(test['elbo']['bits_per_char']
                                                         - test['reference']['bits_per_char'])
    out = capsys.readouterr().out
    assert '6 windows of 16 characters (every window), every character scored' in out
    assert 'masked-diffusion NELBO' in out and "first character of each window by the train split's" in out


def test_a_slice_of_the_test_split_says_it_is_not_the_benchmark_number(text8_runs, capsys):
    report = evaluate.main([f'--out_dir={text8_runs / "unmask"}', f'--reference_out_dir={text8_runs / "none"}',
                            '--test_windows=2', *ARGS])
    assert report['test']['windows'] == 2 and not report['test']['complete'] and report['test']['reference'] is None
    assert 'the first 2 of 6 windows: a quick look, not the benchmark number' in capsys.readouterr().out


def test_test_section_settings_and_corpora_without_a_test_split_are_refused(text8_runs, tiny_corpus, tmp_path):
    with pytest.raises(UserError, match='test_windows=0 must be None'):
        evaluate.main([f'--out_dir={text8_runs / "unmask"}', '--test_windows=0', *ARGS])
    provider_cls = load_provider_class('char_diffusion')
    cfg = load_config(provider_cls.config_defaults(), [f'--input_file={tiny_corpus}', f'--data_dir={tmp_path / "p"}',
                                                       '--block_size=16', '--eval_iters=2'], warn_unread=False)
    (tmp_path / 'plain').mkdir()
    save_model(tmp_path / 'plain' / 'ckpt_unmasking_10.pt', cfg, provider_cls(Config(cfg)).build_meta(),
               'unmasking', 'bidirectional')
    with pytest.raises(UserError, match="has no test split: section 'test' measures a benchmark corpus"):
        evaluate.main([f'--out_dir={tmp_path / "plain"}', f'--reference_out_dir={tmp_path / "none"}', *ARGS])
