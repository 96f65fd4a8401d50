"""eval_metrics on models and texts whose answers are known by hand; evaluate.py end to end on tiny checkpoints."""
import json
import math
import random
import sys

import pytest
import torch
import torch.nn as nn

import eval_metrics as em
import eval_remasking
import evaluate
import generate
from checkpoints import load_checkpoint, save_checkpoint
from common import UserError
from configurator import load_config
from data.corpus import build_vocab, encode
from model import GPT, GPTConfig
from prepare_streaming import load_provider_class

TEXT = "to be, or not to be: that is the question. whether 'tis nobler in the mind to suffer\n" * 4
VOCAB = build_vocab(TEXT)
N_REAL, MASK, V = VOCAB['mask_token_id'], VOCAB['mask_token_id'], VOCAB['vocab_size']


class FixedDistribution(nn.Module):
    """Ignores its input: the same distribution q over the real characters at every position, and
    the largest logits of all on [MASK] / [WRONG] (which an evaluation must ignore). With
    `boost` > 0 it also knows the text of ROW and favours its character at each position by
    boost * (share of the row left unmasked): a loss that depends on how much is masked."""

    def __init__(self, seed=0, boost=0.0):
        super().__init__()
        logits = torch.randn(N_REAL, generator=torch.Generator().manual_seed(seed))
        self.log_q, self.boost = logits.log_softmax(-1), boost  # (n_real,)

    def forward(self, idx):  # the Forward-style call: (B, T) -> (B, T, V) logits
        B, T = idx.shape
        visible = (idx != MASK).double().mean(1).view(B, 1, 1)  # (B, 1, 1)
        logits = self.log_q.double() + self.boost * visible * nn.functional.one_hot(ROW[:T], N_REAL)  # (B, T, n_real)
        return torch.cat([logits, torch.full((B, T, V - N_REAL), 50.0, dtype=logits.dtype)], dim=-1).float()

    def exact_elbo_bits(self, T, context=0):
        """The bound by hand, in bits per scored character (the T' = T - context after the given ones).
        With k of the T' positions masked, a masked position i has the loss l_i(k); the masked set is
        uniform given k, and integrating the binomial over t with the 1/t weight gives 1/k, so
        T' * NELBO = sum_{k=1..T'} (1/k) * k * mean_i l_i(k)."""
        scored, per_k = T - context, []
        for k in range(1, scored + 1):
            logits = self.log_q.double() + self.boost * (T - k) / T * nn.functional.one_hot(ROW[:T], N_REAL)
            per_k.append(-logits.log_softmax(-1).gather(-1, ROW[:T].unsqueeze(-1))[context:].mean())
        return float(torch.stack(per_k).sum()) / scored / math.log(2)


ROW = torch.as_tensor(encode(TEXT, VOCAB['stoi']))


def windows(n_rows=48, T=32):
    starts = torch.arange(n_rows) * 7 % (len(ROW) - T)
    return torch.stack([ROW[s:s + T] for s in starts.tolist()])  # (N, T)


# -----------------------------------------------------------------------------
# negative ELBO and bits per character

@pytest.mark.parametrize('estimator', em.ELBO_ESTIMATORS)
@pytest.mark.parametrize('context', [0, 1])
def test_elbo_of_a_context_free_model_is_its_mean_code_length(estimator, context):
    # with q independent of the context, E_t[(1/t) sum_masked -log q(x_i)] = sum_i -log q(x_i) exactly
    model, rows = FixedDistribution(), windows()
    expected = -model.log_q[rows[:, context:]].double().mean(1) / math.log(2)  # (N,) bits per scored character
    draws = 30 if estimator == 'count' else 150  # the 1/t weight has a heavy tail: more draws for the same error
    per_window = em.window_elbo_bits(model, rows, N_REAL, MASK, torch.Generator().manual_seed(0), estimator,
                                     draws=draws, context=context, batch_size=16)
    assert per_window.shape == (len(rows),)  # one estimate per window: every window is used
    error, se = em.mean_and_se((per_window - expected).numpy())  # window by window: the mask noise only
    assert abs(error) < 4 * se and se < 0.01 * float(expected.mean())


