"""
Speed of the generation loops of generate.py, as sample.py runs them: characters per second and
model forward passes per sample, for every remasking mode (and intelligent remasking with a merged
model, which scores in its own pass), the field's samplers (mdlm, confidence, remdm) and the edit
loop, at num_samples 1 and 16.

By default the models are randomly initialised at the quick config's size (4 layers, 4 heads,
128 wide) with block_size 1024, so no trained checkpoint is needed; random weights make the
threshold mode run to its safety limit, which is the worst case. --checkpoint (and optionally
--remasking_checkpoint) measure real models instead.

$ python bench/bench_sampling.py                         # CPU, and CUDA when available
$ python bench/bench_sampling.py --devices=cuda --num_samples=1,16,64
$ python bench/bench_sampling.py --checkpoint=out-shakespeare-char-quick/ckpt_unmasking_5000.pt
"""

import argparse
import os
import sys
import time

# the table is the output, not the progress bars; set before torch, which imports tqdm (and tqdm reads
# its environment once, at import)
os.environ.setdefault('TQDM_DISABLE', '1')
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import generate  # noqa: E402
import generate_setup  # noqa: E402
from checkpoints import load_checkpoint, model_from_checkpoint  # noqa: E402
from common import autocast_context, resolve_dtype  # noqa: E402
from configurator import Config  # noqa: E402
from data.corpus import build_vocab  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

N_CHARS = 65  # Tiny Shakespeare
MODES = {  # name -> (sampler, settings, remasker: None | 'separate' | 'merged' (the unmasking model itself))
    'random': ('diffusion', dict(), None),
    'intelligent-fallback': ('diffusion', dict(use_intelligent_remasking=True), None),
    'intelligent': ('diffusion', dict(use_intelligent_remasking=True), 'separate'),
    'intelligent-merged': ('diffusion', dict(use_intelligent_remasking=True), 'merged'),
    'threshold': ('diffusion', dict(use_intelligent_remasking=True, remasking_confidence_threshold=0.01), 'separate'),
    'mixed': ('diffusion', dict(use_intelligent_remasking=True, use_mixed_remasking=True,
                                remasking_confidence_threshold=0.01), 'separate'),
    'mdlm': ('mdlm', dict(), None),
    'confidence': ('confidence', dict(), None),
    'remdm': ('remdm', dict(), None),
    'edit': ('edit', dict(), None),
}
# sample.py's defaults for the settings the loops read (a test keeps them equal), so the bench
# measures what a user gets (remdm_score=None: ReMDM's random rule, as on the unmasking model remdm runs here)
LOOP_SETTINGS = dict(temperature=1.0, top_k=None, remasking_schedule='linear', start_ratio=1.0, end_ratio=0.1,
                     use_intelligent_remasking=False, use_mixed_remasking=False, remasking_confidence_threshold=None,
                     insert_ratio_start=0.04, insert_ratio_end=0.0, delete_ratio_start=0.04, delete_ratio_end=0.0,
                     noise_start=0.1, noise_end=0.0, insert_schedule='cosine', delete_schedule='cosine',
                     noise_schedule='cosine', cooling_distance=2, cooling_iterations=1, reveal_schedule='linear',
                     remdm_eta=0.05, remdm_window=(0.0, 1.0), remdm_score=None, choice_temperature=4.5)


def random_models(block_size, device):
    args = dict(block_size=block_size, vocab_size=N_CHARS + 2, n_layer=4, n_head=4, n_embd=128,
                dropout=0.0, bias=False)
    torch.manual_seed(0)
    models = [GPT(GPTConfig(**args)).to(device).eval() for _ in range(2)]
    vocab = build_vocab(''.join(chr(33 + i) for i in range(N_CHARS)))
    return models, vocab


def checkpoint_models(path, rpath, device):
    ckpt = load_checkpoint(path)
    models = [model_from_checkpoint(ckpt, device)]
    models.append(model_from_checkpoint(load_checkpoint(rpath), device) if rpath else None)
    return models, ckpt['meta']


