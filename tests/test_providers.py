"""Providers in-process: what the rows contain, label semantics, stages, seeds, meta.pkl, and how
providers are put together (siblings composing data/positions.py and data/corruption.py)."""
import ast
import os

import pytest
import torch

import queue_io
from common import REPO_ROOT, UserError
from configurator import load_config
from data import corruption, positions
from data.corpus import IGNORE_INDEX, decode, split_ids
from prepare_streaming import (BASE_DEFAULTS, DataProviderBase, available_datasets, file_seed, load_provider_class,
                               seeded_generator)

TINY = ['--batch_size=8', '--block_size=32', '--batches_per_file=2', '--eval_iters=3']


def make_provider(dataset, tiny_corpus, tmp_path, *overrides):
    """A provider on the tiny corpus with a tmp queue, configured like prepare.py does."""
    provider_cls = load_provider_class(dataset)
    argv = [f'--dataset={dataset}', f'--input_file={tiny_corpus}', f'--data_dir={tmp_path / "q"}', *TINY, *overrides]
    return provider_cls(load_config(provider_cls.config_defaults(), argv, warn_unread=False))


def make_file(provider, split='train', worker_id=0, seq=0, n_batches=None):
    """(tensors, clean windows) of one file; the windows are re-drawn from the file's own seed."""
    n_batches = n_batches or provider.cfg['batches_per_file']
    tensors, info, _ = provider.make_file(split, worker_id, seq, n_batches)
    generator = seeded_generator(file_seed(provider.cfg['data_seed'], split, worker_id, seq))
    clean = provider.sample_windows(split, n_batches * provider.cfg['batch_size'], generator)
    assert info['seed'] == file_seed(provider.cfg['data_seed'], split, worker_id, seq)
    return tensors, clean


def test_every_provider_declares_its_keys():
    """Each provider's keys are the base keys plus the helpers' DEFAULTS it composes plus its own."""
    for dataset, helper_keys in (('char_diffusion', positions.DEFAULTS),
                                 ('char_random_replacement', {**positions.DEFAULTS, **corruption.DEFAULTS}),
                                 ('char_inference_replacement', {**positions.DEFAULTS, **corruption.DEFAULTS})):
        keys = load_provider_class(dataset).config_defaults()
        assert list(keys)[:len(BASE_DEFAULTS)] == list(BASE_DEFAULTS)
        assert set(helper_keys) <= set(keys)
    assert 'train_corruption_mixture' not in load_provider_class('char_diffusion').config_defaults()
    assert load_provider_class('char_inference_replacement').config_defaults()['train_corruption_mixture'] == (
        0.6, 0.2, 0.1, 0.1)  # its own default wins over the three-branch one


@pytest.mark.parametrize('dataset', available_datasets())
def test_providers_are_siblings(dataset):
    """Every provider subclasses the base directly, and no dataset folder imports another one."""
    provider_cls = load_provider_class(dataset)
    assert provider_cls.__bases__ == (DataProviderBase,)
    folder = os.path.join(REPO_ROOT, 'data', dataset)
    for name in os.listdir(folder):
        if name.endswith('.py'):
            with open(os.path.join(folder, name), encoding='utf-8') as f:
                tree = ast.parse(f.read())
            imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
            imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
            others = [m for m in imported for d in available_datasets() if d != dataset and m.startswith(f'data.{d}')]
            assert not others, (dataset, name, others)


def test_parent_pid_is_a_constructor_argument(tiny_corpus, tmp_path):
    provider_cls = load_provider_class('char_diffusion')
    cfg = load_config(provider_cls.config_defaults(), [f'--input_file={tiny_corpus}', f'--data_dir={tmp_path}', *TINY],
                      warn_unread=False)
    assert provider_cls(cfg).parent_pid is None and not provider_cls(cfg).should_stop()
    assert not provider_cls(cfg, parent_pid=os.getppid()).should_stop()
    assert provider_cls(cfg, parent_pid=os.getppid() + 100_000).should_stop()  # that parent is gone: an orphan
    provider_cls(cfg).close()  # closing a provider that never started restores nothing and raises nothing


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserError) as excinfo:
        load_provider_class('char_difusion')
    assert 'char_diffusion' in str(excinfo.value) and 'char_random_replacement' in str(excinfo.value)


