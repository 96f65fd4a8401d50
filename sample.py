"""
Generate text from trained checkpoints, with one of two samplers:

  diffusion  start fully masked (after an optional fixed prompt), then alternate: the unmasking model
             fills every masked position, and a remasking rule masks some positions again.
             Four remasking rules (docs/sampling.md has the table of flags):
               random       schedule decides how many, positions at random
               intelligent  schedule decides how many, the highest [WRONG] probabilities
               threshold    every position whose [WRONG] probability is above a threshold; a sample
                            stops when none is (diffusion_iterations is the safety limit)
               mixed        schedule decides how many, above-threshold candidates first, random top-up
  edit       for models trained with full targets on random-replacement corruption: start from random
             characters and edit: substitute, delete, insert and re-noise, for max_iterations rounds.

Both loops live in generate.py; this script reads the settings, loads the models and prints the text.

$ python sample.py                                   # newest unmasking checkpoint in out_dir
$ python sample.py --use_intelligent_remasking=True --remasking_checkpoint_name=ckpt_remasking_all_positions_5000.pt
$ python sample.py --start="ROMEO:" --num_samples=8 --verbose=True
"""

import json
import os
from dataclasses import dataclass

import torch

import generate
from common import autocast_context, resolve_device, resolve_dtype, run_cli
from configurator import defaults_from, load_config
from prepare_streaming import provider_keys_if_known

# -----------------------------------------------------------------------------
# which models
out_dir = 'out-shakespeare-char-quick'
checkpoint_name = None           # unmasking model in out_dir; None = the newest ckpt_unmasking_<iter>.pt
remasking_checkpoint_name = None  # optional remasking model; 'newest' = the newest one in remasking_out_dir
remasking_out_dir = None         # where the remasking model lives; None = out_dir
sampler = 'auto'                 # 'auto' | 'diffusion' | 'edit'; auto = edit for full-target random-replacement models
trust_checkpoint_pickle = False  # True: open checkpoints that only full unpickling opens (can run code: files you trust)
# what to generate
start = ''                       # fixed prompt at the start of every sample, never changed; 'FILE:path' reads a file
sequence_length = None           # total characters per sample, prompt included; None = the model's block_size
num_samples = 4                  # generated together, as one batch
temperature = 1.0                # 0 = argmax
top_k = None                     # sample only among the k most likely characters; None = all
seed = 1337
# masked diffusion loop
diffusion_iterations = 30        # iterations (threshold mode: the most a sample may use)
remasking_schedule = 'linear'    # 'linear' | 'exponential' | 'cosine': how many positions are masked again
start_ratio = 1.0                # masked fraction at the start of the schedule
end_ratio = 0.1                  # masked fraction going into the last iteration
use_intelligent_remasking = False  # choose positions by [WRONG] probability instead of at random
use_mixed_remasking = False      # scheduled count, above-threshold candidates first, random top-up
remasking_confidence_threshold = None  # [WRONG] probability above which a position is remasked
# edit loop (random-replacement models)
max_iterations = 30
insert_ratio_start = 0.04        # insertions per round, as a fraction of the editable span
insert_ratio_end = 0.0
delete_ratio_start = 0.04
delete_ratio_end = 0.0
noise_start = 0.1                # fraction of editable characters re-randomised per round
noise_end = 0.0
insert_schedule = 'cosine'       # 'linear' | 'cosine'
delete_schedule = 'cosine'
noise_schedule = 'cosine'
cooling_distance = 2             # no insert/delete within this many positions of a recent insert/delete...
cooling_iterations = 1           # ...made in the last this many rounds
# output
verbose = False                  # per-iteration statistics instead of a progress bar
output_file = None               # append one JSON line per sample (text, settings, statistics)
# system
device = 'auto'                  # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
dtype = 'auto'                   # 'auto' | 'float32' | 'bfloat16' | 'float16'
compile = False                  # torch.compile the models
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())
SCORE_NAMES = {'remasking_model': '[WRONG] p', 'unmasking_confidence': '1 - p(chosen)'}  # in the verbose lines


# -----------------------------------------------------------------------------
# output

def diffusion_logger(mode, num_samples, score_name):
    print(f"masked / remasked: totals over the active samples; {score_name}: over their editable positions")

    def log(it, r):
        lo, mean, hi = (float(v) for v in r['wrong'])
        print(f"iter {it:3d} | active {r['active']}/{num_samples} | masked {int(r['masked'].sum())} "
              f"| remasked {int(r['remasked'].sum())} | {score_name} min {lo:.4f} mean {mean:.4f} max {hi:.4f}")
        if mode == 'threshold':
            done = (r['converged'] == it).nonzero().squeeze(1).tolist()
            if done:
                print(f"         converged at iteration {it}: sample(s) {done}")
    return log


def edit_logger(it, r):
    subs, *rest = (int(c.sum()) for c in r['counts'])
    dels, ins, noised = rest if rest else (0, 0, 0)
    conf = r['confidence'][r['editable']]
    print(f"round {it:3d} | length {r['length']} | substituted {subs} | deleted {dels} | inserted {ins} "
          f"| re-noised {noised} | p(current) min {float(conf.min()):.4f} mean {float(conf.mean()):.4f}")


