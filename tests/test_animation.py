"""sample.py's animation_file (issue 20): the live view's frames in a GIF, one per iteration, for every
sampler and the edit loop; the last frame says what sample.py prints."""
import pytest
import torch

import generate
import generate_setup
import sample
import sampling_animation
import sampling_log
from common import UserError
from data.corpus import build_vocab
from test_sampling import save_tiny

Image = pytest.importorskip('PIL.Image')

PROMPT = 'to be'
COLUMNS = 12  # narrower than a sample: every sample wraps
SAMPLERS = {  # name: (checkpoint meta, sample.py arguments)
    **{f'diffusion-{mode}': ({}, ['--sampler=diffusion', '--diffusion_iterations=5',
                                  *(f'--{k}={v}' for k, v in generate_setup.mode_settings(mode, 0.5).items()
                                    if v is not None)])
       for mode in generate.REMASKING_MODES},
    # a threshold no score of the random tiny model reaches: every sample converges at once, one frame
    'diffusion-threshold-early': ({}, ['--sampler=diffusion', '--diffusion_iterations=5',
                                       '--use_intelligent_remasking=True', '--remasking_confidence_threshold=0.999']),
    **{name: ({}, [f'--sampler={name}', '--diffusion_iterations=5']) for name in generate.FIELD_SAMPLERS},
    'edit': (dict(corruption_type='random_replacement', label_semantics='full'),
             ['--max_iterations=5', '--insert_ratio_start=0.2', '--delete_ratio_start=0.1']),
}


@pytest.fixture
def drawn(monkeypatch):
    """The (text rows, kind rows) of every frame sampling_animation draws, in order."""
    frames = []
    real = sampling_animation.draw_frame

    def spy(text_rows, kind_rows, canvas):
        frames.append((text_rows, kind_rows))
        return real(text_rows, kind_rows, canvas)
    monkeypatch.setattr(sampling_animation, 'draw_frame', spy)
    return frames


def animate(tmp_path, sampler, num_samples, *extra):
    meta, args = SAMPLERS[sampler]
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt', **meta)
    gif = tmp_path / 'anim' / 'out.gif'  # a folder that is not there yet
    texts, per_sample = sample.main([f'--out_dir={tmp_path}', f'--num_samples={num_samples}', '--sequence_length=24',
                                     f'--start={PROMPT}', f'--animation_file={gif}', f'--animation_columns={COLUMNS}',
                                     '--animation_frame_ms=40', '--animation_final_ms=900', *args, *extra])
    return gif, texts, per_sample


def gif_frames(path):
    """(number of frames, their durations in ms, their sizes), read back with Pillow."""
    with Image.open(path) as image:
        durations, sizes = [], set()
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info['duration'])
            sizes.add(image.size)
        return image.n_frames, durations, sizes


@pytest.mark.parametrize('num_samples', [1, 3])
@pytest.mark.parametrize('sampler', list(SAMPLERS))
def test_one_frame_per_iteration_and_the_last_is_the_printed_sample(tmp_path, capsys, drawn, sampler, num_samples):
    gif, texts, per_sample = animate(tmp_path, sampler, num_samples)
    iterations = max(s['iterations'] for s in per_sample)  # threshold mode may stop early
    n_frames, durations, sizes = gif_frames(gif)
    assert n_frames == len(drawn) == iterations
    assert durations == [40] * (iterations - 1) + [900] and len(sizes) == 1  # the finished text held longer
    text_rows, kind_rows = drawn[-1]
    printed_rows = sampling_log.frame_rows('', texts, COLUMNS)[1:]  # what sample.py printed, wrapped
    header_rows = len(text_rows) - len(printed_rows)
    assert text_rows[header_rows:] == printed_rows
    assert f"{iterations}/5" in ''.join(text_rows[:header_rows])  # the header, never cut off
    sample_starts = [i + 1 for i, row in enumerate(kind_rows) if i == header_rows - 1 or set(row) == {'-'}]
    assert len(sample_starts) == num_samples
    assert all(kind_rows[i].startswith('p' * len(PROMPT)) for i in sample_starts)  # the prompt in its colour
    assert all(len(t) == len(k) for t, k in zip(text_rows, kind_rows))
    out = capsys.readouterr().out
    assert f"wrote {iterations} frames to {gif}" in out and all(text in out for text in texts)
    if sampler == 'diffusion-threshold-early':
        assert iterations == 1  # the early stop is what this case is for
    elif sampler != 'edit':  # the masked loops start from masks; the edit loop from random characters
        assert sampling_log.PLACEHOLDER in ''.join(drawn[0][0][header_rows:])
        assert 'm' in ''.join(drawn[0][1][header_rows:]) and 'm' not in ''.join(kind_rows[header_rows:])