@pytest.mark.parametrize('estimator', em.ELBO_ESTIMATORS)
@pytest.mark.parametrize('context', [0, 1])
def test_elbo_weights_the_mask_levels_exactly(estimator, context):
    # a loss that falls as more of the row is visible: a wrong weight of the mask levels (1/t, T/k)
    # would move the estimate away from the bound computed by hand
    T = 24
    model, rows = FixedDistribution(seed=1, boost=6.0), ROW[:T].expand(64, T)
    expected = model.exact_elbo_bits(T, context)
    context_free = FixedDistribution(seed=1).exact_elbo_bits(T, context)
    draws = 2000 if estimator == 'count' else 6000
    per_row = em.window_elbo_bits(model, rows[:1], N_REAL, MASK, torch.Generator().manual_seed(2), estimator,
                                  draws=1, context=context)  # the shape of one window's estimate
    assert per_row.shape == (1,)
    estimates = torch.cat([em.elbo_row_estimates(model, rows, N_REAL, MASK, gen, estimator, context)
                           for gen in [torch.Generator().manual_seed(3)] for _ in range(draws // 64)])
    mean, se = em.mean_and_se(estimates.numpy() / math.log(2))
    assert abs(mean - expected) < 4 * se
    assert expected < context_free - 30 * se  # the test can tell the two apart


def test_every_window_gets_its_draws_and_the_gap_is_paired():
    model, rows = FixedDistribution(seed=3), windows(n_rows=10)
    calls = []
    per_window = em.window_elbo_bits(model, rows, N_REAL, MASK, torch.Generator().manual_seed(0), 'count', draws=3,
                                     batch_size=4, progress=lambda done, total: calls.append((done, total)))
    assert per_window.shape == (10,) and calls[-1] == (30, 30)
    gap = em.paired_gap(per_window + 0.5, per_window)  # the same windows, half a bit worse each
    assert gap['bits_per_char'] == pytest.approx(0.5) and gap['se'] == pytest.approx(0.0, abs=1e-12)
    assert gap['relative'] == pytest.approx(0.5 / float(per_window.mean()))


def test_elbo_masks_follow_their_schedule():
    gen = torch.Generator().manual_seed(0)
    masked, weight = em.elbo_masks(1000, 20, 'count', gen, 'cpu')
    k = masked.sum(1)
    assert k.min() >= 1 and k.max() <= 20 and torch.allclose(weight, 20 / k.double())
    assert sorted(set(k.tolist())) == list(range(1, 21))  # stratified: every count appears
    masked, weight = em.elbo_masks(1000, 200, 'time', gen, 'cpu')
    t = 1 / weight
    assert abs(float(masked.float().mean(1).sub(t).abs().mean())) < 0.05  # each row masks about t of its positions
    masked, weight = em.elbo_masks(1000, 20, 'count', gen, 'cpu', context=1)
    k = masked.sum(1)
    assert not masked[:, 0].any() and k.max() <= 19 and torch.allclose(weight, 19 / k.double())


def test_bits_per_char_scores_every_position_but_the_first():
    model, rows = FixedDistribution(seed=3), windows(8, 16)
    expected = float(-model.log_q[rows[:, 1:]].mean()) / math.log(2)
    assert em.bits_per_char(model, rows, N_REAL, batch_size=3) == pytest.approx(expected, rel=1e-5)


# -----------------------------------------------------------------------------
# detection

def brute_force_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_auroc_by_hand_with_ties_and_edge_cases():
    assert em.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert em.auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)  # a tied pair counts 1/2
    assert em.auroc([0.3, 0.3, 0.3], [1, 0, 1]) == pytest.approx(0.5)  # all tied
    assert em.auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0 and em.auroc([0.1, 0.2, 0.9], [1, 1, 0]) == 0.0
    assert em.auroc([0.2, 0.7], [1, 1]) is None and em.auroc(torch.tensor([0.2, 0.7]), torch.tensor([0, 0])) is None
    rng = random.Random(0)
    scores = [round(rng.random(), 1) for _ in range(300)]  # many ties
    labels = [rng.random() < 0.3 for _ in range(300)]
    assert em.auroc(torch.tensor(scores).view(20, 15), torch.tensor(labels).view(20, 15)) == \
        pytest.approx(brute_force_auroc(scores, labels))


def test_precision_recall_f1_by_hand():
    scores, labels = [0.9, 0.6, 0.5, 0.2, 0.7], [1, 0, 1, 0, 1]
    r = em.precision_recall_f1(scores, labels, 0.5)  # flags 0.9, 0.6, 0.7 (0.5 is not above 0.5)
    assert (r['true_positives'], r['flagged'], r['wrong']) == (2, 3, 3)
    assert r['precision'] == pytest.approx(2 / 3) and r['recall'] == pytest.approx(2 / 3)
    assert r['f1'] == pytest.approx(2 / 3)
    everything = em.precision_recall_f1([0.9, 0.8], [1, 1], 0.5)  # all positive, all flagged
    assert (everything['precision'], everything['recall'], everything['f1']) == (1.0, 1.0, 1.0)
    nothing = em.precision_recall_f1([0.1, 0.2], [1, 1], 0.5)  # nothing flagged: 0, not a division error
    assert (nothing['precision'], nothing['recall'], nothing['f1']) == (0.0, 0.0, 0.0)


def test_random_corruption_never_keeps_the_character():
    clean = windows(64, 32)  # (64, 32)
    x, wrong = eval_remasking.corrupt_random(clean, 0.3, N_REAL, torch.Generator().manual_seed(0))
    assert x.shape == clean.shape and torch.equal(wrong, x != clean) and (x < N_REAL).all()
    assert float(wrong.float().mean()) == pytest.approx(0.3, abs=0.03)  # every picked position changed
    again, _ = eval_remasking.corrupt_random(clean, 0.3, N_REAL, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


# -----------------------------------------------------------------------------
# text statistics

def test_entropy_and_distinct_ngrams_expose_repetitive_text():
    assert em.char_entropy('aaaa') == 0.0 and em.char_entropy('abab') == pytest.approx(1.0)
    assert em.char_entropy(['ab', 'cd']) == pytest.approx(2.0)
    repetitive, varied = 'the the the the the the the the ', TEXT[:32]
    assert em.char_entropy(repetitive) < em.char_entropy(varied)
    assert em.distinct_ngrams(repetitive) == pytest.approx(4 / 29)  # only 4 distinct 4-grams among 29
    assert em.distinct_ngrams('abcdefgh') == 1.0 and em.distinct_ngrams(['abc']) is None
    assert em.distinct_ngrams(['aaaaa', 'abcde']) == pytest.approx((1 / 2 + 1) / 2)  # averaged per text


def test_valid_word_share():
    vocabulary = set(em.words("To be, or not to be: 'tis O'er"))
    assert vocabulary == {'to', 'be', 'or', 'not', 'tis', "o'er"}
    assert em.valid_word_share('to bee or NOT', vocabulary) == pytest.approx(3 / 4)
    assert em.valid_word_share(['xq zz', 'be'], vocabulary) == pytest.approx(1 / 3)
    assert em.valid_word_share('... 123 !', vocabulary) is None


def test_longest_copied_passage_finds_a_planted_passage():
    corpus = TEXT.replace('question', 'quest ion') + "\nwhere the bee sucks, there suck i\n"
    index = em.CorpusIndex(corpus)
    planted = 'where the bee sucks, there'
    # the corpus has '\nwhere the bee sucks, there suck': the copy stops where the sample's neighbours differ
    assert em.longest_copied_passage(['§§ ' + planted + '¤ xx', 'zzz'], index) == (len(planted), planted)
    assert em.longest_copied_passage('\n' + planted + ' su§', index) == (len(planted) + 4, '\n' + planted + ' su')
    assert em.longest_copied_passage('§¤§', index) == (0, '')
    assert em.longest_copied_passage([], index) == (0, '')


def test_longest_copied_passage_matches_brute_force():
    rng = random.Random(0)
    corpus = ''.join(rng.choice('abc') for _ in range(400))
    index = em.CorpusIndex(corpus)
    for _ in range(20):
        text = ''.join(rng.choice('abcd') for _ in range(30))
        best = max((j - i for i in range(len(text)) for j in range(i + 1, len(text) + 1) if text[i:j] in corpus),
                   default=0)
        length, passage = em.longest_copied_passage(text, index)
        assert length == best == len(passage) and passage in corpus and passage in text


# -----------------------------------------------------------------------------
# evaluate.py end to end on tiny random-weight checkpoints

STAGES = [{'type': 'random', 'max_masked_ratio': 1.0}, {'type': 'span', 'spans_count': 2}]


def save_tiny(path, tiny_corpus, training_type, attention_type='bidirectional', block_size=32, seed=0):
    """A random-weight GPT in train.py's checkpoint format, with a saved config naming the tiny corpus."""
    provider_cls = load_provider_class('char_diffusion')
    argv = ['--dataset=char_diffusion', f'--input_file={tiny_corpus}', f'--data_dir={path.parent / "q"}',
            '--batch_size=4', f'--block_size={block_size}', '--batches_per_file=2', '--eval_iters=3',
            '--use_all_stages_for_training=True', f'--unmasking_stages={STAGES}']
    cfg = load_config(provider_cls.config_defaults(), argv, warn_unread=False)
    meta = provider_cls(cfg).build_meta()
    args = dict(block_size=block_size, vocab_size=meta['vocab_size'], n_layer=1, n_head=2, n_embd=16, dropout=0.0,
                bias=False, attention_type=attention_type, pos_encoding='rotary')
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**args))
    config = dict(cfg, training_type=training_type, remasking_loss_type='all_positions', out_dir=str(path.parent))
    save_checkpoint(dict(model=model.state_dict(), model_args=args, iter_num=10, best_val_loss=1.0, config=config,
                         meta=meta, training_type=training_type, remasking_loss_type='all_positions', run_id='test'),
                    str(path))


@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory, tiny_corpus):
    root = tmp_path_factory.mktemp('runs')
    runs = (('unmask', 'ckpt_unmasking_10.pt', 'unmasking', 'bidirectional'),
            ('remask', 'ckpt_remasking_all_positions_10.pt', 'remasking', 'bidirectional'),
            ('ar', 'ckpt_autoregressive_10.pt', 'autoregressive', 'causal'))
    for folder, name, kind, attention in runs:
        (root / folder).mkdir()
        save_tiny(root / folder / name, tiny_corpus, kind, attention)
    return root


