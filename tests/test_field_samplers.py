"""The field's samplers (mdlm, confidence, remdm) and merged checkpoints, driven by oracle models: what is
revealed and remasked when, one forward pass per iteration, and the sample.py command line around them."""
import json
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

import generate
import generate_setup
import sample
import sampling_utils as su
from common import UserError
from data.corpus import decode, encode
from test_sampling import (LONG_TARGET, MASK, N_REAL, TARGET, TEXT, VOCAB, WRONG, V, Oracle, cfg_with, run_cli,
                           run_diffusion, save_tiny, vocab)

FIELD = generate.FIELD_SAMPLERS


class MergedOracle(nn.Module):
    """A merged model: at [MASK] positions the Oracle's fill logits; at visible positions it favours the
    character itself when it is TARGET's and [WRONG] when it is not."""

    def __init__(self, p_wrong=0.0, strength=20.0, seed=0):
        super().__init__()
        self.fill = Oracle(p_wrong, strength, seed)
        self.calls = self.fill.calls

    def forward(self, idx, targets=None):
        B, T = idx.shape
        fill_logits, _ = self.fill(idx)  # (B, T, V)
        right = idx == LONG_TARGET[:T]  # (B, T)
        seen = torch.zeros(B, T, V).scatter(-1, idx.unsqueeze(-1), 30.0) * right.unsqueeze(-1)
        seen[..., WRONG] = torch.where(right, -30.0, 30.0)
        return torch.where((idx == MASK).unsqueeze(-1), fill_logits, seen), None


def prompt_ids(prompt):
    return torch.as_tensor(encode(prompt, VOCAB['stoi'])) if prompt else torch.zeros(0, dtype=torch.long)


def run_field(sampler, model=None, prompt='', seed=0, **overrides):
    """(tokens, stats, records, cfg, forward) of one field_generate run; records are cloned per iteration."""
    cfg = cfg_with(sampler=sampler, **overrides)
    forward = generate.Forward(model or Oracle(), nullcontext())
    records = []

    def log(it, r):
        records.append({k: v.clone() if torch.is_tensor(v) else v for k, v in r.items()})

    tokens, stats = generate.field_generate(forward, prompt_ids(prompt), cfg, sampler, vocab(),
                                            torch.Generator().manual_seed(seed), log)
    return tokens, stats, records, cfg, forward


def text_of(row):
    return decode(row.tolist(), VOCAB['itos'])


# -----------------------------------------------------------------------------
# the schedule

def test_masked_counts_start_full_end_empty_and_follow_the_schedule():
    assert su.masked_counts('linear', 1.0, 0.0, 4, 40, 4) == [40, 30, 20, 10, 0]
    assert su.masked_counts('cosine', 1.0, 0.0, 2, 40, 2) == [40, 20, 0]
    # start_ratio < 1: iteration 0 is the first fill, then start_ratio of the span is masked
    assert su.masked_counts('linear', 0.5, 0.0, 3, 40, 3) == [40, 20, 10, 0]
    assert su.masked_counts('linear', 0.5, 0.1, 4, 64, 3) == [64, 32, 19, 6, 0]  # the diffusion loop's form
    assert su.masked_counts('linear', 1.0, 0.0, 1, 40, 1) == [40, 0]


# -----------------------------------------------------------------------------
# every field sampler

@pytest.mark.parametrize('sampler', FIELD)
def test_field_sampler_reconstructs_keeps_the_prompt_one_pass_per_iteration(sampler):
    prompt = TEXT[:7]
    tokens, stats, records, cfg, forward = run_field(sampler, prompt=prompt, remdm_eta=0.3)
    assert all(text_of(row) == TEXT for row in tokens)
    assert forward.rows == cfg.num_samples * cfg.diffusion_iterations  # one forward pass per iteration
    assert all((r['tokens'][:, :len(prompt)] == prompt_ids(prompt)).all() for r in records)
    assert (tokens < N_REAL).all()


