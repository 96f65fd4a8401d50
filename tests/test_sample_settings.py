"""sample.py says what it does (issue 12: start_ratio, the edit loop's insertion limit, settings another
sampler reads, the docs' categorical draw, the mixed-mode command, words in any script) and the live view."""
import io
import json
import os
import unicodedata

import pytest
import torch

import eval_metrics as em
import generate_setup
import sample
import sampling_log
import sampling_utils as su
from common import UserError
from conftest import REPO_ROOT
from configurator import Config
from test_sampling import MASK, TEXT, VOCAB, Oracle, cfg_with, run_cli, run_diffusion, save_tiny, vocab

QUICK = ['--num_samples=2', '--sequence_length=24', '--diffusion_iterations=4']


@pytest.fixture
def unmasking_dir(tmp_path):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    return tmp_path


# -----------------------------------------------------------------------------
# 1. start_ratio is the share of the editable span masked when generation starts

def test_start_ratio_is_the_share_masked_when_generation_starts():
    records = []
    _, _, cfg = run_diffusion('random', Oracle(), prompt=TEXT[:10], log=lambda it, r: records.append(r),
                              start_ratio=0.5, diffusion_iterations=4)
    span = len(TEXT) - 10
    assert int(records[0]['masked'][0]) == span  # iteration 0: the first fill of every position...
    assert int(records[0]['remasked'][0]) == round(0.5 * span)  # ...of which start_ratio is masked again
    assert int(records[1]['masked'][0]) == round(0.5 * span)  # where generation starts
    assert [int(r['masked'][0]) for r in records] == su.masked_counts('linear', 0.5, 0.1, 4, span, 3)[:4]
    assert int(records[-1]['masked'][0]) == round(0.1 * span)  # end_ratio still goes into the last iteration


def test_start_ratio_shows_in_the_verbose_output(unmasking_dir, capsys):
    sample.main([f'--out_dir={unmasking_dir}', '--num_samples=1', '--sequence_length=40',
                 '--diffusion_iterations=4', '--start_ratio=0.5', '--verbose=True', '--sampler=diffusion'])
    out = capsys.readouterr().out
    assert 'start_ratio=0.5: iteration 0 is the first fill of all 40 editable positions; 20 of them are masked' in out
    assert 'iter   0 | active 1/1 | masked 40 | remasked 20' in out and 'iter   1 | active 1/1 | masked 20 |' in out


# -----------------------------------------------------------------------------
# 2. the edit loop says once when the block size takes insertions away

def test_edit_loop_says_once_when_the_block_size_caps_insertions(tmp_path, capsys):
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', corruption_type='random_replacement', label_semantics='full')
    args = [f'--out_dir={tmp_path}', '--num_samples=2', '--max_iterations=6', '--insert_ratio_start=0.2',
            '--delete_ratio_start=0.0', '--noise_start=0.0']
    sample.main([*args, '--sequence_length=48'])  # the block size: no room to grow
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith('note: the edit loop')]
    assert len(notes) == 1 and 'block size (48)' in notes[0] and '--sequence_length=' in notes[0], err
    sample.main([*args, '--sequence_length=16'])  # room enough: nothing to say
    assert 'note: the edit loop' not in capsys.readouterr().err


# -----------------------------------------------------------------------------
# 4. settings another sampler reads are named once; an unused remasking model is neither loaded nor run

def test_settings_of_another_sampler_are_warned_once(unmasking_dir, capsys):
    sample.main([f'--out_dir={unmasking_dir}', *QUICK, '--insert_ratio_start=0.5'])  # the example
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1 and "insert_ratio_start=0.5 (read by sampler='edit')" in warnings[0], warnings
    sample.main([f'--out_dir={unmasking_dir}', *QUICK, '--sampler=diffusion', '--insert_ratio_start=0.5',
                 '--reveal_schedule=cosine'])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1  # several settings: still one line
    assert "reveal_schedule='cosine' (read by sampler='mdlm', 'confidence' or 'remdm')" in warnings[0]
    sample.main([f'--out_dir={unmasking_dir}', *QUICK, '--sampler=mdlm', '--end_ratio=0.2'])
    assert "end_ratio=0.2 (read by sampler='diffusion' in random, intelligent or mixed mode)" in capsys.readouterr().err
    sample.main([f'--out_dir={unmasking_dir}', *QUICK])  # defaults only: not a word
    assert 'warning' not in capsys.readouterr().err