TINY_ARGS = ['--elbo_draws=1', '--detection_rows=16', '--num_samples=2',
             '--forward_budget=6', '--eval_batch_size=16', '--device=cpu']


def test_evaluate_prints_the_tables_and_writes_json(tiny_runs, tmp_path):
    from conftest import run_script
    out = tmp_path / 'eval.json'
    code, text = run_script(['evaluate.py', f'--out_dir={tiny_runs / "unmask"}', '--remasking_checkpoint_name=newest',
                             f'--remasking_out_dir={tiny_runs / "remask"}', f'--reference_out_dir={tiny_runs / "ar"}',
                             f'--output_file={out}', *TINY_ARGS], timeout=120, env={'OMP_NUM_THREADS': '1'})
    assert code == 0, text
    for expected in ('masked-diffusion NELBO', 'autoregressive reference', 'val loss, stage_0_random',
                     'AUROC', 'predictions', 'ref bits/char', 'validation text', 'longest copy (mixed)'):
        assert expected in text, expected
    report = json.loads(out.read_text())
    loss = report['loss']
    assert set(loss['stage_losses']) == {'loss', 'stage_0_random', 'stage_1_span'}
    assert loss['gap_bits_per_char'] == pytest.approx(loss['elbo']['bits_per_char'] - loss['reference_bits_per_char'])
    assert 4 < loss['elbo']['bits_per_char'] < 9  # random weights: about log2(vocabulary)
    for corruption in ('random', 'predictions'):
        r = report['remasking'][corruption]
        assert {'auroc', 'precision', 'recall', 'f1', 'wrong_share'} <= set(r)
    assert report['remasking']['random']['wrong_share'] == pytest.approx(0.2, abs=0.07)
    modes = report['samples']['modes']
    assert set(modes) == {'random', 'intelligent', 'threshold', 'mixed', 'mdlm', 'confidence', 'remdm'}
    assert modes['random']['iterations'] == 6 and modes['random']['forward_passes_per_sample'] == 6
    for sampler in ('mdlm', 'confidence', 'remdm'):  # one pass per iteration: the whole budget
        assert modes[sampler]['iterations'] == 6 and modes[sampler]['forward_passes_per_sample'] == 6
    assert modes['intelligent']['iterations'] == 3 and modes['mixed']['forward_passes_per_sample'] == 6
    assert modes['threshold']['forward_passes_per_sample'] <= 6
    assert all(len(t) == 32 and '[' not in t for m in modes.values() for t in m['texts'])
    assert report['samples']['validation_text']['valid_word_share'] > 0.8


