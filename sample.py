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

The loops live in generate.py; this script reads the settings, loads the models and prints the text
(on a terminal it draws the text materialising in place; docs/sampling.md has every setting).

$ python sample.py                                   # newest unmasking checkpoint in out_dir
$ python sample.py --use_intelligent_remasking=True --remasking_checkpoint_name=ckpt_remasking_all_positions_5000.pt
$ python sample.py --sampler=confidence --diffusion_iterations=64
$ python sample.py --start="ROMEO:" --num_samples=8 --verbose=True
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass

import torch

import generate
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
                                 # auto = edit for full-target random-replacement models, else diffusion
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
remdm_eta = 0.05                 # remdm: a decoded character is masked again with p = min(remdm_eta, what the schedule allows)
remdm_window = (0.0, 1.0)        # remdm: the part of the run (0 = first iteration, 1 = last) in which it remasks
remdm_score = 'random'           # remdm: which decoded characters: 'random' | 'confidence' | 'wrong' (merged checkpoints)
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
# system
device = 'auto'                  # 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
dtype = 'auto'                   # 'auto' | 'float32' | 'bfloat16' | 'float16'
compile = False                  # torch.compile the models
# -----------------------------------------------------------------------------
DEFAULTS = defaults_from(globals())
SCORE_NAMES = {'remasking_model': '[WRONG] p', 'unmasking_confidence': '1 - p(chosen)',
               'merged_model': '[WRONG] p / 1 - p(fill)'}  # in the verbose lines
PLACEHOLDER, ASCII_PLACEHOLDER = '\u2591', '_'  # a masked character in the live view (light shade; '_' where it cannot print)


# -----------------------------------------------------------------------------
# verbose output

def min_mean_max(name, values):
    lo, mean, hi = (float(v) for v in values)
    return f"{name} min {lo:.4f} mean {mean:.4f} max {hi:.4f}"


def print_first_fill(cfg, span):
    """What start_ratio < 1 does, said once before the first iteration."""
    if cfg.start_ratio < 1:
        print(f"start_ratio={cfg.start_ratio}: iteration 0 is the first fill of all {span} editable positions; "
              f"{round(cfg.start_ratio * span)} of them are masked again, where generation starts")


def diffusion_logger(cfg, mode, score_name, span):
    print(f"masked / remasked: totals over the active samples; {score_name}: over their editable positions")
    if mode != 'threshold':  # threshold mode has no schedule
        print_first_fill(cfg, span)

    def log(it, r):
        print(f"iter {it:3d} | active {r['active']}/{cfg.num_samples} | masked {int(r['masked'].sum())} "
              f"| remasked {int(r['remasked'].sum())} | {min_mean_max(score_name, r['wrong'])}")
        if mode == 'threshold':
            done = (r['converged'] == it).nonzero().squeeze(1).tolist()
            if done:
                print(f"         converged at iteration {it}: sample(s) {done}")
    return log


def field_logger(cfg, span):
    print("masked / revealed / remasked: totals over the samples; p(fill): over the masked positions filled")
    print_first_fill(cfg, span)

    def log(it, r):
        print(f"iter {it:3d} | masked {int(r['masked'].sum())} | revealed {int(r['revealed'].sum())} "
              f"| remasked {int(r['remasked'].sum())} | {min_mean_max('p(fill)', r['fill_p'])}")
    return log


def edit_logger(it, r):
    subs, *rest = (int(c.sum()) for c in r['counts'])
    dels, ins, noised = rest if rest else (0, 0, 0)
    conf = r['confidence'][r['editable']]
    print(f"round {it:3d} | length {r['length']} | substituted {subs} | deleted {dels} | inserted {ins} "
          f"| re-noised {noised} | p(current) min {float(conf.min()):.4f} mean {float(conf.mean()):.4f}")


# -----------------------------------------------------------------------------
# the live view: the text materialising in place, on a terminal

def live_enabled(cfg, stream):
    """live=None: on when `stream` is a terminal and verbose is off; True / False by hand."""
    if cfg.live not in (None, True, False):
        raise UserError(f"live={cfg.live!r} must be None (on for a terminal), True or False")
    if cfg.live and cfg.verbose:
        raise UserError("live=True and verbose=True both write every iteration; choose one")
    return stream.isatty() and not cfg.verbose if cfg.live is None else cfg.live


def render_tokens(tokens, vocab, placeholder):
    """B strings from (B, T) tokens: [MASK] (and [WRONG]) drawn as `placeholder`, characters that do not
    print (tabs, carriage returns) as spaces, so that every character takes one column."""
    shown = {i: c if c == '\n' or c.isprintable() else ' ' for i, c in vocab.itos.items()}
    shown[vocab.mask_token_id] = shown[vocab.wrong_token_id] = placeholder
    return [''.join(shown[i] for i in row) for row in tokens.tolist()]