@pytest.mark.parametrize('sampler', FIELD)
@pytest.mark.parametrize('schedule,start', [('linear', 1.0), ('cosine', 1.0), ('linear', 0.6)])
def test_field_sampler_masked_share_follows_the_schedule(sampler, schedule, start):
    prompt = TEXT[:5]
    span = len(TEXT) - 5
    n = 9
    _, stats, records, _, _ = run_field(sampler, Oracle(p_wrong=0.2, strength=2.0), prompt=prompt,
                                        diffusion_iterations=n, reveal_schedule=schedule, start_ratio=start,
                                        remdm_eta=0.3)
    counts = su.masked_counts(schedule, start, 0.0, n, span, n)
    for it, r in enumerate(records):
        assert (r['masked'] == counts[it]).all()  # going into the iteration
        assert ((r['tokens'] == MASK).sum(1) == counts[it + 1]).all()  # coming out of it
        assert (r['revealed'] == counts[it] - counts[it + 1] + r['remasked']).all()
    assert counts[-1] == 0 and not (records[-1]['tokens'] == MASK).any()
    if start < 1:
        assert (records[0]['revealed'] == span - round(start * span)).all()


@pytest.mark.parametrize('sampler', ['mdlm', 'confidence'])
def test_mdlm_and_confidence_never_remask_a_decoded_character(sampler):
    _, stats, records, _, _ = run_field(sampler, Oracle(p_wrong=0.3, strength=2.0), num_samples=4,
                                        diffusion_iterations=12)
    before = None
    for r in records:
        if before is not None:
            decoded = before != MASK
            assert torch.equal(r['tokens'][decoded], before[decoded])
        before = r['tokens']
    assert int(stats['remasked'].sum()) == 0


class GradedOracle(nn.Module):
    """Favours TARGET, more surely the further right the position: p(fill) rises with the position."""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        strength = torch.linspace(0.5, 6.0, T).view(1, T, 1)
        logits = torch.zeros(B, T, V).scatter(-1, LONG_TARGET[:T].expand(B, T).unsqueeze(-1), 1.0) * strength
        return logits, None


def test_confidence_reveals_the_most_confident_fills_and_mdlm_random_ones():
    _, _, records, _, _ = run_field('confidence', GradedOracle(), temperature=0.0, diffusion_iterations=4,
                                    choice_temperature=0.0)
    T = len(TEXT)
    for it, r in enumerate(records):
        newly = (r['tokens'] != MASK) & ((records[it - 1]['tokens'] == MASK) if it else True)  # (B, T)
        n = int(r['revealed'][0])
        # the most confident masked positions are the rightmost still masked ones
        still_masked = (records[it - 1]['tokens'][0] == MASK).nonzero().squeeze(1) if it else torch.arange(T)
        assert newly[0].nonzero().squeeze(1).tolist() == still_masked[-n:].tolist()
    _, _, records, _, _ = run_field('mdlm', GradedOracle(), temperature=0.0, diffusion_iterations=4)
    first = records[0]['tokens'] != MASK  # (B, T)
    assert not torch.equal(first[0], first[1])  # chosen at random, independently per sample


def test_choice_temperature_moves_the_confidence_order_towards_random_then_anneals():
    """MaskGIT's choice noise: a large choice_temperature makes the first reveals nearly random (they differ
    between samples, unlike the pure order), and the noise shrinks with progress, to 0 in the limit."""
    _, _, records, _, _ = run_field('confidence', GradedOracle(), temperature=0.0, diffusion_iterations=4,
                                    choice_temperature=50.0)
    first = records[0]['tokens'] != MASK  # (B, T)
    assert not torch.equal(first[0], first[1])
    fill_p = torch.tensor([[0.9, 0.5, 0.1]])
    assert torch.equal(generate.confidence_order(fill_p, 0.0, 0.0, None), fill_p)  # 0: the pure order
    late = generate.confidence_order(fill_p, 3.0, 1.0, torch.Generator().manual_seed(0))  # noise * (1 - 1) = 0
    assert torch.allclose(late, fill_p.double().log())
    # with noise, the order is a Gumbel-max draw: the first pick lands on position 0 in proportion to its p
    picks = [int(generate.confidence_order(fill_p, 1.0, 0.0, torch.Generator().manual_seed(s)).argmax())
             for s in range(2000)]
    assert abs(picks.count(0) / 2000 - 0.9 / 1.5) < 0.04