def test_bert_mode_labels_are_partial(tiny_corpus, tmp_path):
    provider = make_provider('char_diffusion', tiny_corpus, tmp_path, '--mask_probability=0.3', '--batches_per_file=8')
    tensors, clean = make_file(provider)
    x, y = tensors['x'], tensors['y']
    assert x.dtype == y.dtype == torch.int8 and x.shape == clean.shape == (64, 32)
    picked = y != IGNORE_INDEX
    assert torch.equal(y[picked], clean[picked])
    assert torch.equal(x[~picked], clean[~picked])  # positions not picked are untouched
    mask_share = (x[picked] == provider.vocab['mask_token_id']).float().mean().item()
    assert 0.6 < mask_share < 0.95  # BERT: about 80% [MASK]
    assert 0.15 < picked.float().mean().item() < 0.45
    assert 'stage' not in tensors


@pytest.mark.parametrize('dataset', ['char_diffusion', 'char_random_replacement'])
@pytest.mark.parametrize('batches_per_file', [1, 3])
def test_every_stage_is_in_every_batch(dataset, batches_per_file, tiny_corpus, tmp_path):
    provider = make_provider(dataset, tiny_corpus, tmp_path, '--composition_config=complex',
                             '--batch_size=12', f'--batches_per_file={batches_per_file}')
    for split, stages in (('train', provider.cfg['unmasking_stages']), ('val', provider.cfg['validation_stages'])):
        tensors, _ = make_file(provider, split)
        per_batch = tensors['stage'].view(batches_per_file, 12)
        for batch in per_batch:
            assert set(batch.tolist()) == set(range(len(stages)))


def test_stage_mode_masks_with_mask_token(tiny_corpus, tmp_path):
    provider = make_provider('char_diffusion', tiny_corpus, tmp_path, '--composition_config=example')
    tensors, clean = make_file(provider)
    x, y = tensors['x'], tensors['y']
    picked = y != IGNORE_INDEX
    assert picked.any()
    assert (x[picked] == provider.vocab['mask_token_id']).all()
    assert torch.equal(x[~picked], clean[~picked]) and torch.equal(y[picked], clean[picked])
    assert tensors['stage'].dtype == torch.int8


@pytest.mark.parametrize('partial', [False, True])
def test_random_replacement_label_semantics(partial, tiny_corpus, tmp_path):
    provider = make_provider('char_random_replacement', tiny_corpus, tmp_path, '--mask_probability=0.4',
                             f'--dataset_partial_targets={partial}', '--batches_per_file=4')
    tensors, clean = make_file(provider)
    x, y = tensors['x'], tensors['y']
    changed = x != clean
    assert changed.any()
    if partial:
        picked = y != IGNORE_INDEX
        assert torch.equal(y[picked], clean[picked]) and not changed[~picked].any()
        assert 0.2 < picked.float().mean().item() < 0.6
    else:
        assert torch.equal(y, clean)  # full targets: the original everywhere
    meta = provider.build_meta()
    assert meta['label_semantics'] == meta['val_label_semantics'] == ('partial' if partial else 'full')


def test_validation_label_semantics_can_differ(tiny_corpus, tmp_path):
    provider = make_provider('char_random_replacement', tiny_corpus, tmp_path, '--validation_partial_targets=True')
    assert torch.equal(make_file(provider, 'train')[0]['y'], make_file(provider, 'train')[1])
    val, clean = make_file(provider, 'val')
    assert (val['y'] == IGNORE_INDEX).any()
    meta = provider.build_meta()
    assert (meta['label_semantics'], meta['val_label_semantics']) == ('full', 'partial')


