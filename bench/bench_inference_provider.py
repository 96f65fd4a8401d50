"""
Can the providers that corrupt with a model keep up with training? Each one's tokens/s, the tokens/s
the trainer consumes, and their ratio, for the model size of config/train_shakespeare_char_quick.py,
in one run:

- char_inference_replacement with its default mixture (the model's argmax in 60% of the picked positions);
- char_sampler_states as config/train_remasking_sampler_states.py and config/train_merged.py set it
  (sampled fills of a whole masked window, fill_iterations passes).

    python bench/bench_inference_provider.py                  # CPU, 4 files each, 10 training steps
    python bench/bench_inference_provider.py --device=cuda    # inference and training on the GPU
    python bench/bench_inference_provider.py --config=config/train_merged.py   # only that provider

Each provider follows a checkpoint of the quick model with random weights (throughput does not depend
on what the weights learned) and makes files in memory (saving is left out), with the torch threads a
provider process gets (`num_threads`, 1 by default); the training side is plain fwd + bwd + AdamW
steps of the same model at the quick config's batch_size x block_size, with torch's own thread count
(or --train_threads: on a busy machine several threads per process slow down far more than one).
A ratio above 1 means one provider process makes data faster than training reads it; below 1, about
1 / ratio processes (`num_workers`) or inference on the GPU are needed (on a CPU they share its cores
with the trainer). `measure` returns the figures of one provider, for bench/bench_pipeline.py.
"""

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from checkpoints import save_checkpoint  # noqa: E402
from configurator import Config, exec_config_file  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from prepare_streaming import load_provider_class  # noqa: E402

QUICK_CONFIG = os.path.join(REPO_ROOT, 'config', 'train_shakespeare_char_quick.py')
SAMPLER_STATES_CONFIGS = [os.path.join(REPO_ROOT, 'config', name)
                          for name in ('train_remasking_sampler_states.py', 'train_merged.py')]
# the quick model, for when its config is not there
FALLBACK_QUICK = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32, batches_per_file=25,
                      pos_encoding='rotary')
STAGE_KEYS = ('use_all_stages_for_training', 'unmasking_stages', 'validation_stages')
INFERENCE_MIXTURE = (0.6, 0.2, 0.1, 0.1)  # char_inference_replacement's default (prediction, random, mask, fragment)


def quick_settings():
    """The quick config's model size, batch shape and stages (the fallback sizes without the file)."""
    values = dict(FALLBACK_QUICK)
    if os.path.exists(QUICK_CONFIG):
        values.update({k: v for k, v in exec_config_file(QUICK_CONFIG, {}).items()
                       if k in FALLBACK_QUICK or k in STAGE_KEYS})
    return values


def config_settings(path):
    """The dataset and provider keys a config file sets (the model and batch shape come from the quick config)."""
    values = exec_config_file(path, {})
    keys = load_provider_class(values['dataset']).config_defaults()
    return {k: v for k, v in values.items() if k in keys and k not in FALLBACK_QUICK}


def model_config(quick, vocab_size):
    return GPTConfig(block_size=quick['block_size'], vocab_size=vocab_size, n_layer=quick['n_layer'],
                     n_head=quick['n_head'], n_embd=quick['n_embd'], dropout=0.0, pos_encoding=quick['pos_encoding'])


def make_provider(quick, folder, device, settings):
    """The provider `settings['dataset']` names, on a temporary queue and checkpoint folder."""
    provider_cls = load_provider_class(settings['dataset'])
    values = dict(provider_cls.config_defaults())
    values.update({k: quick[k] for k in ('block_size', 'batch_size', 'batches_per_file') + STAGE_KEYS
                   if k in quick and k in values})
    values.update(settings)
    values.update(data_dir=os.path.join(folder, 'queue'), checkpoint_dir=os.path.join(folder, 'out'),
                  inference_device=device, inference_refresh_seconds=1e9)
    provider = provider_cls(Config(values))
    provider.log = provider.predictor.log = provider.follower.log = lambda line: None  # the figures are the output
    return provider


def save_random_checkpoint(provider, quick):
    """A checkpoint of the quick model with random weights, of the kind the provider follows."""
    config = model_config(quick, provider.vocab['vocab_size'])
    meta = dict(stoi=provider.vocab['stoi'], itos=provider.vocab['itos'], vocab_size=provider.vocab['vocab_size'])
    kind = provider.predictor.kind
    checkpoint = dict(model=GPT(config).state_dict(), model_args=dataclasses.asdict(config), iter_num=1,
                      best_val_loss=0.0, config={}, meta=meta, training_type=kind.split('_')[0],
                      remasking_loss_type=kind.partition('remasking_')[2] or None, run_id='bench')
    os.makedirs(provider.predictor.checkpoint_dir, exist_ok=True)
    save_checkpoint(checkpoint, os.path.join(provider.predictor.checkpoint_dir, f'ckpt_{kind}_1.pt'))