def remdm_rates(cfg, span):
    """sigma per iteration by ReMDM-cap's formula, computed here from the schedule alone."""
    n = cfg.diffusion_iterations
    counts = su.masked_counts(cfg.reveal_schedule, cfg.start_ratio, 0.0, n, span, n)
    rates = []
    for it in range(n):
        decoded = span - counts[it]
        on = cfg.remdm_window[0] <= it / max(n - 1, 1) <= cfg.remdm_window[1]
        rates.append(min(cfg.remdm_eta, counts[it + 1] / decoded) if decoded and on else 0.0)
    return counts, rates


@pytest.mark.parametrize('window', [(0.0, 1.0), (0.5, 1.0)])
def test_remdm_remasks_decoded_characters_at_the_scheduled_rate(window):
    span = len(TEXT)
    _, stats, records, cfg, _ = run_field('remdm', Oracle(p_wrong=0.2, strength=2.0), num_samples=4,
                                          diffusion_iterations=10, remdm_eta=0.2, remdm_window=window)
    counts, rates = remdm_rates(cfg, span)
    before = torch.full_like(records[0]['tokens'], MASK)
    for it, r in enumerate(records):
        expected = min(round(rates[it] * (span - counts[it])), counts[it + 1])
        assert (r['remasked'] == expected).all(), it
        remasked = (before != MASK) & (r['tokens'] == MASK)  # decoded going in, masked coming out
        assert (remasked.sum(1) == expected).all()
        before = r['tokens']
    assert int(stats['remasked'].sum()) > 0
    if window[0] > 0:
        assert all((r['remasked'] == 0).all() for it, r in enumerate(records) if it / 9 < window[0])


def test_remdm_scores_choose_which_decoded_characters_go():
    # 'confidence': the decoded characters with the lowest p(char) when they were decoded
    seen = []
    orig = generate.choose_decoded_remask

    def spy(score_kind, decoded, k, confidence, logits, wrong_token_id, generator):
        chosen = orig(score_kind, decoded, k, confidence, logits, wrong_token_id, generator)
        seen.append((decoded, k, confidence.clone(), chosen))
        return chosen

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, 'choose_decoded_remask', spy)
        run_field('remdm', Oracle(p_wrong=0.2, strength=2.0), diffusion_iterations=8, remdm_eta=0.3,
                  remdm_score='confidence')
    assert any(k > 0 for _, k, _, _ in seen)
    for decoded, k, confidence, chosen in seen:
        lowest = su.select_top_k(1.0 - confidence, decoded, k)
        assert torch.equal(chosen, lowest)
    # 'wrong' with a merged model: the wrong decoded characters go first, so remdm repairs what mdlm keeps
    errors = {}
    for sampler, score in (('mdlm', 'random'), ('remdm', 'wrong')):
        tokens, *_ = run_field(sampler, MergedOracle(p_wrong=0.3, seed=4), num_samples=4, diffusion_iterations=16,
                               remdm_eta=0.5, remdm_score=score)
        errors[sampler] = int((tokens != TARGET).sum())
    assert errors['remdm'] < errors['mdlm'] / 2, errors


