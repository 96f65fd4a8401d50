"""
Can the char_inference_replacement provider keep up with training? Its tokens/s, and the ratio to the
tokens/s the trainer consumes, for the model size of config/train_shakespeare_char_quick.py.

    python bench/bench_inference_provider.py                  # CPU, 4 files, 10 training steps
    python bench/bench_inference_provider.py --device=cuda    # inference and training on the GPU

The provider follows a checkpoint of the quick model with random weights (throughput does not depend
on what the weights learned) and writes files into a temporary queue; the training side is plain
fwd + bwd + AdamW steps of the same model at the quick config's batch_size x block_size. A ratio
above 1 means one provider process makes data faster than training reads it; below 1, that many
more workers (num_workers) or inference on the GPU are needed. `measure` returns the figures, for
bench/bench_pipeline.py.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from checkpoints import save_checkpoint  # noqa: E402
from configurator import Config, exec_config_file  # noqa: E402
from data.char_inference_replacement.prepare_streaming import Provider  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

QUICK_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', 'train_shakespeare_char_quick.py')
# the quick model, for when its config is not there
FALLBACK_QUICK = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32, batches_per_file=25)
STAGE_KEYS = ('use_all_stages_for_training', 'unmasking_stages', 'validation_stages')


def quick_settings():
    """The quick config's model size, batch shape and stages (the fallback sizes without the file)."""
    values = dict(FALLBACK_QUICK)
    if os.path.exists(QUICK_CONFIG):
        values.update({k: v for k, v in exec_config_file(QUICK_CONFIG, {}).items()
                       if k in FALLBACK_QUICK or k in STAGE_KEYS})
    return values


def model_config(quick, vocab_size):
    return GPTConfig(block_size=quick['block_size'], vocab_size=vocab_size, n_layer=quick['n_layer'],
                     n_head=quick['n_head'], n_embd=quick['n_embd'], dropout=0.0)


def make_provider(quick, folder, device, mixture):
    values = dict(Provider.config_defaults())
    values.update({k: quick[k] for k in ('block_size', 'batch_size', 'batches_per_file') + STAGE_KEYS if k in quick})
    values.update(dataset='char_inference_replacement', data_dir=os.path.join(folder, 'queue'), checkpoint_dir=os.path.join(folder, 'out'),
                  train_corruption_mixture=mixture, inference_device=device, inference_refresh_seconds=1e9)
    return Provider(Config(values))


def save_random_checkpoint(provider, quick):
    """A checkpoint of the quick model with random weights, in the provider's checkpoint_dir."""
    config = model_config(quick, provider.vocab['vocab_size'])
    meta = dict(stoi=provider.vocab['stoi'], itos=provider.vocab['itos'], vocab_size=provider.vocab['vocab_size'])
    checkpoint = dict(model=GPT(config).state_dict(), model_args=dataclasses.asdict(config), iter_num=1,
                      best_val_loss=0.0, config={}, meta=meta, training_type='unmasking',
                      remasking_loss_type=None, run_id='bench')
    os.makedirs(provider.predictor.checkpoint_dir, exist_ok=True)
    save_checkpoint(checkpoint, os.path.join(provider.predictor.checkpoint_dir, 'ckpt_unmasking_1.pt'))


def provider_tokens_per_second(provider, files):
    """Tokens/s of make_file (corruption + inference, what a worker spends per file; saving is left out)."""
    provider.make_file('train', 0, 0, provider.cfg['batches_per_file'])  # warm-up: load, first-call costs
    start = time.perf_counter()
    for seq in range(1, files + 1):
        provider.make_file('train', 0, seq, provider.cfg['batches_per_file'])
    seconds = time.perf_counter() - start
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


def measure(device='cpu', files=4, steps=10, mixture=(0.6, 0.2, 0.1, 0.1)):
    """{'provider_tok_s', 'fallback_tok_s', 'train_tok_s', 'ratio', ...} for the quick model size."""
    quick = quick_settings()
    with tempfile.TemporaryDirectory(prefix='bench_inference_') as folder:
        provider = make_provider(quick, folder, device, mixture)
        provider.log = provider.predictor.log = lambda line: None  # the figures are the output
        fallback = provider_tokens_per_second(provider, files)  # no checkpoint yet: random fallback
        save_random_checkpoint(provider, quick)
        assert provider.predictor.refresh(), 'the benchmark checkpoint did not load'
        with_model = provider_tokens_per_second(provider, files)
        train = training_tokens_per_second(quick, provider.vocab['vocab_size'], device, steps)
    return dict(device=device, model=f"{quick['n_layer']}L/{quick['n_head']}H/{quick['n_embd']}",
                batch=f"{quick['batch_size']}x{quick['block_size']}", mixture=mixture,
                provider_tok_s=with_model, fallback_tok_s=fallback, train_tok_s=train, ratio=with_model / train)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (inference and training)")
    parser.add_argument('--files', type=int, default=4, help='batch files timed (after one warm-up file)')
    parser.add_argument('--steps', type=int, default=10, help='training steps timed (after one warm-up step)')
    args = parser.parse_args()
    result = measure(args.device, args.files, args.steps)
    print(f"model           {result['model']}, batch {result['batch']}, device {result['device']}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"mixture         {result['mixture']} (prediction, random, mask, fragment)")
    print(f"provider        {result['provider_tok_s']:,.0f} tokens/s with a checkpoint "
          f"({result['fallback_tok_s']:,.0f} with the random fallback)")
    print(f"training        {result['train_tok_s']:,.0f} tokens/s (fwd + bwd + AdamW)")
    print(f"ratio           {result['ratio']:.2f} (provider / training; < 1 needs more workers or a GPU)")


if __name__ == '__main__':
    main()