def live_frame(header, texts, width, height):
    """The rows of one frame: the header, then the texts (a short dashed line between two), every line
    cut into pieces of width - 1 characters (so the terminal never wraps by itself), at most height - 1
    rows (a frame taller than the screen could not be redrawn in place)."""
    step = max(width - 1, 1)
    rows = [header[:step]]
    for i, text in enumerate(texts):
        if i:
            rows.append('-' * min(15, step))
        for line in text.split('\n'):
            rows.extend(line[j:j + step] for j in range(0, max(len(line), 1), step))
    return rows[:max(height - 1, 1)]


class LiveView:
    """A log callback for the loops that redraws the current samples in place, one frame per iteration
    (ANSI: move up over the last frame, clear to the end of the screen, draw)."""

    def __init__(self, vocab, label, total, stream):
        encoding = getattr(stream, 'encoding', None) or 'ascii'
        try:
            PLACEHOLDER.encode(encoding)
            self.placeholder = PLACEHOLDER
        except UnicodeEncodeError:
            self.placeholder = ASCII_PLACEHOLDER
        self.vocab, self.label, self.total, self.stream, self.drawn = vocab, label, total, stream, 0

    def __call__(self, it, record):
        size = shutil.get_terminal_size()
        header = f"{self.label} {it + 1}/{self.total}   ({self.placeholder} = still masked)"
        rows = live_frame(header, render_tokens(record['tokens'], self.vocab, self.placeholder), size.columns,
                          size.lines)
        self.stream.write(self.erase() + '\n'.join(rows) + '\n')
        self.stream.flush()
        self.drawn = len(rows)

    def erase(self):
        return f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ''

    def close(self):
        """Remove the last frame: the final text is printed below as usual."""
        self.stream.write(self.erase())
        self.stream.flush()
        self.drawn = 0


# -----------------------------------------------------------------------------
# per-sample statistics and the output file

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


def field_sample_stats(stats, iterations):
    out = []
    for b in range(len(stats['revealed'])):
        p = stats['confidence'][b][stats['editable'][b]]
        out.append(dict(iterations=iterations, revealed=int(stats['revealed'][b]), remasked=int(stats['remasked'][b]),
                        final_p_char=dict(min=float(p.min()), mean=float(p.mean()))))
    return out


def edit_sample_stats(stats, iterations):
    subs, dels, ins, noised = stats['totals'].tolist()
    final = stats['confidence'][:, stats['P']:]
    return [dict(iterations=iterations, substitutions=subs[b], deletions=dels[b], insertions=ins[b],
                 re_noised=noised[b], final_p_current=dict(min=float(final[b].min()), mean=float(final[b].mean())))
            for b in range(len(subs))]


def insertion_cap_note(stats, cfg):
    """One line when the block size took insertions away (None when it did not)."""
    capped, block_size = stats['insertions_capped'], stats['max_length']
    if not capped:
        return None
    made = stats['totals'][2].float().mean()
    shorter = max(cfg.sequence_length - capped, len(cfg.start) + 2)
    return (f"note: the edit loop made {made:.0f} insertions per sample, {capped} fewer than insert_ratio_start/_end "
            f"asked for: no sample grows past the block size ({block_size}), and sequence_length="
            f"{cfg.sequence_length} starts {'there' if cfg.sequence_length == block_size else 'close to it'}, so "
            f"insertions can only fill the room deletions leave; start shorter (e.g. --sequence_length={shorter}) "
            f"to let samples grow")


def write_jsonl(path, texts, per_sample, run):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
        for i, (text, stats) in enumerate(zip(texts, per_sample)):
            f.write(json.dumps(dict(sample=i, text=text, **run, stats=stats), default=str) + '\n')


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
    ignored = generate.ignored_settings(cfg, DEFAULTS, sampler, mode)
    if ignored:
        used = f"sampler={sampler!r}" + (f" in {mode} mode" if mode else "")
        print(f"warning: {used} does not read " + '; '.join(f"{key}={cfg[key]!r} (read by {reader})"
                                                            for key, reader in ignored)
              + ": ignored" + (", and no remasking model is loaded" if 'remasking_checkpoint_name' in dict(ignored)
                               else ""), file=sys.stderr)