@pytest.mark.parametrize('sampler', FIELD)
def test_field_sampler_same_seed_same_text(sampler):
    a, *_ = run_field(sampler, Oracle(strength=1.0), seed=5)
    b, *_ = run_field(sampler, Oracle(strength=1.0), seed=5)
    c, *_ = run_field(sampler, Oracle(strength=1.0), seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize('overrides,message', [
    (dict(sampler='remdm', remdm_eta=1.5), 'remdm_eta'),
    (dict(sampler='remdm', remdm_window=(0.8, 0.2)), 'remdm_window'),
    (dict(sampler='remdm', remdm_score='typo'), 'remdm_score'),
    (dict(sampler='remdm', remdm_score='wrong'), 'merged'),
    (dict(sampler='mdlm', reveal_schedule='exponential'), 'reveal_schedule'),
])
def test_field_settings_are_checked(overrides, message):
    cfg = cfg_with(**overrides)
    with pytest.raises(UserError, match=message):
        generate_setup.check_field_settings(cfg, cfg.sampler, merged=False)


# -----------------------------------------------------------------------------
# merged models in the diffusion loop: one forward pass per iteration

MODES = [
    ('intelligent', dict(use_intelligent_remasking=True)),
    ('threshold', dict(use_intelligent_remasking=True, remasking_confidence_threshold=0.5)),
    ('mixed', dict(use_intelligent_remasking=True, use_mixed_remasking=True, remasking_confidence_threshold=0.5)),
]


def run_merged(mode, model, **overrides):
    cfg = cfg_with(**overrides)
    forward = generate.Forward(model, nullcontext())
    tokens, stats = generate.diffusion_generate(forward, forward, torch.zeros(0, dtype=torch.long), cfg, mode,
                                                vocab(), torch.Generator().manual_seed(0))
    return tokens, stats, forward


@pytest.mark.parametrize('mode,flags', MODES)
def test_merged_model_repairs_its_own_fills_in_one_pass_per_iteration(mode, flags):
    # 30% of each fill is wrong, and the fills are confident: only the next pass can flag them
    tokens, stats, forward = run_merged(mode, MergedOracle(p_wrong=0.3, seed=1), diffusion_iterations=30, **flags)
    assert generate.score_source(forward, forward) == 'merged_model'
    assert forward.rows == int(stats['iterations'].sum())  # one pass per sample and iteration, nothing else
    if mode == 'threshold':
        # a sample converges only on a pass that filled nothing and flagged nothing: its whole text was judged
        assert (stats['converged_at'] >= 0).all() and (tokens == TARGET).all()
    else:
        random_tokens, _, _ = run_merged('random', MergedOracle(p_wrong=0.3, seed=1), diffusion_iterations=30)
        assert int((tokens != TARGET).sum()) < int((random_tokens != TARGET).sum()) / 2


def test_merged_threshold_mode_converges_only_after_judging_its_last_fill():
    # perfect fills at iteration 0 are confident (1 - p(fill) ~ 0) but not yet judged: one more pass does it
    _, stats, forward = run_merged('threshold', MergedOracle(), use_intelligent_remasking=True,
                                   remasking_confidence_threshold=0.5)
    assert stats['converged_at'].tolist() == [1, 1, 1] and forward.rows == 6


def test_merged_scores_visible_positions_by_wrong_and_fresh_fills_by_doubt(monkeypatch):
    seen = []
    orig = generate.choose_remask

    def spy(mode, score, eligible, k, threshold, generator):
        seen.append(score.clone())
        return orig(mode, score, eligible, k, threshold, generator)

    monkeypatch.setattr(generate, 'choose_remask', spy)
    model = MergedOracle(strength=2.0)  # weak fills: many wrong characters, deterministic logits
    # random mode keeps random positions, so wrong ones stay visible; its scores are computed all the same
    tokens, stats, forward = run_merged('random', model, temperature=1.0, diffusion_iterations=6)
    inputs = list(model.calls)  # what each pass saw
    assert len(inputs) == 6
    for it, x in enumerate(inputs):
        filled = x == MASK  # what this pass filled; the rest was visible going into it
        logits, _ = model(x)
        score = seen[it]
        expected_visible = su.wrong_token_probability(logits, WRONG)
        assert torch.allclose(score[~filled], expected_visible[~filled])
        # a fresh fill is scored by 1 - p(fill) of this pass: the fill is what came out of the pass
        after = inputs[it + 1] if it + 1 < len(inputs) else tokens
        kept = filled & (after != MASK)
        p_fill = su.token_probability(logits, after, N_REAL)
        assert torch.allclose(score[kept], 1.0 - p_fill[kept], atol=1e-6)
        if it:
            wrong_visible = ~filled & (x != LONG_TARGET[:x.shape[1]])
            assert wrong_visible.any() and (score[wrong_visible] > 0.99).all()


def test_forward_passes_count_a_merged_model_once():
    forward = generate.Forward(MergedOracle(), nullcontext())
    forward.rows = 12
    assert generate.forward_passes_per_sample((forward, forward), 3) == 4


# -----------------------------------------------------------------------------
# the command line

def test_cli_finds_a_merged_checkpoint_and_runs_every_mode_in_one_pass(tmp_path, capsys):
    save_tiny(tmp_path, 'ckpt_merged_100.pt', training_type='merged')
    out = tmp_path / 'samples.jsonl'
    common = [f'--out_dir={tmp_path}', '--num_samples=2', '--sequence_length=24', '--diffusion_iterations=4',
              f'--output_file={out}', '--live=False']
    for args in (['--use_intelligent_remasking=True'],
                 ['--use_intelligent_remasking=True', '--remasking_confidence_threshold=0.999'],
                 ['--sampler=remdm', '--remdm_score=wrong'], ['--sampler=confidence']):
        sample.main([*common, *args])
    text = capsys.readouterr().out
    assert 'ckpt_merged_100.pt (merged: [MASK] fills and [WRONG] scores from one forward pass)' in text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(line['merged'] and line['remasking_checkpoint'] is None for line in lines)
    assert [line['forward_passes_per_sample'] for line in lines[::2]][2:] == [4, 4]
    assert lines[0]['forward_passes_per_sample'] == 4 and lines[2]['forward_passes_per_sample'] <= 4
    assert lines[0]['stats']['final_wrong_prob']['source'] == 'merged_model'
    # beside an unmasking checkpoint, the unmasking one is the default
    save_tiny(tmp_path, 'ckpt_unmasking_50.pt')
    sample.main(common)
    assert 'ckpt_unmasking_50.pt' in capsys.readouterr().out


@pytest.mark.parametrize('args,expect', [
    (['--remasking_checkpoint_name=ckpt_remasking_all_positions_100.pt', '--use_intelligent_remasking=True'],
     'is a merged model'),
    (['--remasking_checkpoint_name=ckpt_remasking_all_positions_100.pt'], 'drop remasking_checkpoint_name'),
    (['--sampler=ancestral'], "use one of 'auto', 'diffusion', 'mdlm', 'confidence', 'remdm', 'edit'"),
])
def test_cli_merged_and_sampler_errors_are_one_line(tmp_path, capsys, monkeypatch, args, expect):
    save_tiny(tmp_path, 'ckpt_merged_100.pt', training_type='merged')
    save_tiny(tmp_path, 'ckpt_remasking_all_positions_100.pt', training_type='remasking')
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={tmp_path}', *args])
    assert code == 2 and len(err) == 1 and err[0].startswith('error:') and expect in err[0], err


def test_cli_refuses_a_merged_model_as_the_remasker_and_wrong_scores_without_one(tmp_path, capsys, monkeypatch):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    save_tiny(tmp_path, 'ckpt_merged_100.pt', training_type='merged')
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={tmp_path}', '--use_intelligent_remasking=True',
                                              '--remasking_checkpoint_name=ckpt_merged_100.pt'])
    assert code == 2 and len(err) == 1 and 'pass it as checkpoint_name' in err[0]
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={tmp_path}', '--sampler=remdm', '--remdm_score=wrong'])
    assert code == 2 and len(err) == 1 and "remdm_score='wrong'" in err[0]