def test_random_mode_neither_loads_nor_runs_a_remasking_model(unmasking_dir, capsys, monkeypatch):
    save_tiny(unmasking_dir, 'ckpt_remasking_all_positions_100.pt', training_type='remasking')
    loaded = []
    real_load = generate_setup.load_remasking_checkpoint
    monkeypatch.setattr(generate_setup, 'load_remasking_checkpoint', lambda *a: loaded.append(a) or real_load(*a))
    out = unmasking_dir / 'samples.jsonl'
    sample.main([f'--out_dir={unmasking_dir}', *QUICK, '--remasking_checkpoint_name=newest', f'--output_file={out}'])
    err = capsys.readouterr().err
    assert "remasking_checkpoint_name='newest' (read by sampler='diffusion' with use_intelligent_remasking=True)" in err
    assert 'no remasking model is loaded' in err and not loaded
    line = json.loads(out.read_text().splitlines()[0])
    assert line['remasking_checkpoint'] is None and line['forward_passes_per_sample'] == 4
    assert line['stats']['final_wrong_prob']['source'] == 'unmasking_confidence'


def test_ignored_settings_know_what_each_sampler_reads():
    defaults = dict(sample.DEFAULTS)
    cfg = Config(dict(defaults, start_ratio=0.5, remasking_schedule='cosine', remdm_eta=0.1))
    assert [k for k, _ in generate_setup.ignored_settings(cfg, defaults, 'diffusion', 'threshold')] == \
        ['remasking_schedule', 'remdm_eta', 'start_ratio']
    assert [k for k, _ in generate_setup.ignored_settings(cfg, defaults, 'diffusion', 'random')] == ['remdm_eta']
    assert [k for k, _ in generate_setup.ignored_settings(cfg, defaults, 'remdm', None)] == ['remasking_schedule']
    # every key a sampler can ignore is a sample.py key (a typo here would never warn)
    assert set(generate_setup.READERS) <= set(defaults)


# -----------------------------------------------------------------------------
# 7. the docs describe the categorical draw the code makes

def test_docs_describe_the_categorical_draw_the_code_makes():
    docs = os.path.join(REPO_ROOT, 'docs')
    for name in (n for n in os.listdir(docs) if n.endswith('.md')):  # docs/ also holds pictures
        text = open(os.path.join(docs, name), encoding='utf-8').read()
        assert 'torch.multinomial' not in text, f"docs/{name} says draws use torch.multinomial; the code inverts a CDF"
    sampling = open(os.path.join(docs, 'sampling.md'), encoding='utf-8').read()
    assert 'inverting their cumulative sum' in sampling
    predictor = open(os.path.join(REPO_ROOT, 'data', 'checkpoint_predictor.py'), encoding='utf-8').read()
    assert 'sample_tokens' in predictor and 'multinomial(' not in predictor  # sampling_utils' float64 CDF draw
    assert 'searchsorted' in open(os.path.join(REPO_ROOT, 'sampling_utils.py'), encoding='utf-8').read()


# -----------------------------------------------------------------------------
# 8. the mixed-mode error names the full command that works

GUIDE_EXAMPLE = ['--use_mixed_remasking=True', '--remasking_schedule=exponential', '--diffusion_iterations=20']


def test_mixed_mode_error_names_the_full_command_that_works(unmasking_dir, capsys, monkeypatch):
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={unmasking_dir}', *GUIDE_EXAMPLE])
    assert code == 2 and len(err) == 1
    command = err[0].split('the full command: ')[1]
    expected = (f"python sample.py --out_dir={unmasking_dir} --use_mixed_remasking=True "
                f"--remasking_schedule=exponential --diffusion_iterations=20 --use_intelligent_remasking=True "
                f"--remasking_confidence_threshold=0.01")
    assert command == expected
    texts, _ = sample.main(command.split()[2:] + ['--num_samples=1', '--sequence_length=16'])
    assert len(texts) == 1  # the command it names runs
    capsys.readouterr()
    code, err = run_cli(capsys, monkeypatch, [f'--out_dir={unmasking_dir}', '--use_intelligent_remasking=True',
                                              '--use_mixed_remasking=True'])
    assert code == 2 and err[0].endswith("--use_mixed_remasking=True --remasking_confidence_threshold=0.01")


def test_command_line_replaces_the_keys_it_sets_and_quotes():
    argv = ['config/x.py', '--use_intelligent_remasking=False', '--start=ROMEO: hi']
    assert generate_setup.command_line(argv, use_intelligent_remasking=True) == \
        "python sample.py config/x.py '--start=ROMEO: hi' --use_intelligent_remasking=True"


# -----------------------------------------------------------------------------
# 17. valid words are runs of letters in any script

