"""
Generate text from trained checkpoints, with one of these samplers:

  diffusion  start fully masked (after an optional fixed prompt), then alternate: the unmasking model
             fills every masked position, and a remasking rule masks some positions again.
             Four remasking rules (docs/sampling.md has the table of flags):
               random       schedule decides how many, positions at random
               intelligent  schedule decides how many, the highest [WRONG] probabilities
               threshold    every position whose [WRONG] probability is above a threshold; a sample
                            stops when none is (diffusion_iterations is the safety limit)
               mixed        schedule decides how many, above-threshold candidates first, random top-up
  mdlm       the field's masked-diffusion samplers, one forward pass per iteration: every iteration
  confidence fills the masked positions and keeps a scheduled number of the fills (mdlm: at random;
  remdm      confidence: the most confident); decoded characters stay, except that remdm masks some
             of them again (ReMDM)
  edit       for models trained with full targets on random-replacement corruption: start from random
             characters and edit: substitute, delete, insert and re-noise, for max_iterations rounds.

The loops live in generate.py and the settings checks and checkpoint loading in generate_setup.py; this
script reads the settings, loads the models and prints the text (on a terminal it draws the text
materialising in place, and animation_file draws the same frames into a GIF; docs/sampling.md has every
setting).

$ python sample.py                                   # newest unmasking checkpoint in out_dir
$ python sample.py --use_intelligent_remasking=True --remasking_checkpoint_name=ckpt_remasking_all_positions_5000.pt
$ python sample.py --sampler=confidence --diffusion_iterations=64
$ python sample.py --start="ROMEO:" --num_samples=8 --verbose=True
$ python sample.py --num_samples=1 --animation_file=docs/generation.gif
"""

import sys
from dataclasses import dataclass

import torch

import generate
import generate_setup
import sampling_animation
import sampling_log
from common import UserError, autocast_context, resolve_device, resolve_dtype, run_cli
from configurator import defaults_from, load_config
from prepare_streaming import provider_keys_if_known

# -----------------------------------------------------------------------------
# which models
out_dir = 'out-shakespeare-char-quick'
checkpoint_name = None           # unmasking (or merged) model in out_dir; None = the newest ckpt_unmasking_<iter>.pt,
                                 # else the newest ckpt_merged_<iter>.pt
remasking_checkpoint_name = None  # optional remasking model; 'newest' = the newest one in remasking_out_dir
remasking_out_dir = None         # where the remasking model lives; None = out_dir
sampler = 'auto'                 # 'auto' | 'diffusion' | 'mdlm' | 'confidence' | 'remdm' | 'edit'
                                 # auto = edit for full-target random-replacement models; else diffusion when one of
                                 # the seed's remasking settings (the use_*_remasking flags, a threshold, a remasking
                                 # checkpoint) is set (a merged model scores with its own [WRONG] head); else what
                                 # measured best at the default budget: confidence, or for a merged model remdm
                                 # by its own [WRONG] scores
trust_checkpoint_pickle = False  # True: open checkpoints that only full unpickling opens (can run code: files you trust)
# what to generate
start = ''                       # fixed prompt at the start of every sample, never changed; 'FILE:path' reads a file
sequence_length = None           # total characters per sample, prompt included; None = the model's block_size
num_samples = 4                  # generated together, as one batch
temperature = 1.0                # 0 = argmax
top_k = None                     # sample only among the k most likely characters; None = all
seed = 1337
# masked diffusion loop (sampler='diffusion'); diffusion_iterations and start_ratio serve mdlm/confidence/remdm too
diffusion_iterations = 30        # iterations = unmasking-model forward passes (threshold mode: the most a sample may use)
remasking_schedule = 'linear'    # 'linear' | 'exponential' | 'cosine': how many positions are masked again
start_ratio = 1.0                # share of the editable span masked when generation starts; below 1, iteration 0
                                 # is a first fill of every position, and this share of it is masked again
end_ratio = 0.1                  # masked fraction going into the last iteration
use_intelligent_remasking = False  # choose positions by [WRONG] probability instead of at random
use_mixed_remasking = False      # scheduled count, above-threshold candidates first, random top-up
remasking_confidence_threshold = None  # [WRONG] probability above which a position is remasked
# the field's samplers (sampler = 'mdlm' | 'confidence' | 'remdm')
reveal_schedule = 'linear'       # 'linear' | 'cosine': the masked share, from start_ratio down to 0 after the last iteration
choice_temperature = 4.5         # confidence: Gumbel noise on the ranking of the fills, annealed to 0 over the run
                                 # (MaskGIT's default); 0 = the pure confidence order (LLaDA's low-confidence remasking)