@pytest.mark.parametrize('sampler', FIELD)
def test_cli_field_samplers_verbose(tmp_path, capsys, sampler):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    texts, stats = sample.main([f'--out_dir={tmp_path}', f'--sampler={sampler}', '--num_samples=2',
                                '--sequence_length=24', '--diffusion_iterations=5', '--start=to', '--verbose=True'])
    out = capsys.readouterr().out
    assert f'{sampler} sampling with' in out and out.count('| revealed') == 5
    assert all(t.startswith('to') and len(t) == 24 and '[' not in t for t in texts)
    assert all(s['iterations'] == 5 and s['revealed'] == 22 + s['remasked'] for s in stats)


# -----------------------------------------------------------------------------
# a merged checkpoint as config/train_merged.py writes it (issue 19): its queue has full targets on a mask-free
# corruption (sampler_states), as an edit model's has, and yet it is an unmasking model with its own [WRONG] head

MERGED_QUEUE = dict(dataset='char_sampler_states', corruption_type='sampler_states', label_semantics='full',
                    mixture_has_mask=True)
MERGED_ARGS = ['--num_samples=2', '--sequence_length=24', '--diffusion_iterations=4', '--live=False']


@pytest.fixture
def merged_dir(tmp_path):
    save_tiny(tmp_path, 'ckpt_merged_100.pt', training_type='merged', **MERGED_QUEUE)
    return tmp_path


def remdm_scores_seen(monkeypatch):
    """The remdm_score of every choose_decoded_remask call from now on."""
    seen, real = [], generate.choose_decoded_remask
    monkeypatch.setattr(generate, 'choose_decoded_remask', lambda kind, *args: seen.append(kind) or real(kind, *args))
    return seen


