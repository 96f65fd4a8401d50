"""sampling_utils against plain reference loops; both loops of generate.py driven by oracle models; the
sample.py CLI."""
import json
import sys
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

import generate
import generate_setup
import sample
import sampling_utils as su
from checkpoints import save_checkpoint
from common import UserError
from configurator import Config
from data.corpus import build_vocab, decode, encode

TEXT = "to be, or not to be: that is the question. whether 'tis nobler in the mind"
VOCAB = build_vocab(TEXT)
N_REAL, MASK, WRONG, V = VOCAB['mask_token_id'], VOCAB['mask_token_id'], VOCAB['wrong_token_id'], VOCAB['vocab_size']
TARGET = torch.as_tensor(encode(TEXT, VOCAB['stoi']))
LONG_TARGET = torch.cat([TARGET, TARGET])  # for edit-loop sequences that grow past the text


class Oracle(nn.Module):
    """Unmasking model whose logits favour TARGET at every position. With p_wrong > 0 it favours a
    wrong character at that fraction of positions (its own generator: reproducible). The special
    tokens get the highest logits of all, so a sampler that does not ban them is caught."""

    def __init__(self, p_wrong=0.0, strength=20.0, seed=0):
        super().__init__()
        self.p_wrong, self.strength, self.calls = p_wrong, strength, []
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        self.calls.append(idx.clone())
        favoured = LONG_TARGET[:T].expand(B, T)
        if self.p_wrong:
            wrong = torch.rand(B, T, generator=self.gen) < self.p_wrong
            favoured = torch.where(wrong, (favoured + 1) % N_REAL, favoured)
        logits = torch.zeros(B, T, V).scatter(-1, favoured.unsqueeze(-1), self.strength)
        logits[..., MASK:] = self.strength + 10
        return logits, None


class RemaskOracle(nn.Module):
    """Remasking model that flags exactly the positions that differ from TARGET."""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        logits[..., WRONG] = torch.where(idx != LONG_TARGET[:T], 30.0, -30.0)
        return logits, None


def cfg_with(**overrides):
    values = dict(sample.DEFAULTS, num_samples=3, sequence_length=len(TEXT), diffusion_iterations=10)
    values.update(overrides)
    return Config(values)


def vocab():
    return generate.Vocab.from_meta(VOCAB)