def diffusion_sample_stats(stats, score_source, threshold):
    out = []
    for b in range(len(stats['iterations'])):
        s = stats['score'][b][stats['editable'][b]]
        out.append(dict(iterations=int(stats['iterations'][b]),
                        converged_at=int(stats['converged_at'][b]) if stats['converged_at'][b] >= 0 else None,
                        final_wrong_prob=dict(source=score_source, min=float(s.min()), mean=float(s.mean()),
                                              max=float(s.max()),
                                              above_threshold=int((s > threshold).sum()) if threshold else None)))
    return out


def edit_sample_stats(stats, iterations):
    subs, dels, ins, noised = stats['totals'].tolist()
    final = stats['confidence'][:, stats['P']:]
    return [dict(iterations=iterations, substitutions=subs[b], deletions=dels[b], insertions=ins[b],
                 re_noised=noised[b], final_p_current=dict(min=float(final[b].min()), mean=float(final[b].mean())))
            for b in range(len(subs))]


def write_jsonl(path, texts, per_sample, run):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
        for i, (text, stats) in enumerate(zip(texts, per_sample)):
            f.write(json.dumps(dict(sample=i, text=text, **run, stats=stats), default=str) + '\n')


# -----------------------------------------------------------------------------

@dataclass
class Run:
    """What one sampling run works with: its sampler and mode, the models, and where they came from."""
    sampler: str                  # 'diffusion' | 'edit'
    mode: str                     # the remasking mode; None for the edit sampler
    path: str
    remasking_path: str           # None without a remasking model
    device: str
    vocab: generate.Vocab
    prompt: torch.Tensor          # (P,)
    unmasker: generate.Forward
    remasker: generate.Forward    # None without a remasking model
    max_length: int               # the unmasking model's block size: the edit loop grows up to it


def load_run(cfg):
    """Check the settings, load the checkpoint pair and build the models (cfg.sequence_length is settled)."""
    generate.check_common_settings(cfg)
    path, ckpt = generate.load_unmasking_checkpoint(cfg)
    sampler, mode = generate.sampler_and_mode(cfg, ckpt['meta'], path)
    rpath, rckpt = generate.load_remasking_checkpoint(cfg)
    generate.resolve_sequence_length(cfg, ckpt, rckpt)
    generate.check_pair(path, ckpt, rpath, rckpt, cfg.sequence_length)
    vocab = generate.Vocab.from_meta(ckpt['meta'])
    device = resolve_device(cfg.device)
    prompt = generate.encode_prompt(cfg.start, vocab.stoi, device)
    generate.check_prompt_fits(prompt, cfg.sequence_length)
    ctx = autocast_context(device, resolve_dtype(cfg.dtype, device))
    unmasker, remasker = (generate.load_forward(c, device, ctx, cfg.compile) for c in (ckpt, rckpt))
    return Run(sampler, mode, path, rpath, device, vocab, prompt, unmasker, remasker, ckpt['model_args']['block_size'])


def run_sampler(cfg, run, generator):
    """(tokens (B, L), per-sample statistics) from the run's sampler."""
    if run.sampler == 'edit':
        tokens, stats = generate.edit_generate(run.unmasker, run.prompt, cfg, run.vocab, generator, run.max_length,
                                               edit_logger if cfg.verbose else None)
        return tokens, edit_sample_stats(stats, cfg.max_iterations)
    source = generate.score_source(run.remasker)
    log = diffusion_logger(run.mode, cfg.num_samples, SCORE_NAMES[source]) if cfg.verbose else None
    tokens, stats = generate.diffusion_generate(run.unmasker, run.remasker, run.prompt, cfg, run.mode, run.vocab,
                                                generator, log)
    per_sample = diffusion_sample_stats(stats, source, cfg.remasking_confidence_threshold)
    if cfg.verbose and run.mode == 'threshold':
        print("convergence iteration per sample:", [s['converged_at'] for s in per_sample])
    return tokens, per_sample


def main(argv=None):
    cfg = load_config(DEFAULTS, argv or [], other_keys=provider_keys_if_known)
    torch.manual_seed(cfg.seed)
    run = load_run(cfg)
    generator = torch.Generator(device=run.device).manual_seed(cfg.seed)
    print(f"{run.sampler} sampling with {run.path}" + (f" and {run.remasking_path}" if run.remasking_path else "")
          + (f" | remasking mode: {run.mode}" if run.mode else ""))
    tokens, per_sample = run_sampler(cfg, run, generator)
    texts = run.vocab.decode(tokens)
    for text in texts:
        print(text)
        print('---------------')
    if cfg.output_file:
        passes = generate.forward_passes_per_sample((run.unmasker, run.remasker), cfg.num_samples)
        about_run = dict(sampler=run.sampler, mode=run.mode, checkpoint=run.path,
                         remasking_checkpoint=run.remasking_path, forward_passes_per_sample=passes, settings=dict(cfg))
        write_jsonl(cfg.output_file, texts, per_sample, about_run)
        print(f"wrote {len(texts)} samples to {cfg.output_file}")
    return texts, per_sample


if __name__ == '__main__':
    run_cli(main)