def test_kinds_follow_the_text_through_the_cuts():
    lines = generate.Vocab.from_meta(build_vocab('to be\nor not'))
    ids = lambda text: [lines.stoi[c] for c in text]
    tokens = torch.tensor([ids('to\nb') + [lines.mask_token_id] + ids('\nor not') + [lines.wrong_token_id]])
    texts = sampling_log.render_tokens(tokens, lines, sampling_log.PLACEHOLDER)
    kinds = sampling_animation.character_kinds(tokens, texts, 3, lines)  # the prompt: 'to\n'
    assert kinds == ['pp\ntm\nttttttm']  # newlines kept where the text has them
    frame = sampling_animation.Frame('step 1/3   (\u2591 = still masked)', texts * 2, kinds * 2)
    text_rows, kind_rows = frame.rows(4)
    assert text_rows == sampling_log.frame_rows(frame.header, frame.texts, 4)
    assert [len(r) for r in text_rows] == [len(r) for r in kind_rows]
    assert kind_rows[:8] == ['hhhh', 'hhhh', 'hhhh', 'mhhh', 'hhhh', 'hhhh', 'hhhh', 'h']  # the header, uncut
    assert kind_rows[8:] == ['pp', 'tm', 'tttt', 'ttm', '----', 'pp', 'tm', 'tttt', 'ttm']
    assert text_rows[8:12] == ['to', 'b\u2591', 'or n', 'ot\u2591']


def test_the_animation_passes_each_record_on_to_the_live_view(tmp_path, capsys, drawn):
    gif, texts, _ = animate(tmp_path, 'confidence', 1, '--live=True')
    out = capsys.readouterr().out
    assert out.count(' iteration ') == 5 and '\x1b[J' in out and gif_frames(gif)[0] == 5 == len(drawn)
    _, texts_verbose, _ = animate(tmp_path, 'edit', 1, '--verbose=True')
    assert capsys.readouterr().out.count('round ') == 5 and texts_verbose


@pytest.mark.parametrize('setting,expect', [
    ('--animation_file=out.png', 'ending in .gif'),
    ('--animation_frame_ms=5', 'animation_frame_ms=5 must be a whole number >= 20'),
    ('--animation_final_ms=0', 'animation_final_ms=0'),
    ('--animation_columns=3', 'animation_columns=3'),
])
def test_bad_animation_settings_are_one_line_before_any_model_loads(tmp_path, setting, expect):
    with pytest.raises(UserError, match=expect):  # tmp_path holds no checkpoint: the check comes first
        sample.main([f'--out_dir={tmp_path}', '--animation_file=a.gif', setting])


def test_without_pillow_the_animation_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling_animation, 'Image', None)
    with pytest.raises(UserError, match='pip install pillow'):
        sample.main([f'--out_dir={tmp_path}', f'--animation_file={tmp_path / "a.gif"}'])
    save_tiny(tmp_path, 'ckpt_unmasking_100.pt')
    texts, _ = sample.main([f'--out_dir={tmp_path}', '--num_samples=1', '--sequence_length=8',
                            '--diffusion_iterations=2'])  # without animation_file nothing needs Pillow
    assert len(texts) == 1