def load_run(cfg, argv=None):
    """Check the settings, load the checkpoint(s) and build the models (cfg.sequence_length is settled).
    `argv`: the command-line arguments, for errors that name the command that works."""
    generate.check_common_settings(cfg)
    path, ckpt = generate.load_unmasking_checkpoint(cfg)
    merged = ckpt.get('training_type') == 'merged'
    sampler, mode = generate.sampler_and_mode(cfg, ckpt, path, argv)
    generate.refuse_second_remasker(cfg, path, ckpt)
    warn_ignored(cfg, sampler, mode)
    wants_remasker = generate.reads_remasker(sampler, mode)  # else a remasking model is never loaded, nor run
    rpath, rckpt = generate.load_remasking_checkpoint(cfg, path, ckpt) if wants_remasker else (None, None)
    generate.resolve_sequence_length(cfg, ckpt, rckpt)
    generate.check_pair(path, ckpt, rpath, rckpt, cfg.sequence_length)
    vocab = generate.Vocab.from_meta(ckpt['meta'])
    device = resolve_device(cfg.device)
    prompt = generate.encode_prompt(cfg.start, vocab.stoi, device)
    generate.check_prompt_fits(prompt, cfg.sequence_length)
    ctx = autocast_context(device, resolve_dtype(cfg.dtype, device))
    unmasker, remasker = (generate.load_forward(c, device, ctx, cfg.compile) for c in (ckpt, rckpt))
    if merged and sampler == 'diffusion':
        remasker = unmasker  # one model, one forward pass: fills and [WRONG] scores together
    return Run(sampler, mode, path, rpath, merged, device, vocab, prompt, unmasker, remasker,
               ckpt['model_args']['block_size'])


def make_logger(cfg, run):
    """(the loop's log callback or None for the progress bar, the live view to close or None)."""
    span = cfg.sequence_length - len(run.prompt)
    if cfg.verbose:
        if run.sampler == 'edit':
            return edit_logger, None
        if run.sampler in generate.FIELD_SAMPLERS:
            return field_logger(cfg, span), None
        return diffusion_logger(cfg, run.mode, SCORE_NAMES[generate.score_source(run.unmasker, run.remasker)],
                                span), None
    if not live_enabled(cfg, sys.stdout):
        return None, None
    label = f"{run.sampler} ({run.mode})" if run.mode else run.sampler
    label += ' round' if run.sampler == 'edit' else ' iteration'
    total = cfg.max_iterations if run.sampler == 'edit' else cfg.diffusion_iterations
    view = LiveView(run.vocab, label, total, sys.stdout)
    return view, view


def run_sampler(cfg, run, generator, log):
    """(tokens (B, L), per-sample statistics) from the run's sampler."""
    if run.sampler == 'edit':
        tokens, stats = generate.edit_generate(run.unmasker, run.prompt, cfg, run.vocab, generator, run.max_length, log)
        note = insertion_cap_note(stats, cfg)
        if note:
            print(note, file=sys.stderr)
        return tokens, edit_sample_stats(stats, cfg.max_iterations)
    if run.sampler in generate.FIELD_SAMPLERS:
        tokens, stats = generate.field_generate(run.unmasker, run.prompt, cfg, run.sampler, run.vocab, generator, log)
        return tokens, field_sample_stats(stats, cfg.diffusion_iterations)
    tokens, stats = generate.diffusion_generate(run.unmasker, run.remasker, run.prompt, cfg, run.mode, run.vocab,
                                                generator, log)
    per_sample = diffusion_sample_stats(stats, generate.score_source(run.unmasker, run.remasker),
                                        cfg.remasking_confidence_threshold)
    if cfg.verbose and run.mode == 'threshold':
        print("convergence iteration per sample:", [s['converged_at'] for s in per_sample])
    return tokens, per_sample


def describe(run):
    """The first line of the output: what generates, with what."""
    line = f"{run.sampler} sampling with {run.path}"
    if run.remasking_path:
        line += f" and {run.remasking_path}"
    if run.merged:
        line += " (merged: [MASK] fills and [WRONG] scores from one forward pass)" if run.sampler == 'diffusion' \
            else " (merged)"
    return line + (f" | remasking mode: {run.mode}" if run.mode else "")


def main(argv=None):
    argv = list(argv or [])
    cfg = load_config(DEFAULTS, argv, other_keys=provider_keys_if_known)
    torch.manual_seed(cfg.seed)
    run = load_run(cfg, argv)
    print(describe(run))
    log, live = make_logger(cfg, run)
    generator = torch.Generator(device=run.device).manual_seed(cfg.seed)
    try:
        tokens, per_sample = run_sampler(cfg, run, generator, log)
    finally:
        if live is not None:
            live.close()
    texts = run.vocab.decode(tokens)
    for text in texts:
        print(text)
        print('---------------')
    if cfg.output_file:
        passes = generate.forward_passes_per_sample((run.unmasker, run.remasker), cfg.num_samples)
        about_run = dict(sampler=run.sampler, mode=run.mode, checkpoint=run.path,
                         remasking_checkpoint=run.remasking_path, merged=run.merged,
                         forward_passes_per_sample=passes, settings=dict(cfg))
        write_jsonl(cfg.output_file, texts, per_sample, about_run)
        print(f"wrote {len(texts)} samples to {cfg.output_file}")
    return texts, per_sample


if __name__ == '__main__':
    run_cli(main)