def test_mixture_branches_and_meta(tiny_corpus, tmp_path):
    provider = make_provider('char_random_replacement', tiny_corpus, tmp_path, '--mask_probability=1.0',
                             '--train_corruption_mixture=(0.5, 0.5, 0.0)', '--extra_special_token_ids=(0, 1)',
                             '--original_token_probability_multiplier=0.0')
    x = make_file(provider)[0]['x']
    n_chars = len(provider.vocab['chars'])
    mask_share = (x == provider.vocab['mask_token_id']).float().mean().item()
    assert 0.35 < mask_share < 0.65
    drawn = x[x != provider.vocab['mask_token_id']]
    assert ((drawn >= 2) & (drawn < n_chars)).all()  # never [WRONG] nor an extra special id
    meta = provider.build_meta()
    assert meta['corruption_type'] == 'random_replacement' and meta['mixture_has_mask'] is True
    assert meta['corruption']['mixture'] == {'random': 0.5, 'mask': 0.5, 'fragment': 0.0}
    assert meta['corruption']['extra_special_token_ids'] == (0, 1)


def test_fragments_come_from_train_text_and_not_validation(tiny_corpus, tmp_path):
    provider = make_provider('char_random_replacement', tiny_corpus, tmp_path, '--mask_probability=1.0',
                             '--train_corruption_mixture=(0.0, 0.0, 1.0)')
    with open(tiny_corpus, encoding='utf-8') as f:
        text = f.read()
    train_text = text[:len(split_ids(list(range(len(text))))[0])]
    x = make_file(provider)[0]['x']
    for row in x:  # every position picked: each row is one fragment window
        assert decode(row.tolist(), provider.vocab['itos']) in train_text
    assert provider.build_meta()['corruption']['val_mixture'] == {'random': 1.0, 'mask': 0.0, 'fragment': 0.0}
    assert provider.build_meta()['mixture_has_mask'] is False


def test_bad_mixture_is_a_user_error(tiny_corpus, tmp_path):
    with pytest.raises(UserError, match='train_corruption_mixture'):
        make_provider('char_random_replacement', tiny_corpus, tmp_path, '--train_corruption_mixture=(0.5, -0.5, 0.0)')


@pytest.mark.parametrize('dataset', ['char_diffusion', 'char_random_replacement'])
def test_seeds_reproduce_and_separate(dataset, tiny_corpus, tmp_path):
    first = make_provider(dataset, tiny_corpus, tmp_path, '--composition_config=example')
    second = make_provider(dataset, tiny_corpus, tmp_path, '--composition_config=example')
    a = make_file(first, worker_id=0, seq=5)[0]
    b = make_file(second, worker_id=0, seq=5)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for other in (make_file(first, worker_id=1, seq=5)[0], make_file(first, worker_id=0, seq=6)[0],
                  make_file(first, split='val', worker_id=0, seq=5)[0]):
        assert not torch.equal(a['x'], other['x'])


def queue_with_a_train_file(dataset, tiny_corpus, tmp_path):
    """(provider, path of a train file) of a queue that provider has set up (meta.pkl written)."""
    provider = make_provider(dataset, tiny_corpus, tmp_path)
    provider.start()
    provider.close()
    train_file = os.path.join(provider.train_dir, queue_io.train_file_name(0, 0))
    queue_io.write_batch_file(train_file, {}, {})
    return provider, train_file


def test_changed_settings_are_refused_then_cleared(tiny_corpus, tmp_path, capsys):
    provider, train_file = queue_with_a_train_file('char_diffusion', tiny_corpus, tmp_path)
    changed = make_provider('char_diffusion', tiny_corpus, tmp_path, '--block_size=16')
    with pytest.raises(UserError) as excinfo:
        changed.start()
    changed.close()
    message = str(excinfo.value)
    assert 'block_size: 32 -> 16' in message and 'clear_queue=True' in message and '\n' not in message
    assert os.path.exists(train_file)  # refused: nothing touched
    cleared = make_provider('char_diffusion', tiny_corpus, tmp_path, '--block_size=16', '--clear_queue=True')
    cleared.start()
    cleared.close()
    assert not os.path.exists(train_file)
    assert queue_io.read_meta(cleared.data_dir)['block_size'] == 16
    assert 'clear_queue=True: deleting' in capsys.readouterr().out