def run_diffusion(mode, unmasker=None, remasker=None, prompt='', seed=0, log=None, **overrides):
    cfg = cfg_with(**overrides)
    unmasker = generate.Forward(unmasker or Oracle(), nullcontext())
    remasker = generate.Forward(remasker, nullcontext()) if remasker is not None else None
    p = torch.as_tensor(encode(prompt, VOCAB['stoi'])) if prompt else torch.zeros(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    tokens, stats = generate.diffusion_generate(unmasker, remasker, p, cfg, mode, vocab(), gen, log)
    return tokens, stats, cfg


# -----------------------------------------------------------------------------
# helpers against plain references

def test_schedules_reach_their_ends():
    for kind in su.SCHEDULES:
        assert su.schedule_value(kind, 1.0, 0.1, 0) == pytest.approx(1.0)
        assert su.schedule_value(kind, 1.0, 0.1, 1) == pytest.approx(0.1)
    assert su.schedule_value('linear', 1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert su.schedule_value('cosine', 1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert su.schedule_value('exponential', 1.0, 0.01, 0.5) == pytest.approx(0.1)
    assert su.check_schedule('x', 'exponential', 1.0, 0.0) is not None
    assert su.check_schedule('x', 'linear', 1.0, 0.0) is None


def reference_top_k(scores, eligible, k):
    out = torch.zeros_like(eligible)
    for b in range(scores.shape[0]):
        cand = [t for t in range(scores.shape[1]) if eligible[b, t]]
        cand.sort(key=lambda t: (-float(scores[b, t]), t))
        for t in cand[:int(k[b])]:
            out[b, t] = True
    return out


def test_select_top_k_matches_reference():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (6, 20), generator=g).float()  # many ties
    eligible = torch.rand(6, 20, generator=g) < 0.7
    k = torch.tensor([0, 1, 3, 7, 14, 20])
    assert torch.equal(su.select_top_k(scores, eligible, k), reference_top_k(scores, eligible, k))
    assert torch.equal(su.select_top_k(scores, eligible, 4), reference_top_k(scores, eligible, torch.full((6,), 4)))


def test_select_random_and_threshold():
    eligible = torch.ones(4, 50, dtype=torch.bool)
    eligible[:, :10] = False
    a = su.select_random(eligible, 7, torch.Generator().manual_seed(3))
    b = su.select_random(eligible, 7, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and (a.sum(1) == 7).all() and not a[:, :10].any()
    scores = torch.rand(4, 50, generator=torch.Generator().manual_seed(4))
    expected = torch.tensor([[bool(eligible[i, j]) and float(scores[i, j]) > 0.6 for j in range(50)] for i in range(4)])
    assert torch.equal(su.select_threshold(scores, eligible, 0.6), expected)


def test_select_mixed_candidates_first_then_random():
    g = torch.Generator().manual_seed(5)
    scores = torch.rand(5, 40, generator=g) * 0.5
    scores[0, [3, 9, 17]] = torch.tensor([0.9, 0.95, 0.8])  # 3 candidates, k=6: all 3 + 3 random
    scores[1, :12] = torch.linspace(0.7, 0.99, 12)  # 12 candidates, k=6: the 6 highest
    scores[2:] = 0.1  # no candidates: purely random
    eligible = torch.ones(5, 40, dtype=torch.bool)
    chosen = su.select_mixed(scores, eligible, 6, 0.6, g)
    assert (chosen.sum(1) == 6).all()
    assert chosen[0, [3, 9, 17]].all()
    assert torch.equal(chosen[1], reference_top_k(scores[1:2], eligible[1:2], torch.tensor([6]))[0])
    assert not torch.equal(chosen[2], chosen[3])  # random rows differ
    few = su.select_mixed(scores, eligible & (torch.arange(40) < 4), 6, 0.6, g)  # fewer eligible than k
    assert (few.sum(1) == 4).all()


def reference_delete_insert(row, delete, insert, fill):
    out = []
    for j in range(len(row) + 1):
        if insert[j]:
            out.append(int(fill[j]))
        if j < len(row) and not delete[j]:
            out.append(int(row[j]))
    return out


def test_delete_and_insert_matches_reference():
    g = torch.Generator().manual_seed(6)
    B, L = 4, 15
    tokens = torch.randint(0, 9, (B, L), generator=g)
    delete = su.select_random(torch.ones(B, L, dtype=torch.bool), 3, g)
    insert = su.select_random(torch.ones(B, L + 1, dtype=torch.bool), 5, g)
    fill = torch.randint(100, 200, (B, L + 1), generator=g)
    new, inserted, (carried,) = su.delete_and_insert(tokens, delete, insert, fill, carry=(tokens + 1000,))
    assert new.shape == (B, L + 2)
    for b in range(B):
        assert new[b].tolist() == reference_delete_insert(tokens[b], delete[b], insert[b], fill[b])
    assert torch.equal(inserted, new >= 100) and torch.equal(carried[~inserted], new[~inserted] + 1000)


def test_dilate_and_re_noise():
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 5] = mask[1, 0] = True
    grown = su.dilate(mask, 2)
    expected = torch.tensor([[abs(j - 5) <= 2 for j in range(12)], [j <= 2 for j in range(12)]])
    assert torch.equal(grown, expected)
    tokens = torch.full((3, 40), 5)
    eligible = torch.arange(40).expand(3, 40) >= 10
    noised_tokens, noised = su.apply_re_noise(tokens, eligible, 0.5, N_REAL, torch.Generator().manual_seed(0))
    assert (noised.sum(1) == 15).all() and not noised[:, :10].any()
    assert (noised_tokens < N_REAL).all() and torch.equal(noised_tokens[~noised], tokens[~noised])


def test_sample_tokens_bans_specials_and_draws_in_float64(monkeypatch):
    logits = torch.zeros(2, 7, V)
    logits[..., MASK:] = 50.0  # the specials are the model's favourites: they must still never appear
    seen = []
    real_searchsorted = torch.searchsorted

    def spy(cdf, values, **kwargs):
        seen.append((cdf.dtype, values.dtype))
        return real_searchsorted(cdf, values, **kwargs)

    monkeypatch.setattr(su.torch, 'searchsorted', spy)
    tokens, p = su.sample_tokens(logits, 1.0, None, N_REAL, torch.Generator().manual_seed(0))
    assert seen == [(torch.float64, torch.float64)] and (tokens < N_REAL).all()
    assert torch.allclose(p, torch.full_like(p, 1 / N_REAL))
    logits[0, 0, 4] = 3.0
    greedy, _ = su.sample_tokens(logits, 0.0, None, N_REAL)
    assert greedy[0, 0] == 4 and (greedy < N_REAL).all()
    top1, _ = su.sample_tokens(logits, 1.0, 1, N_REAL, torch.Generator().manual_seed(0))
    assert top1[0, 0] == 4


def test_categorical_draws_match_the_distribution_rare_tokens_included():
    probs = torch.tensor([0.6, 0.3, 0.0999, 0.0001, 0.0], dtype=torch.float64)
    n = 400_000
    logits = probs.log().expand(n, 5)
    draws = su.sample_categorical(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / n
    sigma = (probs * (1 - probs) / n).sqrt()
    assert (freq - probs).abs().le(5 * sigma + 1e-12).all(), freq
    assert freq[3] > 0 and freq[4] == 0  # the 1e-4 token is drawn, the impossible one never


# -----------------------------------------------------------------------------
# the masked diffusion loop with oracles

@pytest.mark.parametrize('mode,overrides', [
    ('random', {}),
    ('intelligent', dict(use_intelligent_remasking=True)),
    ('threshold', dict(use_intelligent_remasking=True, remasking_confidence_threshold=0.5)),
    ('mixed', dict(use_intelligent_remasking=True, use_mixed_remasking=True, remasking_confidence_threshold=0.5)),
])
def test_every_mode_reconstructs_the_text_with_a_prompt(mode, overrides):
    assert generate_setup.remasking_mode(cfg_with(**overrides)) == mode
    prompt = TEXT[:9]
    for remasker in (RemaskOracle(), None):  # with a remasking model and with the fallback
        tokens, _, _ = run_diffusion(mode, Oracle(), remasker, prompt=prompt, **overrides)
        assert all(decode(row.tolist(), VOCAB['itos']) == TEXT for row in tokens)


def test_intelligent_modes_repair_a_noisy_unmasker():
    # 30% of each fill is wrong; the remasking oracle finds exactly those positions
    tokens, _, _ = run_diffusion('threshold', Oracle(p_wrong=0.3), RemaskOracle(), diffusion_iterations=40,
                                 use_intelligent_remasking=True, remasking_confidence_threshold=0.5)
    assert (tokens == TARGET).all()  # threshold mode keeps going until nothing is flagged
    errors = {}
    for mode in ('random', 'intelligent'):  # schedule modes: only the last fill can leave errors behind
        tokens, _, _ = run_diffusion(mode, Oracle(p_wrong=0.3), RemaskOracle(), diffusion_iterations=20,
                                     use_intelligent_remasking=mode == 'intelligent')
        errors[mode] = int((tokens != TARGET).sum())
    assert errors['intelligent'] <= 3 * round(0.1 * len(TEXT)) * 0.6 < errors['random']


def test_random_mode_remasks_exactly_the_scheduled_count():
    records = []
    _, _, cfg = run_diffusion('random', Oracle(), prompt=TEXT[:5], log=lambda it, r: records.append(r))
    span = len(TEXT) - 5
    n = cfg.diffusion_iterations
    for it, r in enumerate(records[:-1]):
        k = su.scheduled_count('linear', cfg.start_ratio, cfg.end_ratio, (it + 1) / (n - 1), span)
        assert (r['remasked'] == k).all()
    assert (records[-1]['remasked'] == 0).all() and (records[0]['masked'] == span).all()
    assert (records[-1]['masked'] == round(cfg.end_ratio * span)).all()


def test_threshold_mode_stops_at_first_clean_iteration_and_per_sample():
    _, stats, _ = run_diffusion('threshold', Oracle(), RemaskOracle(), use_intelligent_remasking=True,
                                remasking_confidence_threshold=0.5)
    assert stats['converged_at'].tolist() == [0, 0, 0] and stats['iterations'].tolist() == [1, 1, 1]
    oracle = Oracle(p_wrong=0.15, seed=3)
    tokens, stats, _ = run_diffusion('threshold', oracle, RemaskOracle(), num_samples=6, diffusion_iterations=40,
                                     use_intelligent_remasking=True, remasking_confidence_threshold=0.5)
    converged = stats['converged_at']
    assert (converged >= 0).all() and len(set(converged.tolist())) > 1  # samples finish at different times
    assert (tokens == TARGET).all()
    rows_per_call = [len(x) for x in oracle.calls]
    assert rows_per_call == [int((converged >= it).sum()) for it in range(len(oracle.calls))]
    assert torch.equal(stats['iterations'], converged + 1)


def test_mixed_mode_takes_candidates_first(monkeypatch):
    seen = []
    orig = generate.choose_remask

    def spy(mode, score, eligible, k, threshold, generator):
        chosen = orig(mode, score, eligible, k, threshold, generator)
        seen.append((score > threshold, chosen, k))
        return chosen

    monkeypatch.setattr(generate, 'choose_remask', spy)
    run_diffusion('mixed', Oracle(p_wrong=0.1, seed=2), RemaskOracle(), use_intelligent_remasking=True,
                  use_mixed_remasking=True, remasking_confidence_threshold=0.5)
    assert any(0 < int(c.sum(1).min()) for c, _, _ in seen)  # some iterations did have candidates
    for candidates, chosen, k in seen:
        assert (chosen.sum(1) == k).all()
        assert ((chosen & candidates).sum(1) == torch.clamp(candidates.sum(1), max=k)).all()  # candidates first


def test_same_seed_same_text_different_seed_different_text():
    noisy = dict(temperature=1.0)
    a, _, _ = run_diffusion('random', Oracle(strength=1.0), seed=7, **noisy)
    b, _, _ = run_diffusion('random', Oracle(strength=1.0), seed=7, **noisy)
    c, _, _ = run_diffusion('random', Oracle(strength=1.0), seed=8, **noisy)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a < N_REAL).all()


def test_contradictory_flags_are_rejected():
    for flags in (dict(use_mixed_remasking=True),
                  dict(use_intelligent_remasking=True, use_mixed_remasking=True),
                  dict(remasking_confidence_threshold=0.1),
                  dict(use_intelligent_remasking=True, remasking_confidence_threshold=1.5)):
        with pytest.raises(UserError):
            generate_setup.remasking_mode(cfg_with(**flags))


def test_mode_names_and_flags_are_one_mapping():
    # evaluate.py selects a mode by name, sample.py reads it back from the flags: both ways must agree
    for mode in generate.REMASKING_MODES:
        assert generate_setup.remasking_mode(cfg_with(**generate_setup.mode_settings(mode, 0.3))) == mode
    assert generate_setup.mode_settings('intelligent', 0.3)['remasking_confidence_threshold'] is None


def test_prompt_encoding_and_decoding():
    prompt = generate.encode_prompt('to be', VOCAB['stoi'], 'cpu')
    assert prompt.dtype == torch.long and vocab().decode(prompt.view(1, -1)) == ['to be']
    assert generate.encode_prompt('', VOCAB['stoi'], 'cpu').shape == (0,)
    with pytest.raises(UserError, match='prompt'):
        generate.check_prompt_fits(prompt, 5)


# -----------------------------------------------------------------------------
# the edit loop

def run_edit(prompt='', max_length=None, seed=0, **overrides):
    cfg = cfg_with(max_iterations=12, **overrides)
    model = generate.Forward(Oracle(), nullcontext())
    p = torch.as_tensor(encode(prompt, VOCAB['stoi'])) if prompt else torch.zeros(0, dtype=torch.long)
    lengths = []
    tokens, stats = generate.edit_generate(model, p, cfg, vocab(), torch.Generator().manual_seed(seed),
                                         max_length or len(TEXT), lambda it, r: lengths.append(r['length']))
    return tokens, stats, lengths, p


def test_edit_loop_reconstructs_without_structural_edits():
    tokens, stats, _, p = run_edit(prompt=TEXT[:6], insert_ratio_start=0.0, delete_ratio_start=0.0)
    assert (tokens == TARGET).all()


@pytest.mark.parametrize('ins,dele', [(0.3, 0.0), (0.0, 0.3), (0.1, 0.1)])
def test_edit_loop_length_bounds_prompt_and_no_specials(ins, dele):
    prompt = TEXT[:10]
    tokens, stats, lengths, p = run_edit(prompt=prompt, max_length=len(TEXT) + 8, sequence_length=len(TEXT) - 8,
                                         insert_ratio_start=ins, delete_ratio_start=dele, insert_schedule='linear',
                                         noise_start=0.2)
    assert all(len(p) + 1 <= n <= len(TEXT) + 8 for n in lengths)
    assert (tokens[:, :len(p)] == p).all() and (tokens < N_REAL).all()
    if ins > dele:
        assert lengths[-1] == len(TEXT) + 8  # grew up to the block size and stopped there
    if dele > ins:
        assert lengths[-1] < len(TEXT) - 8
    totals = stats['totals']
    assert ((totals[2] > 0) == (ins > 0)).all() and ((totals[1] > 0) == (dele > 0)).all()


def test_edit_loop_cooling_keeps_edits_apart():
    p_now = torch.linspace(0.0, 1.0, 20).expand(1, 20)  # lowest confidence at the start
    cool = torch.zeros(1, 20, dtype=torch.long)
    cool[0, 2] = 1
    cfg = cfg_with(cooling_distance=2)
    delete, insert, capped = generate.plan_structural_edits(p_now, cool, 0, 3, 2, 30, cfg)
    assert capped == 0
    assert delete[0].nonzero().squeeze(1).tolist() == [5, 6, 7]  # 0..4 are within 2 of the recent edit at 2
    gaps = insert[0].nonzero().squeeze(1).tolist()
    assert len(gaps) == 2 and all(g >= 9 for g in gaps)  # clear of the cooling zone and of the deletions


# -----------------------------------------------------------------------------
# the command line on real checkpoints

def save_tiny(out_dir, name, training_type='unmasking', text=TEXT, block_size=48, **meta_extra):
    from model import GPT, GPTConfig
    vocab_info = build_vocab(text)
    args = dict(block_size=block_size, vocab_size=vocab_info['vocab_size'], n_layer=1, n_head=2, n_embd=16,
                dropout=0.0, bias=False, attention_type='bidirectional', pos_encoding='learned')
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    meta = dict(vocab_info, dataset='char_diffusion', block_size=block_size, corruption_type='mask',
                label_semantics='partial')
    meta.update(meta_extra)
    ckpt = dict(model=model.state_dict(), model_args=args, iter_num=100, best_val_loss=1.0, config={},
                meta=meta, training_type=training_type,
                remasking_loss_type='all_positions' if training_type == 'remasking' else None, run_id='test')
    save_checkpoint(ckpt, str(out_dir / name))


def run_cli(capsys, monkeypatch, args):
    monkeypatch.setattr(sys, 'argv', ['sample.py', *args])
    with pytest.raises(SystemExit) as exit_info:
        from common import run_cli as cli
        cli(sample.main)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err


def test_cli_prints_samples_and_writes_jsonl(tmp_path):
    from conftest import run_script
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    (tmp_path / 'rm').mkdir()
    save_tiny(tmp_path / 'rm', 'ckpt_remasking_all_positions_100.pt', training_type='remasking')
    out = tmp_path / 'samples.jsonl'
    code, text = run_script(['sample.py', f'--out_dir={tmp_path}', '--num_samples=2', '--sequence_length=32',
                             '--diffusion_iterations=4', '--start=to be', '--use_intelligent_remasking=True',
                             '--remasking_confidence_threshold=0.5', '--verbose=True',
                             f'--remasking_out_dir={tmp_path / "rm"}', '--remasking_checkpoint_name=newest',
                             f'--output_file={out}'], timeout=120)
    assert code == 0, text
    assert 'ckpt_unmasking_100.pt' in text and 'remasking mode: threshold' in text and '[WRONG] p min' in text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and all(line['text'].startswith('to be') and len(line['text']) == 32 for line in lines)
    assert lines[0]['mode'] == 'threshold' and lines[0]['settings']['seed'] == 1337
    assert {'iterations', 'converged_at', 'final_wrong_prob'} <= set(lines[0]['stats'])
    assert lines[0]['text'] in text
    assert lines[0]['remasking_checkpoint'].endswith('rm/ckpt_remasking_all_positions_100.pt')


def test_cli_edit_sampler_in_process(tmp_path, capsys):
    # the newest checkpoint is a full-target random-replacement model: sampler auto -> edit
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', corruption_type='random_replacement', label_semantics='full')
    save_tiny(tmp_path, 'ckpt_unmasking_50.pt')  # older: never picked
    texts, stats = sample.main([f'--out_dir={tmp_path}', '--num_samples=2', '--sequence_length=24',
                                '--max_iterations=4', '--start=to', '--insert_ratio_start=0.2'])
    assert 'edit sampling' in capsys.readouterr().out
    assert all(t.startswith('to') and '[' not in t and len(t) <= 48 for t in texts)
    a, _ = sample.main([f'--out_dir={tmp_path}', '--num_samples=2', '--sequence_length=24', '--max_iterations=4'])
    b, _ = sample.main([f'--out_dir={tmp_path}', '--num_samples=2', '--sequence_length=24', '--max_iterations=4'])
    assert a == b


@pytest.mark.parametrize('args,expect', [
    (['--checkpoint_name=ckpt_unmasking_7.pt'], 'holds: ckpt_unmasking_100.pt'),
    (['--start=XYZ'], "'XYZ'"),
    (['--sequence_length=500'], 'block size 48'),
    (['--remasking_checkpoint_name=other.pt', '--use_intelligent_remasking=True'], 'do not share a vocabulary'),
    (['--remasking_checkpoint_name=newest', '--use_intelligent_remasking=True'], 'no remasking checkpoint found'),
    (['--remasking_checkpoint_name=ckpt_unmasking_100.pt', '--use_intelligent_remasking=True'], 'not a remasking'),
    (['--use_mixed_remasking=True'], 'use_intelligent_remasking=True'),
    (['--use_intelligent_remasking=True', '--use_mixed_remasking=True'], 'remasking_confidence_threshold'),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, expect):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    save_tiny(tmp_path, 'other.pt', training_type='remasking', text=TEXT + 'XYZ')
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={tmp_path}', *args])
    assert code == 2 and len(err) == 1 and err[0].startswith('error:') and expect in err[0], err


def test_cli_error_for_empty_out_dir(tmp_path, capsys, monkeypatch):
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={tmp_path}'])
    assert code == 2 and 'no unmasking or merged checkpoint' in err[0] and 'no checkpoints' in err[0]


def test_bench_runs_every_mode_at_sample_defaults(monkeypatch):
    monkeypatch.setenv('TQDM_DISABLE', '1')  # what importing the bench sets; undone after the test
    from bench import bench_sampling as bench
    assert bench.LOOP_SETTINGS.items() <= sample.DEFAULTS.items()  # it measures what sample.py runs
    models, vocab_info = bench.random_models(16, 'cpu')
    # 2 iterations: one pass each, two with a remasking model (threshold: at most); the edit loop scores its
    # final text once more
    expected = {'random': 2, 'intelligent-fallback': 2, 'intelligent': 4, 'intelligent-merged': 2, 'threshold': 4,
                'mixed': 4, 'mdlm': 2, 'confidence': 2, 'remdm': 2, 'edit': 3}
    for name in bench.MODES:
        chars_per_second, passes, _ = bench.run_mode(name, models, vocab_info, 'cpu', nullcontext(), 2, 16, 2)
        assert chars_per_second > 0, name
        assert passes <= expected[name] if name == 'threshold' else passes == expected[name], name