def test_evaluate_in_process_without_remasking_or_reference(tiny_runs, capsys):
    report = evaluate.main([f'--out_dir={tiny_runs / "unmask"}', f'--reference_out_dir={tiny_runs / "none"}',
                            '--sections=loss,samples', *TINY_ARGS])
    out = capsys.readouterr().out
    assert 'no autoregressive checkpoint' in out and report['loss']['reference_bits_per_char'] is None
    modes = report['samples']['modes']
    assert report['samples']['score'] == 'unmasking_confidence'
    assert modes['intelligent']['iterations'] == 6  # no remasking model: one forward pass per iteration


def test_a_merged_checkpoint_is_both_the_unmasking_and_the_remasking_model(tiny_runs, tiny_corpus, tmp_path):
    path = tmp_path / 'ckpt_merged_10.pt'
    save_tiny(path, tiny_corpus, 'merged')
    cfg = load_config(evaluate.DEFAULTS, [f'--out_dir={tmp_path}', '--checkpoint_name=ckpt_merged_10.pt', *TINY_ARGS])
    models = evaluate.load_models(cfg, 'cpu')
    assert models.merged and models.path == models.remasking_path == str(path)
    assert models.remasker is models.unmasker  # one network, one forward pass for both jobs
    report = evaluate.main([f'--out_dir={tmp_path}', '--checkpoint_name=ckpt_merged_10.pt',
                            f'--reference_out_dir={tiny_runs / "ar"}', '--sections=loss,remasking', *TINY_ARGS])
    assert report['remasking_checkpoint'] == str(path)
    assert 4 < report['loss']['elbo']['bits_per_char'] < 9  # [MASK] predictions over real characters only
    assert 0 <= report['remasking']['random']['auroc'] <= 1  # [WRONG] probabilities of the same network
    with pytest.raises(UserError, match='merged model'):
        evaluate.main([f'--out_dir={tmp_path}', '--checkpoint_name=ckpt_merged_10.pt',
                       '--remasking_checkpoint_name=newest', f'--remasking_out_dir={tiny_runs / "remask"}'])