def provider_tokens_per_second(provider, files):
    """Tokens/s of make_file (corruption + inference, what a worker spends per file; saving is left out),
    with the torch threads of a provider process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(provider.cfg['num_threads'])
    try:
        provider.make_file('train', 0, 0, provider.cfg['batches_per_file'])  # warm-up: load, first-call costs
        start = time.perf_counter()
        for seq in range(1, files + 1):
            provider.make_file('train', 0, seq, provider.cfg['batches_per_file'])
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return files * provider.rows_per_file * provider.cfg['block_size'] / seconds


def training_tokens_per_second(quick, vocab_size, device, steps):
    """Tokens/s of fwd + bwd + AdamW steps of the quick model at its batch_size x block_size."""
    torch.manual_seed(0)
    model = GPT(model_config(quick, vocab_size)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    shape = (quick['batch_size'], quick['block_size'])
    x = torch.randint(0, vocab_size, shape, device=device)
    y = torch.randint(0, vocab_size - 2, shape, device=device)

    def step():
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * shape[0] * shape[1] / (time.perf_counter() - start)


def sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def measure_provider(device='cpu', files=4, settings=None):
    """{'provider_tok_s', 'fallback_tok_s', 'vocab_size', ...} of one provider for the quick model size."""
    settings = settings or dict(dataset='char_inference_replacement', train_corruption_mixture=INFERENCE_MIXTURE)
    quick = quick_settings()
    with tempfile.TemporaryDirectory(prefix='bench_inference_') as folder:
        provider = make_provider(quick, folder, device, dict(settings, fallback_to_random=True))
        fallback = provider_tokens_per_second(provider, files)  # no checkpoint yet: random fallback
        save_random_checkpoint(provider, quick)
        assert provider.predictor.refresh(), 'the benchmark checkpoint did not load'
        with_model = provider_tokens_per_second(provider, files)
        threads = provider.cfg['num_threads']
        vocab_size = provider.vocab['vocab_size']
    return dict(device=device, model=f"{quick['n_layer']}L/{quick['n_head']}H/{quick['n_embd']}",
                batch=f"{quick['batch_size']}x{quick['block_size']}", settings=settings, threads=threads,
                provider_tok_s=with_model, fallback_tok_s=fallback, vocab_size=vocab_size)


def measure(device='cpu', files=4, steps=10, mixture=INFERENCE_MIXTURE, settings=None):
    """One provider's figures (char_inference_replacement with `mixture` unless `settings` name another)
    with 'train_tok_s' and 'ratio' (provider / training) added."""
    settings = settings or dict(dataset='char_inference_replacement', train_corruption_mixture=mixture)
    result = measure_provider(device, files, settings)
    train = training_tokens_per_second(quick_settings(), result['vocab_size'], device, steps)
    return dict(result, mixture=settings.get('train_corruption_mixture'), train_tok_s=train,
                ratio=result['provider_tok_s'] / train)


def describe(settings):
    """What a measured provider is, briefly."""
    if settings['dataset'] == 'char_inference_replacement':
        return f"char_inference_replacement, mixture {settings['train_corruption_mixture']}"
    keys = ('fill_ratio_range', 'fill_iterations', 'fill_temperature', 'left_masked_ratio_range')
    return f"{settings['dataset']}, " + ', '.join(f"{k}={settings[k]}" for k in keys if k in settings)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (inference and training)")
    parser.add_argument('--files', type=int, default=4, help='batch files timed per provider (after one warm-up file)')
    parser.add_argument('--steps', type=int, default=10, help='training steps timed (after one warm-up step)')
    parser.add_argument('--train_threads', type=int, default=None,
                        help="torch threads of the training steps (default: torch's own); on a busy machine "
                             "compare at 1, the providers' count")
    parser.add_argument('--config', action='append', help='measure the provider of this config file only '
                        '(repeatable); default: char_inference_replacement and the sampler-states configs')
    args = parser.parse_args()
    runs = [(os.path.relpath(path, REPO_ROOT), config_settings(path)) for path in args.config or []]
    if not runs:
        runs = [('default mixture',
                 dict(dataset='char_inference_replacement', train_corruption_mixture=INFERENCE_MIXTURE))]
        runs += [(os.path.relpath(path, REPO_ROOT), config_settings(path)) for path in SAMPLER_STATES_CONFIGS]
    results = [(name, measure_provider(args.device, args.files, settings)) for name, settings in runs]
    if args.train_threads:
        torch.set_num_threads(args.train_threads)
    train = training_tokens_per_second(quick_settings(), results[0][1]['vocab_size'], args.device, args.steps)
    first = results[0][1]
    print(f"model     {first['model']}, batch {first['batch']}, device {args.device}, torch threads: "
          f"{first['threads']} per provider process, {torch.get_num_threads()} for training")
    print(f"training  {train:,.0f} tokens/s (fwd + bwd + AdamW)")
    for name, result in results:
        ratio = result['provider_tok_s'] / train
        print(f"provider  {name}: {describe(result['settings'])}")
        print(f"          {result['provider_tok_s']:,.0f} tokens/s with a checkpoint ({result['fallback_tok_s']:,.0f} "
              f"on the random fallback); ratio {ratio:.2f} provider / training; "
              f"{math.ceil(1 / ratio)} process(es) keep up")


if __name__ == '__main__':
    main()