remdm_eta = 0.05                 # remdm: a decoded character is masked again with p = min(remdm_eta, what the schedule allows)
remdm_window = (0.0, 1.0)        # remdm: the part of the run (0 = first iteration, 1 = last) in which it remasks
remdm_score = None               # remdm: which decoded characters: 'random' | 'confidence' | 'wrong' (merged checkpoints);
                                 # None = 'wrong' on a merged checkpoint, else 'random'
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
live = None                      # draw the text materialising in place; None = when stdout is a terminal and not verbose
output_file = None               # append one JSON line per sample (text, settings, statistics)
animation_file = None            # write the live view's frames to this GIF, one per iteration (needs Pillow)
animation_frame_ms = 150         # how long each iteration's frame shows
animation_final_ms = 3000        # how long the last frame (the finished text) shows before the GIF loops
animation_columns = 80           # characters per line in the GIF; longer lines wrap
# system
device = 'auto'                  # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
dtype = 'auto'                   # 'auto' | 'float32' | 'bfloat16' | 'float16'
compile = False                  # torch.compile the models
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())
# -----------------------------------------------------------------------------

@dataclass
class Run:
    """What one sampling run works with: its sampler and mode, the models, and where they came from."""
    sampler: str                  # one of generate.SAMPLERS
    mode: str                     # the diffusion sampler's remasking mode; None for the others
    path: str
    remasking_path: str           # None without a separate remasking model
    merged: bool                  # the unmasking model is a merged one (its own remasker)
    device: str
    vocab: generate.Vocab
    prompt: torch.Tensor          # (P,)
    unmasker: generate.Forward
    remasker: generate.Forward    # None without one; the unmasker itself when it is merged (diffusion sampler)
    max_length: int               # the unmasking model's block size: the edit loop grows up to it


def warn_ignored(cfg, sampler, mode):
    """One line naming the changed settings this sampler / mode does not read, and who reads them."""
    ignored = generate_setup.ignored_settings(cfg, DEFAULTS, sampler, mode)
    if ignored:
        used = f"sampler={sampler!r}" + (f" in {mode} mode" if mode else "")
        print(f"warning: {used} does not read " + '; '.join(f"{key}={cfg[key]!r} (read by {reader})"
                                                            for key, reader in ignored)
              + ": ignored" + (", and no remasking model is loaded" if 'remasking_checkpoint_name' in dict(ignored)
                               else ""), file=sys.stderr)


def load_run(cfg, argv=None):
    """Check the settings, load the checkpoint(s) and build the models (cfg.sequence_length is settled).
    `argv`: the command-line arguments, for errors that name the command that works."""
    generate_setup.check_common_settings(cfg)
    sampling_animation.check_settings(cfg)
    path, ckpt = generate_setup.load_unmasking_checkpoint(cfg)
    merged = ckpt.get('training_type') == 'merged'
    sampler, mode = generate_setup.sampler_and_mode(cfg, ckpt, path, argv)
    generate_setup.refuse_second_remasker(cfg, path, ckpt)
    warn_ignored(cfg, sampler, mode)
    wants_remasker = generate_setup.reads_remasker(sampler, mode)  # else a remasking model is never loaded, nor run
    rpath, rckpt = generate_setup.load_remasking_checkpoint(cfg, path, ckpt) if wants_remasker else (None, None)
    generate_setup.resolve_sequence_length(cfg, ckpt, rckpt)
    generate_setup.check_pair(path, ckpt, rpath, rckpt, cfg.sequence_length)
    vocab = generate.Vocab.from_meta(ckpt['meta'])
    device = resolve_device(cfg.device)
    prompt = generate.encode_prompt(cfg.start, vocab.stoi, device)
    generate.check_prompt_fits(prompt, cfg.sequence_length)
    ctx = autocast_context(device, resolve_dtype(cfg.dtype, device))
    unmasker, remasker = (generate_setup.load_forward(c, device, ctx, cfg.compile) for c in (ckpt, rckpt))
    if merged and sampler == 'diffusion':
        remasker = unmasker  # one model, one forward pass: fills and [WRONG] scores together
    return Run(sampler, mode, path, rpath, merged, device, vocab, prompt, unmasker, remasker,
               ckpt['model_args']['block_size'])