def test_evaluate_takes_a_merged_model_as_its_own_remasker(tiny_runs, tiny_corpus, tmp_path, capsys):
    save_tiny(tmp_path / 'ckpt_merged_10.pt', tiny_corpus, 'merged')
    report = evaluate.main([f'--out_dir={tmp_path}', f'--reference_out_dir={tiny_runs / "none"}',
                            '--sections=remasking,samples', *TINY_ARGS])
    assert report['checkpoint'].endswith('ckpt_merged_10.pt') and report['remasking_checkpoint'] == report['checkpoint']
    assert 0 <= report['remasking']['random']['auroc'] <= 1  # detection from its own [WRONG] probabilities
    modes = report['samples']['modes']
    assert report['samples']['score'] == 'merged_model'
    for mode in ('intelligent', 'mixed', 'remdm'):  # scores from the pass that fills: the whole budget
        assert modes[mode]['iterations'] == 6 and modes[mode]['forward_passes_per_sample'] == 6
    assert modes['threshold']['forward_passes_per_sample'] <= 6
    with pytest.raises(UserError, match='merged model'):
        evaluate.main([f'--out_dir={tmp_path}', f'--remasking_out_dir={tiny_runs / "remask"}',
                       '--remasking_checkpoint_name=newest', '--sections=samples', *TINY_ARGS])


