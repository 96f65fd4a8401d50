"""
What sample.py prints while and after it generates: the verbose per-iteration lines of each loop,
the live view (the text materialising in place, on a terminal; sampling_animation.py draws the same
frames into a GIF), the per-sample statistics, the edit loop's note about insertions the block size
took away, and the JSON lines of output_file.
"""

import json
import os
import shutil

from common import UserError

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


def frame_header(label, it, total, placeholder):
    """The first row of a frame (the live view's and the animation's): which iteration, what masked looks like."""
    return f"{label} {it + 1}/{total}   ({placeholder} = still masked)"


def frame_rows(header, texts, columns):
    """The rows of one frame: the header, then the texts (a short dashed line between two), every line
    (the header's too: its iteration counter is what tells two frames apart) cut into pieces of
    `columns` characters."""
    def cut(line):
        return [line[j:j + columns] for j in range(0, max(len(line), 1), columns)]
    rows = cut(header)
    for i, text in enumerate(texts):
        if i:
            rows.append('-' * min(15, columns))
        for line in text.split('\n'):
            rows.extend(cut(line))
    return rows


def live_frame(header, texts, width, height):
    """frame_rows for a terminal: lines cut at width - 1 characters (so the terminal never wraps by
    itself), at most height - 1 rows (a frame taller than the screen could not be redrawn in place)."""
    return frame_rows(header, texts, max(width - 1, 1))[:max(height - 1, 1)]


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
        header = frame_header(self.label, it, self.total, self.placeholder)
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