def last_line(path):
    return json.loads(path.read_text().splitlines()[-1])


def test_auto_samples_a_merged_checkpoint_with_remdm_by_its_own_wrong_scores(merged_dir, capsys, monkeypatch):
    seen = remdm_scores_seen(monkeypatch)
    out = merged_dir / 'samples.jsonl'
    texts, _ = sample.main([f'--out_dir={merged_dir}', *MERGED_ARGS, f'--output_file={out}'])
    printed = capsys.readouterr()
    assert printed.out.startswith('remdm sampling with') and 'ckpt_merged_100.pt (merged: [MASK] fills and [WRONG] ' \
        'scores from one forward pass)' in printed.out
    assert 'warning' not in printed.err and all(len(t) == 24 and '[' not in t for t in texts)
    line = last_line(out)
    assert line['sampler'] == 'remdm' and line['settings']['remdm_score'] == 'wrong' and line['merged']
    assert line['forward_passes_per_sample'] == 4 and set(seen) == {'wrong'}  # one pass per iteration
    # a rule named by hand is kept; on an unmasking checkpoint remdm_score=None is ReMDM's random rule
    sample.main([f'--out_dir={merged_dir}', *MERGED_ARGS, f'--output_file={out}', '--remdm_score=confidence'])
    assert last_line(out)['settings']['remdm_score'] == 'confidence' and seen[-1] == 'confidence'
    unmasking_dir = merged_dir / 'unmasking'
    unmasking_dir.mkdir()
    save_tiny(unmasking_dir, 'ckpt_unmasking_100.pt')
    sample.main([f'--out_dir={unmasking_dir}', *MERGED_ARGS, f'--output_file={out}', '--sampler=remdm'])
    assert last_line(out)['settings']['remdm_score'] == 'random' and seen[-1] == 'random'


def test_the_edit_loop_refuses_a_merged_checkpoint(merged_dir, capsys, monkeypatch):
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={merged_dir}', '--sampler=edit'])
    assert code == 2 and len(err) == 1 and 'is a merged model' in err[0] and "sampler='auto'" in err[0], err


def sample_outcome(folder, flags):
    """('ran', sampler, mode, score source) or ('error', the message with `folder` left out) of sample.py."""
    out = folder / 'samples.jsonl'
    try:
        sample.main([f'--out_dir={folder}', *MERGED_ARGS, f'--output_file={out}', *flags])
    except UserError as e:
        return 'error', str(e).replace(str(folder), '<out_dir>')
    line = last_line(out)
    return 'ran', line['sampler'], line['mode'], line['stats']['final_wrong_prob']['source']


@pytest.mark.parametrize('flags', [
    ['--use_intelligent_remasking=True'],  # each of the seed's flags alone...
    ['--use_mixed_remasking=True'],
    ['--remasking_confidence_threshold=0.5'],
    ['--use_intelligent_remasking=True', '--remasking_confidence_threshold=0.5'],  # ...and as the guide sets them
    ['--use_intelligent_remasking=True', '--use_mixed_remasking=True', '--remasking_confidence_threshold=0.5'],
], ids=lambda flags: '+'.join(f.split('=')[0].lstrip('-') for f in flags))
def test_the_seed_flags_drive_the_diffusion_loop_on_a_merged_checkpoint(merged_dir, capsys, flags):
    # the same mode or the same error as on an unmasking checkpoint, never the edit loop's, and no --sampler:
    # the merged model scores with its own [WRONG] head, in the pass that fills
    unmasking_dir = merged_dir / 'unmasking'
    unmasking_dir.mkdir()
    save_tiny(unmasking_dir, 'ckpt_unmasking_100.pt')
    merged, unmasking = sample_outcome(merged_dir, flags), sample_outcome(unmasking_dir, flags)
    assert 'edit' not in ' '.join(map(str, merged))
    if unmasking[0] == 'error':
        assert merged == unmasking
    else:
        assert merged[:3] == unmasking[:3] and merged[1] == 'diffusion'
        assert (merged[3], unmasking[3]) == ('merged_model', 'unmasking_confidence')
    capsys.readouterr()