def test_stage_errors_name_the_key(tiny_corpus, tmp_path):
    with pytest.raises(UserError, match='unmasking_stages'):
        make_provider('char_diffusion', tiny_corpus, tmp_path, '--use_all_stages_for_training=True')
    with pytest.raises(UserError, match='batch_size'):
        make_provider('char_diffusion', tiny_corpus, tmp_path, '--composition_config=complex', '--batch_size=4')


def test_shipped_configs_resolve(tiny_corpus, tmp_path):
    for name, dataset in (('train_char_diffusion', 'char_diffusion'),
                          ('train_char_random_replacement_targets_full', 'char_random_replacement')):
        provider_cls = load_provider_class(dataset)
        cfg = load_config(provider_cls.config_defaults(), [os.path.join(REPO_ROOT, 'config', f'{name}.py')],
                          warn_unread=False)
        assert cfg['dataset'] == dataset and cfg['use_all_stages_for_training'] is True
        assert len(cfg['unmasking_stages']) == 9 and len(cfg['validation_stages']) == 4  # the complex composition


@pytest.mark.parametrize('dataset', ['char_diffusion', 'char_random_replacement'])
def test_a_file_with_nothing_picked(dataset, tiny_corpus, tmp_path):
    provider = make_provider(dataset, tiny_corpus, tmp_path, '--mask_probability=0.0001')
    tensors, clean = make_file(provider)
    assert torch.equal(tensors['x'], clean)
    _, _, stats = provider.make_file('train', 0, 0, 2)
    assert 'mask ratios' in provider.summary_line(stats)


@pytest.mark.parametrize('dataset', ['char_random_replacement', 'char_inference_replacement'])
def test_meta_of_a_mixture_without_stages_says_mask_probability_not_bert(dataset, tiny_corpus, tmp_path):
    # the BERT 80/10/10 split belongs to char_diffusion; a mixture provider fills with its mixture
    watched_run = [f'--checkpoint_dir={tmp_path / "run"}'] if dataset == 'char_inference_replacement' else []
    provider = make_provider(dataset, tiny_corpus, tmp_path, '--mask_probability=0.2', *watched_run)
    corruption_meta = provider.build_meta()['corruption']
    assert corruption_meta['mode'] == 'mask_probability' and corruption_meta['mask_probability'] == 0.2
    assert 'bert_shares' not in corruption_meta and 'mixture' in corruption_meta
    bert = make_provider('char_diffusion', tiny_corpus, tmp_path, '--mask_probability=0.2').build_meta()['corruption']
    assert bert == {'mode': 'bert', 'mask_probability': 0.2, 'bert_shares': (0.8, 0.1, 0.1)}


def test_meta_in_an_older_form_is_rewritten_and_the_files_stay(tiny_corpus, tmp_path, capsys):
    provider, train_file = queue_with_a_train_file('char_random_replacement', tiny_corpus, tmp_path)
    old = queue_io.read_meta(provider.data_dir)
    # what the code before this fix wrote for the same data: the same fingerprint, a wrong description
    old['corruption'] = {**old['corruption'], 'mode': 'bert', 'bert_shares': (0.8, 0.1, 0.1)}
    queue_io.write_meta(provider.data_dir, old)
    again = make_provider('char_random_replacement', tiny_corpus, tmp_path)
    again.start()
    again.close()
    assert queue_io.read_meta(provider.data_dir) == provider.build_meta()
    assert os.path.exists(train_file)
    assert 'meta.pkl described this queue in an older form (corruption:' in capsys.readouterr().out