def remasker_for(remasking, unmasker, remasking_model, ctx):
    """The remasker Forward a mode runs with: none, a separate model, or the unmasking model itself (a
    merged model's scores come from its own pass; with random weights the cost is what is measured)."""
    if remasking == 'separate':
        return generate.Forward(remasking_model, ctx)
    return unmasker if remasking == 'merged' else None


def run_mode(name, models, vocab, device, ctx, num_samples, length, iterations):
    kind, settings, remasking = MODES[name]
    cfg = Config(dict(LOOP_SETTINGS, num_samples=num_samples, sequence_length=length,
                      diffusion_iterations=iterations, max_iterations=iterations, **settings))
    unmasker = generate.Forward(models[0], ctx)
    remasker = remasker_for(remasking, unmasker, models[1], ctx)
    ids = generate.Vocab.from_meta(vocab)
    prompt = generate.encode_prompt('', ids.stoi, device)  # unprompted
    generator = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    sync()
    t0 = time.perf_counter()
    if kind == 'diffusion':
        tokens, _ = generate.diffusion_generate(unmasker, remasker, prompt, cfg, generate_setup.remasking_mode(cfg),
                                                ids, generator)  # log=None: no verbose statistics
    elif kind in generate.FIELD_SAMPLERS:
        tokens, _ = generate.field_generate(unmasker, prompt, cfg, kind, ids, generator)
    else:
        tokens, _ = generate.edit_generate(unmasker, prompt, cfg, ids, generator, length)
    sync()
    seconds = time.perf_counter() - t0
    return tokens.numel() / seconds, generate.forward_passes_per_sample((unmasker, remasker), num_samples), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--devices', default=None, help="comma list; default cpu plus cuda when available")
    parser.add_argument('--num_samples', default='1,16')
    parser.add_argument('--modes', default=','.join(MODES))
    parser.add_argument('--sequence_length', type=int, default=1024)
    parser.add_argument('--iterations', type=int, default=30, help='diffusion_iterations / max_iterations')
    parser.add_argument('--repeat', type=int, default=1, help='report the fastest of this many runs (noisy machines)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads; 1 is far steadier on a machine shared with other jobs')
    parser.add_argument('--dtype', default='auto')
    parser.add_argument('--checkpoint', default=None, help='an unmasking checkpoint instead of random weights')
    parser.add_argument('--remasking_checkpoint', default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(',') if args.devices else ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    print(f"sequence_length={args.sequence_length} iterations={args.iterations} "
          f"torch {torch.__version__} threads {torch.get_num_threads()}")
    print(f"{'device':8} {'mode':22} {'samples':>7} {'chars/s':>10} {'fwd/sample':>10} {'seconds':>8}")
    for device in devices:
        if args.checkpoint:
            models, vocab = checkpoint_models(args.checkpoint, args.remasking_checkpoint, device)
        else:
            models, vocab = random_models(max(args.sequence_length, 1024), device)
        ctx = autocast_context(device, resolve_dtype(args.dtype, device))  # sample.py's rule
        run_mode('random', models, vocab, device, ctx, 1, args.sequence_length, 1)  # warm-up: first-call costs
        for name in args.modes.split(','):
            if MODES[name][2] == 'separate' and models[1] is None:
                print(f"{device:8} {name:22} skipped: needs --remasking_checkpoint")
                continue
            for n in map(int, args.num_samples.split(',')):
                if device.startswith('cuda'):  # warm-up (kernels, allocator) outside the timing
                    run_mode(name, models, vocab, device, ctx, n, args.sequence_length, 2)
                cps, fwd, seconds = max(run_mode(name, models, vocab, device, ctx, n, args.sequence_length,
                                                 args.iterations) for _ in range(args.repeat))
                print(f"{device:8} {name:22} {n:7d} {cps:10.0f} {fwd:10.1f} {seconds:8.2f}", flush=True)


if __name__ == '__main__':
    main()