def test_valid_words_are_runs_of_letters_in_any_script():
    assert em.words("Zażółć gęślą jaźń! Ёлка, ёж; Ἀθῆναι σοφία 'tis o'er x2y") == \
        ['zażółć', 'gęślą', 'jaźń', 'ёлка', 'ёж', 'ἀθῆναι', 'σοφία', 'tis', "o'er", 'x', 'y']
    corpus = "Мороз и солнце; день чудесный!\nЕщё ты дремлешь, друг прелестный.\n" * 20
    vocabulary = set(em.words(corpus))
    assert em.valid_word_share(["Мороз и день, друг... ыщъ"], vocabulary) == pytest.approx(4 / 5)
    assert em.words("नमस्ते दुनिया") == ['नमस्ते', 'दुनिया']  # vowel signs are combining marks of their word
    assert em.words(unicodedata.normalize('NFD', 'Gęślą')) == [unicodedata.normalize('NFD', 'gęślą')]
    assert em.valid_word_share(["Μῆνιν ἄειδε θεά"], set(em.words("μῆνιν ἄειδε"))) == pytest.approx(2 / 3)


# -----------------------------------------------------------------------------
# the live view

class FakeTerminal(io.StringIO):
    encoding = 'utf-8'

    def isatty(self):
        return True


def test_live_view_is_on_for_a_terminal_only():
    cfg = cfg_with(live=None, verbose=False)
    assert sampling_log.live_enabled(cfg, FakeTerminal()) and not sampling_log.live_enabled(cfg, io.StringIO())
    assert not sampling_log.live_enabled(cfg_with(live=None, verbose=True), FakeTerminal())
    assert sampling_log.live_enabled(cfg_with(live=True), io.StringIO())  # by hand, even into a pipe
    assert not sampling_log.live_enabled(cfg_with(live=False), FakeTerminal())
    for bad in (dict(live=True, verbose=True), dict(live='yes')):
        with pytest.raises(UserError, match='live'):
            sampling_log.live_enabled(cfg_with(**bad), FakeTerminal())


def test_render_tokens_and_frame():
    tokens = torch.tensor([[VOCAB['stoi']['t'], MASK, VOCAB['stoi']['o'], VOCAB['wrong_token_id']]])
    assert sampling_log.render_tokens(tokens, vocab(), '#') == ['t#o#']
    rows = sampling_log.live_frame('head', ['abcdefgh\nij', 'k'], width=5, height=20)
    assert rows == ['head', 'abcd', 'efgh', 'ij', '----', 'k']  # cut at width - 1: the terminal never wraps
    assert sampling_log.live_frame('head', ['abcdefgh'], width=5, height=3) == ['head', 'abcd']  # height - 1 rows


def test_live_view_redraws_in_place_and_clears_at_the_end():
    screen = FakeTerminal()
    view = sampling_log.LiveView(vocab(), 'mdlm iteration', 2, screen)
    masked = torch.full((1, 3), MASK)
    view(0, dict(tokens=masked))
    view(1, dict(tokens=torch.tensor([[VOCAB['stoi']['t'], VOCAB['stoi']['o'], MASK]])))
    view.close()
    frames = screen.getvalue()
    assert frames.startswith('mdlm iteration 1/2') and '\u2591\u2591\u2591\n' in frames
    assert frames.count('\x1b[2F\x1b[J') == 2  # the second frame and the close each erase two rows
    assert 'to\u2591\n' in frames


def test_live_view_falls_back_to_ascii_placeholder():
    screen = FakeTerminal()
    screen.encoding = 'ascii'
    view = sampling_log.LiveView(vocab(), 'x', 1, screen)
    view(0, dict(tokens=torch.full((1, 2), MASK)))
    assert '__\n' in screen.getvalue()


def test_sample_stays_plain_when_stdout_is_not_a_terminal(unmasking_dir, capsys):
    texts, _ = sample.main([f'--out_dir={unmasking_dir}', '--num_samples=1', '--sequence_length=16',
                            '--diffusion_iterations=3'])  # live=None: capsys is no terminal
    out = capsys.readouterr().out
    assert '\x1b[' not in out and '\u2591' not in out and texts[0] in out


@pytest.mark.parametrize('sampler', ['diffusion', 'confidence'])
def test_sample_live_view_draws_each_iteration_then_prints_the_text(unmasking_dir, capsys, sampler):
    texts, _ = sample.main([f'--out_dir={unmasking_dir}', '--num_samples=1', '--sequence_length=16',
                            '--diffusion_iterations=3', '--live=True', f'--sampler={sampler}'])
    out = capsys.readouterr().out
    assert out.count(' iteration ') == 3 and '\u2591' in out and '\x1b[J' in out
    assert out.rstrip().endswith(texts[0] + '\n---------------'.rstrip())