def progress_label(cfg, run):
    """(what the live view and the animation call an iteration, how many there are at most)."""
    label = f"{run.sampler} ({run.mode})" if run.mode else run.sampler
    if run.sampler == 'edit':
        return label + ' round', cfg.max_iterations
    return label + ' iteration', cfg.diffusion_iterations


def make_logger(cfg, run):
    """(the loop's log callback or None for the progress bar, the live view to close or None)."""
    span = cfg.sequence_length - len(run.prompt)
    if cfg.verbose:
        if run.sampler == 'edit':
            return sampling_log.edit_logger, None
        if run.sampler in generate.FIELD_SAMPLERS:
            return sampling_log.field_logger(cfg, span), None
        return sampling_log.diffusion_logger(cfg, run.mode, sampling_log.SCORE_NAMES[generate.score_source(run.unmasker, run.remasker)],
                                span), None
    if not sampling_log.live_enabled(cfg, sys.stdout):
        return None, None
    view = sampling_log.LiveView(run.vocab, *progress_label(cfg, run), sys.stdout)
    return view, view


def make_recorder(cfg, run, log):
    """The animation's recorder in front of the log callback `log` (None without animation_file)."""
    if cfg.animation_file is None:
        return None
    return sampling_animation.Recorder(run.vocab, len(run.prompt), *progress_label(cfg, run), then=log)


def run_sampler(cfg, run, generator, log):
    """(tokens (B, L), per-sample statistics) from the run's sampler."""
    tokens, stats = generate.run_loop(run.sampler, run.mode, run.unmasker, run.remasker, run.prompt, cfg, run.vocab,
                                      generator, run.max_length, log)
    if run.sampler == 'edit':
        note = sampling_log.insertion_cap_note(stats, cfg)
        if note:
            print(note, file=sys.stderr)
        return tokens, sampling_log.edit_sample_stats(stats, cfg.max_iterations)
    if run.sampler in generate.FIELD_SAMPLERS:
        return tokens, sampling_log.field_sample_stats(stats, cfg.diffusion_iterations)
    per_sample = sampling_log.diffusion_sample_stats(stats, generate.score_source(run.unmasker, run.remasker),
                                        cfg.remasking_confidence_threshold)
    if cfg.verbose and run.mode == 'threshold':
        print("convergence iteration per sample:", [s['converged_at'] for s in per_sample])
    return tokens, per_sample


def describe(run, cfg):
    """The first line of the output: what generates, with what."""
    line = f"{run.sampler} sampling with {run.path}"
    if run.remasking_path:
        line += f" and {run.remasking_path}"
    if run.merged:
        scored = run.sampler == 'diffusion' or (run.sampler == 'remdm' and cfg.remdm_score == 'wrong')
        line += " (merged: [MASK] fills and [WRONG] scores from one forward pass)" if scored else " (merged)"
    return line + (f" | remasking mode: {run.mode}" if run.mode else "")


def main(argv=None):
    argv = list(argv or [])
    cfg = load_config(DEFAULTS, argv, other_keys=provider_keys_if_known)
    torch.manual_seed(cfg.seed)
    run = load_run(cfg, argv)
    print(describe(run, cfg))
    log, live = make_logger(cfg, run)
    recorder = make_recorder(cfg, run, log)
    generator = torch.Generator(device=run.device).manual_seed(cfg.seed)
    try:
        tokens, per_sample = run_sampler(cfg, run, generator, log if recorder is None else recorder)
    finally:
        for view in (live, recorder):
            if view is not None:
                view.close()
    texts = run.vocab.decode(tokens)
    for text in texts:
        print(text)
        print('---------------')
    if cfg.output_file:
        passes = generate.forward_passes_per_sample((run.unmasker, run.remasker), cfg.num_samples)
        about_run = dict(sampler=run.sampler, mode=run.mode, checkpoint=run.path,
                         remasking_checkpoint=run.remasking_path, merged=run.merged,
                         forward_passes_per_sample=passes, settings=dict(cfg))
        sampling_log.write_jsonl(cfg.output_file, texts, per_sample, about_run)
        print(f"wrote {len(texts)} samples to {cfg.output_file}")
    if recorder is not None:
        recorder.save(cfg.animation_file, cfg.animation_columns, cfg.animation_frame_ms, cfg.animation_final_ms)
        print(f"wrote {len(recorder.frames)} frames to {cfg.animation_file}")
    return texts, per_sample


if __name__ == '__main__':
    run_cli(main)