def test_evaluate_samples_a_merged_checkpoint_by_its_own_scores(tiny_runs, tiny_corpus, tmp_path, monkeypatch):
    # config/train_merged.py's checkpoint: its queue (sampler_states) has full targets on a mask-free corruption,
    # as an edit model's has; remdm reads its own [WRONG] head as sample.py's sampler='auto' does (issue 19)
    path = tmp_path / 'ckpt_merged_10.pt'
    save_tiny(path, tiny_corpus, 'merged')
    ckpt = load_checkpoint(str(path))
    ckpt['meta'] = dict(ckpt['meta'], corruption_type='sampler_states', label_semantics='full')
    save_checkpoint(ckpt, str(path))
    seen, real = [], generate.choose_decoded_remask
    monkeypatch.setattr(generate, 'choose_decoded_remask', lambda kind, *args: seen.append(kind) or real(kind, *args))
    report = evaluate.main([f'--out_dir={tmp_path}', f'--reference_out_dir={tiny_runs / "none"}',
                            '--sections=samples', *TINY_ARGS])
    assert report['settings']['remdm_score'] == 'wrong' and set(seen) == {'wrong'}
    assert report['samples']['score'] == 'merged_model'  # the diffusion loop's modes: its own scores too
    assert report['samples']['modes']['remdm']['forward_passes_per_sample'] == 6
    seen.clear()
    report = evaluate.main([f'--out_dir={tiny_runs / "unmask"}', f'--reference_out_dir={tiny_runs / "none"}',
                            '--sections=samples', *TINY_ARGS])
    assert report['settings']['remdm_score'] == 'random' and set(seen) == {'random'}  # ReMDM's own rule


@pytest.mark.parametrize('args, message', [
    (['--sections=loss,typo'], 'sections'),
    (['--elbo_estimator=exact'], 'elbo_estimator'),
    (['--remasking_confidence_threshold=1.5'], 'probability'),
    (['--reference_checkpoint_name=ckpt_unmasking_10.pt', '--reference_out_dir=UNMASK'], 'not an autoregressive'),
])
def test_bad_settings_are_user_errors(tiny_runs, args, message):
    args = [a.replace('UNMASK', str(tiny_runs / 'unmask')) for a in args]
    with pytest.raises(UserError, match=message):
        evaluate.main([f'--out_dir={tiny_runs / "unmask"}', *args])


def test_plot_without_matplotlib_says_how_to_install(tiny_runs, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # makes `import matplotlib` fail
    with pytest.raises(UserError, match='pip install matplotlib'):
        evaluate.main([f'--out_dir={tiny_runs / "unmask"}', '--plot=True'])


def test_plot_writes_a_png(tiny_runs, tmp_path):
    pytest.importorskip('matplotlib')
    png = tmp_path / 'plot.png'
    report = evaluate.main([f'--out_dir={tiny_runs / "unmask"}', f'--reference_out_dir={tiny_runs / "ar"}',
                            '--sections=samples', '--plot=True', '--plot_iterations=(2, 4)', f'--plot_file={png}',
                            *TINY_ARGS])
    assert png.read_bytes()[:4] == b'\x89PNG'
    assert [p['iterations'] for p in report['plot']['curves']['random']] == [2, 4]


def test_a_corpus_without_the_checkpoints_vocabulary_is_refused(tiny_runs, tmp_path):
    from checkpoints import load_checkpoint
    ckpt = dict(load_checkpoint(str(tiny_runs / 'unmask' / 'ckpt_unmasking_10.pt')))
    other = tmp_path / 'other.txt'
    other.write_text('a different corpus, with fewer letters\n' * 200)
    ckpt['config'] = dict(ckpt['config'], input_file=str(other))
    save_checkpoint(ckpt, str(tmp_path / 'ckpt_unmasking_10.pt'))
    with pytest.raises(UserError, match="does not have the checkpoint's vocabulary"):
        evaluate.main([f'--out_dir={tmp_path}', '--sections=loss'])
